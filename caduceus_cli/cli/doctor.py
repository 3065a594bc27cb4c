"""``caduceus doctor``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from caduceus_cli.cli.progress import err_console

if TYPE_CHECKING:
    from caduceus_cli.doctor import DoctorReport

EPILOG = "Examples:\n\n  caduceus doctor\n\n  caduceus doctor --json | jq .backend\n\n  caduceus doctor --no-self-test"


def doctor_cmd(
    self_test: bool = typer.Option(True, "--self-test/--no-self-test", help="Run the shipped model's self-test."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout (no table)."),
) -> None:
    """Check the installation: versions, GPU, the backend `auto` picks and why, and a self-test of the shipped model.

    Exit code 0 when healthy, 1 when the self-test fails.
    """
    from caduceus_cli.doctor import run_doctor

    report = run_doctor(self_test=self_test)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _render(report)
    if not report.healthy:
        raise typer.Exit(code=1)


def _ok(flag: bool) -> str:
    return "[green]ok[/]" if flag else "[red]FAIL[/]"


def _render(report: DoctorReport) -> None:
    v, dev, mamba, backend, test = report.versions, report.device, report.mamba, report.backend, report.self_test
    table = Table(title="caduceus doctor", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    for name, value, absent in (
        ("caduceus", v.caduceus, ""),
        ("python", v.python, ""),
        ("torch", v.torch, ""),
        ("torch CUDA", v.torch_cuda, "CPU build"),
        ("cuDNN", v.cudnn, "not available"),
        ("triton", v.triton, ""),
        ("mamba-ssm", v.mamba_ssm, ""),
        ("causal-conv1d", v.causal_conv1d, ""),
        ("numba", v.numba, ""),
    ):
        table.add_row(name, escape(value) if value is not None else f"[dim]{absent or 'not installed'}[/]")
    table.add_section()
    gpus = "; ".join(f"{g.index}: {g.name} (sm {g.capability}, {g.memory_gib} GiB)" for g in dev.gpus)
    table.add_row("GPU", escape(gpus) if gpus else "[dim]none visible[/]")
    table.add_row("CPU threads", str(dev.cpu_threads))
    table.add_row("mamba-ssm state", f"{escape(mamba.state)}: {escape(mamba.detail)}")
    table.add_section()
    table.add_row(
        "backend auto", f"[bold]{escape(backend.backend)}[/] on {escape(backend.device)}: {escape(backend.reason)}"
    )
    table.add_row("kernels", escape(backend.detail))
    if test is not None:
        table.add_section()
        table.add_row(
            "self-test",
            f"{escape(test.model)}, {test.length} bp, {escape(test.backend)} on "
            f"{escape(test.device)}, {test.seconds:.1f} s",
        )
        for c in test.checks:
            err = f" (rel. err {c.value:.1e} <= {c.limit:.0e})" if c.value is not None and c.limit is not None else ""
            table.add_row(f"  {c.name}", f"{_ok(c.passed)}{err} {escape(c.detail)}")
        if test.error:
            table.add_row("  error", f"[red]{escape(test.error)}[/]")
    err_console.print(table)
    for hint in report.hints:
        err_console.print(f"[yellow]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)
    if test is None:
        verdict = "[green]checked[/] (self-test skipped)"
    elif test.passed:
        verdict = "[green]healthy[/]"
    else:
        why = test.error or ", ".join(c.name for c in test.checks if not c.passed)
        verdict = f"[bold red]self-test failed:[/] {escape(why)}"
    err_console.print(f"doctor: {verdict}; backend {escape(backend.backend)}", highlight=False, soft_wrap=True)
