"""Peak GPU memory of the PS d256 x 16 forward at (1, 131,072), bf16 autocast, and where it comes from.

    python bench/peak_memory.py

Times and measures ``Backbone.forward_flip_free`` as it is, and a copy of it that drops two
references the loop keeps (the embedding output ``h`` after the first block, and the previous
block's ``o_f`` / ``o_r`` once the boundary has read them) -- a change to model/caduceus.py,
measured here without making it. Checks that both give the same output.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from caduceus_cli.model.caduceus import Backbone, CaduceusForMaskedLM  # noqa: E402
from caduceus_cli.model.config import CaduceusConfig  # noqa: E402


def forward_flip_free_lean(self, ids, kernels):
    """``Backbone.forward_flip_free`` with ``h`` and the previous ``o_f`` / ``o_r`` released early."""
    bsz, L = ids.shape
    h = self.embeddings(ids)
    dev = h.device.type
    act = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else h.dtype
    o_f = o_r = residual = None
    for i, layer in enumerate(self.layers):
        mixer, norm, swap = self._parts(layer)
        X, residual = kernels.add_norm_pair(
            h if i == 0 else None,
            o_f,
            o_r,
            residual,
            norm.weight,
            norm.eps,
            batch=bsz,
            length=L,
            swap=swap,
            rcps=self.rcps,
            residual_fp32=layer.residual_in_fp32,
            final=False,
            out_dtype=act,
        )
        h = o_f = o_r = None  # read by the boundary; not needed while the mixer runs
        o_f, o_r = mixer.forward_split(X, kernels)
        del X
    norm = self.final_norm
    out, _ = kernels.add_norm_pair(
        None,
        o_f,
        o_r,
        residual,
        norm.weight,
        norm.eps,
        batch=bsz,
        length=L,
        swap=False,
        rcps=self.rcps,
        residual_fp32=False,
        final=True,
        out_dtype=act,
    )
    return out


def main():
    torch.manual_seed(0)
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=256, n_layer=16, rcps=True)).cuda().eval()
    ids = torch.randint(7, 11, (1, 131_072), device="cuda")
    kernels = model.kernels(ids.device)
    bb = model.caduceus.backbone
    outs = {}
    for label, fn in (("as is", Backbone.forward_flip_free), ("lean caller", forward_flip_free_lean)):
        times = []
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            for i in range(7):
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                out = fn(bb, ids, kernels)
                e.record()
                torch.cuda.synchronize()
                if i >= 2:
                    times.append(s.elapsed_time(e) / 1e3)
        outs[label] = out.float()
        print(
            f"{label:>12}: backbone {statistics.median(times):.4f} s, peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        )
        del out
    a, b = outs["as is"], outs["lean caller"]
    print(f"max |difference| of the outputs: {(a - b).abs().max().item():.3g}")


if __name__ == "__main__":
    main()
