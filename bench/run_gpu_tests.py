"""Run a gpu-marked test module on the device machine, with pytest if it is installed there, else
with a minimal stand-in (parametrize, skip, skipif; no fixtures), since the device image may lack
pytest and the 64 MiB carry has no room for its wheels next to the mamba-ssm kernels.

    python bench/run_gpu_tests.py tests/test_gpu_scan.py
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import time
import traceback
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Skip(Exception):
    pass


def _stub() -> types.ModuleType:
    m = types.ModuleType("pytest")

    class Mark:
        def __init__(self, name, args=(), kwargs=None):
            self.name, self.args, self.kwargs = name, args, kwargs or {}

        def __call__(self, fn):
            fn.__dict__.setdefault("_marks", []).append(self)
            return fn

    class MarkGen:
        def __getattr__(self, name):
            return lambda *a, **k: Mark(name, a, k)

        gpu = Mark("gpu")

    def skip(reason=""):
        raise Skip(reason)

    def fixture(*a, **k):
        return (lambda f: f) if not a or not callable(a[0]) else a[0]

    m.mark, m.skip, m.fixture, m.Skip = MarkGen(), skip, fixture, Skip
    return m


def main() -> int:
    try:
        import pytest

        return pytest.main(["-q", "-s", "-m", "gpu", *sys.argv[1:]])
    except ImportError:
        sys.modules["pytest"] = _stub()
    failed = passed = skipped = 0
    for path in sys.argv[1:]:
        spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        module_marks = getattr(mod, "pytestmark", [])
        for name, fn in list(vars(mod).items()):
            if not (name.startswith("test_") and callable(fn)):
                continue
            marks = list(module_marks) + list(getattr(fn, "_marks", []))
            if any(mk.name == "skipif" and mk.args and mk.args[0] for mk in marks):
                print(f"SKIP {name} (skipif)")
                skipped += 1
                continue
            grids = []
            for mk in marks:
                if mk.name == "parametrize":
                    names = [s.strip() for s in mk.args[0].split(",")]
                    grids.append([dict(zip(names, v if len(names) > 1 else (v,), strict=True)) for v in mk.args[1]])
            for combo in itertools.product(*grids) if grids else [()]:
                kw = {k: v for part in combo for k, v in part.items()}
                label = f"{name}[{', '.join(f'{k}={v}' for k, v in kw.items())}]"
                t0 = time.time()
                try:
                    fn(**kw)
                    passed += 1
                    print(f"PASS {label} ({time.time() - t0:.1f}s)")
                except Skip as exc:
                    skipped += 1
                    print(f"SKIP {label}: {exc}")
                except TypeError as exc:
                    if "required positional argument" in str(exc):  # needs a fixture: not in the stand-in
                        skipped += 1
                        print(f"SKIP {label}: fixture ({exc})")
                    else:
                        failed += 1
                        print(f"FAIL {label}\n{traceback.format_exc()}")
                except Exception:
                    failed += 1
                    print(f"FAIL {label}\n{traceback.format_exc()}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
