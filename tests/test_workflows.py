"""The Nextflow module without Nextflow (its launcher downloads its runtime, so it cannot be installed
here): render the module's ``script:`` and ``stub:`` blocks as Nextflow would, with a small evaluator
of the Groovy they use, and run them with bash on the shipped example."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from caduceus_cli import __version__

ROOT = Path(__file__).resolve().parents[1]
NF = ROOT / "workflows" / "nextflow"
MODULE = NF / "modules" / "caduceus" / "score"
EXAMPLES = ROOT / "examples"


# --- a Groovy subset: GStrings, 'literals', a.b.c, ?:, a ? b : c, a == b, def, if (...) error "..." ---


class GroovyError(Exception):
    """What Nextflow's ``error`` raises."""


def _truthy(value) -> bool:
    return value not in (None, "", 0, False) and value != [] and value != {}


def _text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return str(value)


def _top_level(expr: str, token: str, start: int = 0) -> int:
    """Index of ``token`` in ``expr`` outside quotes, brackets and ``${...}``; -1 when absent."""
    depth, quote, i = 0, None, start
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and expr.startswith(token, i):
            return i
        i += 1
    return -1


def evaluate(expr: str, ctx: dict):
    expr = expr.strip()
    q = _top_level(expr, "?")
    if q >= 0:
        if expr[q + 1] == ":":  # elvis
            left = evaluate(expr[:q], ctx)
            return left if _truthy(left) else evaluate(expr[q + 2 :], ctx)
        c = _top_level(expr, ":", q + 1)
        branch = expr[q + 1 : c] if _truthy(evaluate(expr[:q], ctx)) else expr[c + 1 :]
        return evaluate(branch, ctx)
    eq = _top_level(expr, "==")
    if eq >= 0:
        return _text(evaluate(expr[:eq], ctx)) == _text(evaluate(expr[eq + 2 :], ctx))
    if len(expr) >= 2 and expr[0] == expr[-1] == "'":
        return expr[1:-1]
    if len(expr) >= 2 and expr[0] == expr[-1] == '"':
        return interpolate(expr[1:-1], ctx)
    if re.fullmatch(r"[A-Za-z_]\w*(\.\w+)*", expr):
        value = ctx
        for part in expr.split("."):
            value = value.get(part) if isinstance(value, dict) else None  # Groovy: a missing ext is null
        return value
    raise NotImplementedError(f"the test's Groovy evaluator does not know: {expr}")


def interpolate(text: str, ctx: dict) -> str:
    """A GString's text: ``${expr}``, ``$name.name`` and the escapes ``\\$``, ``\\\\``, ``\\"``."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "$\\\"'":
            out.append(text[i + 1])
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            out.append(_text(evaluate(text[i + 2 : j - 1], ctx)))
            i = j
        elif ch == "$" and (m := re.match(r"\$([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)", text[i:])):
            out.append(_text(evaluate(m.group(1), ctx)))
            i += m.end()
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def render(block: str, ctx: dict) -> str:
    """Run a ``script:``/``stub:`` block: its statements, then its triple-quoted string (indent stripped)."""
    head, body, _ = block.split('"""')
    ctx = dict(ctx)
    for line in head.strip().splitlines():
        line = line.strip()
        if not line or line.startswith("//"):
            continue
        if m := re.fullmatch(r"def (\w+) = (.+)", line):
            ctx[m.group(1)] = evaluate(m.group(2), ctx)
        elif m := re.fullmatch(r"if \((.+)\) error (\".*\")", line):
            if evaluate(m.group(1), ctx):
                raise GroovyError(evaluate(m.group(2), ctx))
        else:
            raise NotImplementedError(f"the test's Groovy evaluator does not know: {line}")
    return textwrap.dedent(interpolate(body, ctx)).strip() + "\n"


def module_sections() -> dict[str, str]:
    """The module's sections by label (input, output, when, script, stub)."""
    text = (MODULE / "main.nf").read_text()
    body = text[text.index("{") + 1 : text.rindex("}")]
    parts = re.split(r"^\s*(input|output|when|script|stub):\s*$", body, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


# --- the tests ---


@pytest.fixture
def task_dir(tmp_path) -> Path:
    """A Nextflow-like work folder: inputs staged as symlinks, ``caduceus`` and ``python`` of this
    interpreter first on PATH (whatever console script the venv holds)."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ("chr22_example.vcf.gz", "chr22_slice.fa.gz", "chr22_slice.fa.gz.fai", "chr22_slice.fa.gz.gzi"):
        (work / name).symlink_to(EXAMPLES / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, line in (
        ("caduceus", f'exec "{sys.executable}" -m caduceus_cli "$@"'),
        ("python", f'exec "{sys.executable}" "$@"'),
    ):
        (bin_dir / name).write_text(f"#!/bin/sh\n{line}\n")
        (bin_dir / name).chmod(0o755)
    return work


def _env(task_dir: Path) -> dict[str, str]:
    path = f"{task_dir.parent / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PATH": path, "PYTHONPATH": pythonpath}


def _ctx(meta_id: str, args: str | None, cpus: int = 2) -> dict:
    return {
        "meta": {"id": meta_id},
        "meta2": {"id": "chr22_slice"},
        "vcf": "chr22_example.vcf.gz",
        "fasta": "chr22_slice.fa.gz",
        "fasta_index": ["chr22_slice.fa.gz.fai", "chr22_slice.fa.gz.gzi"],
        "model": [],
        "task": {"ext": {"args": args} if args is not None else {}, "cpus": cpus, "process": "CADUCEUS_SCORE"},
    }


def _bash(script: str, cwd: Path) -> subprocess.CompletedProcess:
    (cwd / ".command.sh").write_text(script)
    return subprocess.run(
        ["bash", "-euo", "pipefail", ".command.sh"], cwd=cwd, capture_output=True, text=True, env=_env(cwd), timeout=300
    )


def _version_commands(output: str) -> dict[str, str]:
    """tool -> shell command of each ``val('tool'), eval(...)`` output."""
    found = re.findall(r"""val\('(\w+)'\),\s*eval\((?:"((?:[^"\\]|\\.)*)"|'([^']*)')\)""", output)
    return {tool: dq or sq for tool, dq, sq in found}


def test_module_script_scores_the_example_and_reports_versions(task_dir):
    sections = module_sections()
    script = render(sections["script"], _ctx("chr22", "--window 256 --batch-size 32"))
    assert "--window 256 --batch-size 32" in script and "OMP_NUM_THREADS=2" in script
    assert "--model" not in script and "-o chr22.vcf.gz" in script

    t0 = time.perf_counter()
    p = _bash(script, task_dir)
    assert p.returncode == 0, p.stderr
    seconds = time.perf_counter() - t0

    # the outputs Nextflow would collect: globs over the work folder, staged inputs excluded
    staged = {"chr22_example.vcf.gz"}
    vcfs = sorted(f.name for f in task_dir.glob("*.vcf.gz") if f.name not in staged)
    assert vcfs == ["chr22.vcf.gz"] and (task_dir / "chr22.vcf.gz.tbi").stat().st_size > 0
    import pysam

    with pysam.VariantFile(str(task_dir / "chr22.vcf.gz")) as vf:
        header = str(vf.header)
        records = list(vf)
    assert "##caduceus_window=256" in header and "##caduceus_backend=torch" in header
    assert len(records) == 50 and all("CAD_LLR" in r.info and "CAD_COS" in r.info for r in records)

    # versions: the module's eval outputs, run in the task folder, collected as the pipeline does
    commands = _version_commands(sections["output"])
    assert set(commands) == {"caduceus", "torch"}
    versions = {}
    for tool, cmd in commands.items():
        v = subprocess.run(["bash", "-c", cmd], cwd=task_dir, capture_output=True, text=True, env=_env(task_dir))
        assert v.returncode == 0, v.stderr
        versions[tool] = v.stdout.strip()
    import torch

    assert versions == {"caduceus": __version__, "torch": torch.__version__}
    yml = task_dir / "versions.yml"
    yml.write_text("CADUCEUS_SCORE:\n" + "".join(f"    {k}: {v}\n" for k, v in versions.items()))
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load(yml.read_text()) == {"CADUCEUS_SCORE": versions}
    print(f"module script on the example: {seconds:.1f} s")


def test_module_stub_and_name_clash(task_dir):
    sections = module_sections()
    stub = render(sections["stub"], _ctx("chr22", None))
    p = _bash(stub, task_dir)
    assert p.returncode == 0, p.stderr
    assert (task_dir / "chr22.vcf.gz").exists() and (task_dir / "chr22.vcf.gz.tbi").exists()
    with pytest.raises(GroovyError, match="set task.ext.prefix"):  # the output would overwrite the input
        render(sections["script"], _ctx("chr22_example", None))
    default = render(sections["script"], _ctx("s1", None))  # no ext.args: nothing extra on the line
    assert re.search(r"--ref chr22_slice\.fa\.gz \\\n\s+\\\n\s+\\\n\s+--quiet", default), default


def test_module_declares_the_nf_core_pieces():
    text = (MODULE / "main.nf").read_text()
    sections = module_sections()
    assert "tuple val(meta), path(vcf)" in sections["input"]
    assert "label 'process_gpu'" in text and 'conda "${moduleDir}/environment.yml"' in text
    assert sections["output"].count("topic: versions") == 2 and "versions.yml" not in text
    assert set(sections) == {"input", "output", "when", "script", "stub"}
    pipeline = (NF / "main.nf").read_text()
    assert "include { CADUCEUS_SCORE } from './modules/caduceus/score/main'" in pipeline
    assert "--chunk" in pipeline and "caduceus merge" in pipeline and "channel.topic('versions')" in pipeline
    for nf in (MODULE / "main.nf", NF / "main.nf", NF / "nextflow.config"):
        code = re.sub(r"'[^'\n]*'|\"[^\"\n]*\"|//[^\n]*|/\*.*?\*/", "", nf.read_text(), flags=re.S)
        for pair in ("{}", "()", "[]"):
            assert code.count(pair[0]) == code.count(pair[1]), (nf.name, pair)


def test_meta_and_environment_yaml():
    yaml = pytest.importorskip("yaml")
    meta = yaml.safe_load((MODULE / "meta.yml").read_text())
    env = yaml.safe_load((MODULE / "environment.yml").read_text())
    assert meta["name"] == "caduceus_score"
    assert set(meta["output"]) == {"vcf", "tbi", "versions_caduceus", "versions_torch"}
    emits = set(re.findall(r"emit: (\w+)", (MODULE / "main.nf").read_text()))
    assert emits == set(meta["output"])
    assert [next(iter(i)) for i in meta["input"][0]] == ["meta", "vcf"]
    assert len(meta["topics"]["versions"]) == 2
    pins = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "conda-forge" in env["channels"] and all("=" in d for d in pins)
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert f"caduceus-cli=={__version__}" in pip


def test_pipeline_scatter_score_merge_gives_the_single_run(task_dir):
    """main.nf's scatter as it runs: the module script per part (ext.args from nextflow.config), then the
    CADUCEUS_MERGE script; the merged body is the unsplit module run's."""
    import gzip

    sections = module_sections()
    config = (NF / "nextflow.config").read_text()
    assert "ext.args = { meta.n_chunks ? \"--chunk ${meta.chunk}/${meta.n_chunks}\" : '' }" in config
    outputs = {}
    for name, args in (
        ("whole", "--window 256"),
        ("s.part1", "--window 256 --chunk 1/2"),
        ("s.part2", "--window 256 --chunk 2/2"),
    ):
        p = _bash(render(sections["script"], _ctx(name, args)), task_dir)
        assert p.returncode == 0, p.stderr
        outputs[name] = task_dir / f"{name}.vcf.gz"
    pipeline = (NF / "main.nf").read_text()
    merge = pipeline[pipeline.index("process CADUCEUS_MERGE") :]
    merge = merge[merge.index("script:") : merge.index("stub:")]
    assert "caduceus merge ${parts.join(' ')} -o ${meta.id}.caduceus.vcf.gz" in merge
    script = "caduceus merge s.part1.vcf.gz s.part2.vcf.gz -o s.caduceus.vcf.gz\n"  # what Nextflow renders
    p = _bash(script, task_dir)
    assert p.returncode == 0, p.stderr

    def body(path: Path) -> list[str]:
        with gzip.open(path, "rt") as fh:
            return [line for line in fh if not line.startswith("#")]

    merged = task_dir / "s.caduceus.vcf.gz"
    assert body(merged) == body(outputs["whole"]) and len(body(merged)) == 50
    assert (task_dir / "s.caduceus.vcf.gz.tbi").exists()
