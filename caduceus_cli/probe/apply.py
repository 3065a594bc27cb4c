"""A probe applied inside score-vcf: the features it needs, then CAD_PROB per ALT of each site."""

from __future__ import annotations

import numpy as np

from caduceus_cli.errors import ProbeError
from caduceus_cli.inference.featurise import SiteScores
from caduceus_cli.inference.spec import EmbeddingSpec, spec_for
from caduceus_cli.probe.model import Probe


class SiteProbe:
    """A loaded probe and the tissue of every variant of the run."""

    def __init__(self, probe: Probe, tissue: str | None, path: str = "") -> None:
        self.probe = probe
        self.tissue = tissue
        self.path = path
        if probe.tissues is not None and tissue is None:
            raise ProbeError(f"this probe uses tissue as a feature: pass --tissue (one of {', '.join(probe.tissues)})")
        if probe.tissues is not None:
            probe.design(np.zeros((1, probe.spec.dim), np.float32), [tissue])  # unknown tissue: clear error now
        if probe.spec.kind != "variant":
            raise ProbeError("the probe was not trained on variant embeddings")

    @classmethod
    def load(cls, path: str, tissue: str | None) -> SiteProbe:
        return cls(Probe.load(path), tissue, str(path))

    def describe(self) -> str:
        """The provenance value of the probe."""
        return f"<file={self.path},classifier={self.probe.classifier},table={self.probe.info.get('table')}>"

    def spec_for(self, model, sha256: str, window: int | None, flank: int | None) -> EmbeddingSpec:
        """The features this probe needs from ``model`` (its window and pooling unless given); refuses others."""
        s = self.probe.spec
        spec = spec_for(
            model,
            sha256,
            "variant",
            window=s.window if window is None else window,
            flank=flank,
            default_flank=s.flank,
            pool=s.pool,
            layer=s.layer,
            rc_mode=s.rc_mode,
        )
        self.probe.check_spec(spec, f"model {model.source} with --window {spec.window} --flank {spec.flank}")
        return spec

    def predict_sites(self, sites: list[SiteScores]) -> list[list[float | None]]:
        """Per site, per ALT: the probe's probability, or None where the ALT has no features."""
        where, feats = [], []
        for j, s in enumerate(sites):
            for i in range(s.plan.n_alts):
                f = s.variant_features(i)
                if f is not None:
                    where.append((j, i))
                    feats.append(f)
        out: list[list[float | None]] = [[None] * s.plan.n_alts for s in sites]
        if feats:
            tissue = [self.tissue] * len(feats) if self.probe.tissues is not None else None
            prob = self.probe.probability(np.stack(feats), tissue)  # (n_alts_scored,)
            for (j, i), value in zip(where, prob, strict=True):
                out[j][i] = float(value)
        return out
