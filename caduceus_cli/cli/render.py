"""Rich renderings of pipeline results (stderr)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from caduceus_cli.pipelines.finetune_probe import ProbeReport


def _metric(m: dict, key: str) -> str:
    if m.get(key) is None:
        return "n/a"
    ci = m.get(f"{key}_ci")
    return f"{m[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def render_probe_report(report: ProbeReport, console: Console) -> None:
    """The probe's metrics as a table: overall and per distance-to-TSS bucket, with bootstrap CIs."""
    metrics = report.metrics
    table = Table(title=f"probe on {report.n_test} test variants (95% bootstrap CI)")
    for col in ("set", "n", "positives", "AUROC", "AUPRC"):
        table.add_column(col, justify="left" if col == "set" else "right")
    rows = [("all", metrics)] + list(metrics.get("buckets", {}).items())
    for name, m in rows:
        table.add_row(name, str(m["n"]), str(m["n_pos"]), _metric(m, "auroc"), _metric(m, "auprc"))
    console.print(table)
    console.print(f"[green]done:[/] probe, metrics and report in {Path(report.probe).parent}", highlight=False)
