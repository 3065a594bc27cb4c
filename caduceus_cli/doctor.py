"""``caduceus doctor``: what this installation runs on, which backend ``auto`` picks and why, and a
short self-test of the shipped model.

Everything is collected without raising: a missing package, a broken CUDA extension or a model
that does not load becomes a fact in the report (and a failed self-test), never an exception.

mamba-ssm after 2.3.2.post1 builds its Mamba-1 selective-scan CUDA extension (``selective_scan_cuda``)
only when ``MAMBA_KEEP_CUDA_BUILD=TRUE`` is set at build time; an installation without it is reported
as ``no-cuda-scan`` with the command that fixes it.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import logging
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from caduceus_cli import __version__
from caduceus_cli.kernels.backend import INSTALL_HINT, available_backends, get_backend, resolve_backend

log = logging.getLogger(__name__)

MAMBA_PIN = "mamba-ssm==2.3.2.post1"
SELF_TEST_LENGTH = 1024
# relative errors: PS logits of RC(x) against the RC of the logits of x; cuda against torch backend (fp32)
RC_TOLERANCE = {"cpu": 1e-4, "cuda": 1e-3}
PARITY_TOLERANCE = 1e-3

MAMBA_ABSENT, MAMBA_OK, MAMBA_NO_CUDA_SCAN, MAMBA_BROKEN = "absent", "ok", "no-cuda-scan", "broken"


@dataclass(frozen=True)
class Versions:
    """Versions of this package and of what it runs on (None: not installed)."""

    caduceus: str
    python: str
    torch: str
    torch_cuda: str | None  # the CUDA version torch was built for; None for a CPU build
    cudnn: str | None
    triton: str | None
    mamba_ssm: str | None
    causal_conv1d: str | None
    numba: str | None


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: str
    memory_gib: float


@dataclass(frozen=True)
class DeviceFacts:
    cuda_available: bool
    gpus: tuple[Gpu, ...]
    cpu_threads: int
    platform: str


@dataclass(frozen=True)
class MambaState:
    """mamba-ssm as installed: ``state`` is absent, ok, no-cuda-scan (installed without the Mamba-1
    CUDA scan: built without MAMBA_KEEP_CUDA_BUILD=TRUE) or broken (present but does not load)."""

    state: str
    version: str | None
    scan_extension: bool  # ``selective_scan_cuda`` imports
    conv_extension: bool  # ``causal_conv1d_cuda`` imports
    detail: str


@dataclass(frozen=True)
class BackendDecision:
    """What ``--backend auto`` resolves to on this machine's default device, and why."""

    device: str
    backend: str
    reason: str
    detail: str  # the kernels the backend is made of


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float | None = None  # measured relative error, where there is one
    limit: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class SelfTest:
    model: str
    device: str
    backend: str
    length: int
    seconds: float
    checks: tuple[Check, ...]
    error: str | None = None  # set when the test could not run to the end

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.checks)


@dataclass(frozen=True)
class DoctorReport:
    versions: Versions
    device: DeviceFacts
    mamba: MambaState
    backend: BackendDecision
    self_test: SelfTest | None
    hints: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        """True unless the self-test ran and failed (missing optional kernels are not a failure)."""
        return self.self_test is None or self.self_test.passed

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["healthy"] = self.healthy
        if self.self_test is not None:
            out["self_test"]["passed"] = self.self_test.passed
        return out


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _dist_version(dists: tuple[str, ...], module: str) -> str | None:
    """Installed version from the distribution metadata, else the module's ``__version__``."""
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    spec = importlib.util.find_spec(module)
    if spec is None:
        return None
    try:
        return str(getattr(importlib.import_module(module), "__version__", "unknown"))
    except Exception as exc:  # present but broken (mamba_ssm without selective_scan_cuda): read the source
        log.debug("importing %s failed: %s", module, exc)
    try:
        found = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", Path(spec.origin or "").read_text(), re.M)
    except OSError:
        found = None
    return found.group(1) if found else "unknown (does not import)"


def _try_import(module: str) -> tuple[bool, str]:
    """(imports, why not): '' when it imports, 'missing' when there is no such module."""
    try:
        if importlib.util.find_spec(module) is None:
            return False, "missing"
    except (ImportError, ValueError) as exc:  # a parent package that fails to import
        return False, _short(exc)
    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, OSError (a library not found), undefined symbols
        return False, _short(exc)
    return True, ""


def collect_versions() -> Versions:
    cudnn = None
    try:
        if torch.backends.cudnn.is_available():
            cudnn = str(torch.backends.cudnn.version())
    except Exception:  # pragma: no cover - a broken cuDNN install
        cudnn = None
    return Versions(
        caduceus=__version__,
        python=platform.python_version(),
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        cudnn=cudnn,
        triton=_dist_version(("triton", "pytorch-triton"), "triton"),
        mamba_ssm=_dist_version(("mamba-ssm", "mamba_ssm"), "mamba_ssm"),
        causal_conv1d=_dist_version(("causal-conv1d", "causal_conv1d"), "causal_conv1d"),
        numba=_dist_version(("numba",), "numba"),
    )


def collect_device() -> DeviceFacts:
    gpus: list[Gpu] = []
    available = torch.cuda.is_available()
    if available:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append(Gpu(i, props.name, f"{props.major}.{props.minor}", round(props.total_memory / 2**30, 1)))
    return DeviceFacts(available, tuple(gpus), torch.get_num_threads(), platform.platform(terse=True))


def collect_mamba(version: str | None) -> MambaState:
    """The state of mamba-ssm, from its extension modules (importing them does not need a GPU)."""
    conv_ok, _ = _try_import("causal_conv1d_cuda")
    if version is None and importlib.util.find_spec("selective_scan_cuda") is None:
        return MambaState(MAMBA_ABSENT, None, False, conv_ok, "mamba-ssm is not installed")
    scan_ok, scan_why = _try_import("selective_scan_cuda")
    if scan_why == "missing":
        detail = (
            f"mamba-ssm {version} is installed without its Mamba-1 CUDA scan (no selective_scan_cuda module): "
            "releases after 2.3.2.post1 build it only with MAMBA_KEEP_CUDA_BUILD=TRUE"
        )
        return MambaState(MAMBA_NO_CUDA_SCAN, version, False, conv_ok, detail)
    if not scan_ok:
        return MambaState(MAMBA_BROKEN, version, False, conv_ok, f"selective_scan_cuda does not load ({scan_why})")
    iface_ok, iface_why = _try_import("mamba_ssm.ops.selective_scan_interface")
    if not iface_ok:
        return MambaState(MAMBA_BROKEN, version, True, conv_ok, f"mamba_ssm does not import ({iface_why})")
    return MambaState(MAMBA_OK, version, True, conv_ok, "selective_scan_cuda imports")


def decide_backend(mamba: MambaState) -> BackendDecision:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = resolve_backend("auto", device)
    why_not = available_backends()["cuda"]
    if chosen == "cuda":
        reason = "a CUDA GPU is visible and mamba-ssm's selective scan imports"
        if mamba.state != MAMBA_OK:
            reason += f", but {mamba.detail}: scoring will fail; use --backend torch until it is fixed"
    elif mamba.state == MAMBA_NO_CUDA_SCAN:
        reason = mamba.detail
    elif mamba.state == MAMBA_ABSENT:
        reason = "mamba-ssm is not installed" + ("" if device == "cuda" else ", and no CUDA GPU is visible")
    else:
        reason = why_not or "no CUDA GPU is visible"
    try:
        detail = get_backend(chosen, device).detail
    except Exception as exc:  # a backend that resolves but cannot be built
        detail = f"cannot be built ({_short(exc)})"
    return BackendDecision(device, chosen, reason, detail)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def run_self_test(device: str, backend: str, length: int = SELF_TEST_LENGTH) -> SelfTest:
    """Load the shipped model, run random sequences and their reverse complements in one batch (fp32)
    and check: finite outputs, RC-equivariant PS logits and hidden states, and, on a GPU with the
    mamba-ssm kernels, the ``cuda`` backend against the ``torch`` backend."""
    from caduceus_cli.model.loading import load_model
    from caduceus_cli.model.rc import rc_hidden
    from caduceus_cli.tokenizer import COMPLEMENT_MAP, NUCLEOTIDE_IDS, reverse_complement_ids

    t0 = time.perf_counter()
    checks: list[Check] = []
    source = "default model"
    try:
        model = load_model(None, device=device, backend=backend)
        source = str(model.source_dir)
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(min(NUCLEOTIDE_IDS), max(NUCLEOTIDE_IDS) + 1, (1, length), generator=gen)
        ids = torch.cat([x, reverse_complement_ids(x)]).to(device)
        with torch.inference_mode():
            out = model(ids)
        logits, hidden = out.logits.float(), out.last_hidden_state.float()
        finite = bool(torch.isfinite(logits).all() and torch.isfinite(hidden).all())
        checks.append(
            Check(
                "finite",
                finite,
                detail="no NaN or inf in logits and hidden states" if finite else "NaN or inf in the outputs",
            )
        )
        limit = RC_TOLERANCE["cuda" if device.startswith("cuda") else "cpu"]
        if model.config.rcps:
            comp = torch.tensor(COMPLEMENT_MAP, device=logits.device)
            err = max(_rel(logits[1], logits[0].flip(0)[..., comp]), _rel(hidden[1:], rc_hidden(hidden[:1])))
            checks.append(
                Check(
                    "rc_equivariance",
                    err <= limit,
                    err,
                    limit,
                    "logits and hidden state of RC(x) against the RC of those of x",
                )
            )
        else:
            checks.append(Check("rc_equivariance", True, detail="skipped: a Caduceus-Ph model is not equivariant"))
        if backend == "cuda":
            model.backend = "torch"
            with torch.inference_mode():
                ref = model(ids).logits.float()
            err = _rel(logits, ref)
            checks.append(
                Check(
                    "cuda_vs_torch",
                    err <= PARITY_TOLERANCE,
                    err,
                    PARITY_TOLERANCE,
                    "logits of the cuda backend against the torch backend",
                )
            )
    except Exception as exc:  # the report says what failed; the CLI exits 1
        log.debug("self-test failed", exc_info=True)
        return SelfTest(source, device, backend, length, time.perf_counter() - t0, tuple(checks), _short(exc))
    seconds = time.perf_counter() - t0
    log.info("self-test on %s (%s backend): %.2f s", device, backend, seconds)
    return SelfTest(source, device, backend, length, seconds, tuple(checks))


def install_hints(
    versions: Versions, device: DeviceFacts, mamba: MambaState, backend: BackendDecision
) -> tuple[str, ...]:
    hints: list[str] = []
    fix_scan = (
        f"pip install --no-build-isolation --no-cache-dir --force-reinstall {MAMBA_PIN} "
        "(or, for a newer mamba-ssm: MAMBA_KEEP_CUDA_BUILD=TRUE pip install --no-build-isolation --no-cache-dir "
        "--force-reinstall mamba-ssm)"
    )
    if mamba.state == MAMBA_NO_CUDA_SCAN:
        hints.append(f"rebuild mamba-ssm with its Mamba-1 CUDA scan: {fix_scan}")
    elif mamba.state == MAMBA_BROKEN:
        hints.append(f"mamba-ssm does not load (often: built for another torch or CUDA); rebuild it: {fix_scan}")
    if device.cuda_available:
        if mamba.state == MAMBA_ABSENT:
            hints.append(f"for the cuda backend on this GPU: {INSTALL_HINT}; pin {MAMBA_PIN}")
        if mamba.state == MAMBA_OK and not mamba.conv_extension:
            hints.append(
                "causal-conv1d is not installed (the cuda backend uses cuDNN's conv instead): "
                "pip install causal-conv1d --no-build-isolation"
            )
        if backend.backend == "cuda" and versions.triton is None:
            hints.append("Triton is missing (eager add/norm on the GPU): pip install triton")
    elif versions.torch_cuda is None:
        hints.append(
            "CPU only (torch is a CPU build): the torch backend is the right one here; on a GPU node "
            "install a CUDA build of torch first, then pip install 'caduceus-cli[cuda]'"
        )
    else:
        hints.append("no CUDA GPU is visible (check CUDA_VISIBLE_DEVICES and the driver): the torch backend is used")
    if versions.numba is None:
        hints.append("numba is missing (slow chunked scan on the CPU): pip install numba")
    return tuple(hints)


def run_doctor(self_test: bool = True) -> DoctorReport:
    """Collect versions, devices, the mamba-ssm state and the backend ``auto`` picks; then, unless
    ``self_test`` is False, run the self-test of the shipped model on the default device."""
    versions = collect_versions()
    device = collect_device()
    mamba = collect_mamba(versions.mamba_ssm)
    backend = decide_backend(mamba)
    log.info("backend auto on %s: %s (%s)", backend.device, backend.backend, backend.reason)
    test = run_self_test(backend.device, backend.backend) if self_test else None
    return DoctorReport(versions, device, mamba, backend, test, install_hints(versions, device, mamba, backend))
