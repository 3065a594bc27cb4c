"""The bytes users see stay the same across refactors: README examples and test VCFs (see tests/pinned.py)."""

import difflib
import gzip

import pytest

from tests.pinned import CASES, PINNED, run_cases


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return run_cases(tmp_path_factory.mktemp("pinned"))


@pytest.mark.parametrize("name", list(CASES))
def test_output_bytes_unchanged(name, outputs):
    expected = gzip.decompress((PINNED / f"{name}.gz").read_bytes())
    got = outputs[name]
    if got != expected:
        diff = difflib.unified_diff(
            expected.decode().splitlines(), got.decode().splitlines(), "pinned", "now", lineterm="", n=0
        )
        pytest.fail(f"{name} changed:\n" + "\n".join(list(diff)[:40]))
