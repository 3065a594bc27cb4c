"""What users see stays the same across refactors: README examples and test VCFs (see tests/pinned.py).

Identical bytes pass at once; otherwise ``compare`` allows only float-rounding noise in printed
floats (the last digit moves between CPUs), never a changed line, field, integer or header.
"""

import gzip

import pytest

from tests.pinned import CASES, PINNED, compare, run_cases


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return run_cases(tmp_path_factory.mktemp("pinned"))


@pytest.mark.parametrize("name", list(CASES))
def test_output_unchanged(name, outputs):
    expected = gzip.decompress((PINNED / f"{name}.gz").read_bytes())
    problem = compare(name, expected, outputs[name])
    if problem:
        pytest.fail(problem, pytrace=False)
