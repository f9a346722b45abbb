"""Build-time generation of the Evidence index and the Catch plot from the result records
(mkdocs-gen-files): the list of every record with its provenance, and the per-epoch returns of the
Catch runs drawn from ``docs/evidence/records/catch_runs.json``."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _record import load_record  # noqa: E402

RECORDS = ROOT / "docs" / "evidence" / "records"


def write_index() -> None:
    with mkdocs_gen_files.open("evidence/records.md", "w") as f:
        f.write("# Result records\n\n*Generated at build time from `docs/evidence/records/*.json`.* Every table "
                "on the Evidence pages is rendered from one of these. `written_by: harness` records were written "
                "by a benchmark's `--record DIR`; `transcribed` ones hold figures measured before the harness "
                "wrote records, copied from the README or the page at the commit named.\n\n")
        f.write("| record | title | written by | date | CPU | from |\n|---|---|---|---|---|---|\n")
        for path in sorted(RECORDS.glob("*.json")):
            r = load_record(path)
            p = r["provenance"]
            src = p.get("transcribed_from") or p.get("commit") or "?"
            f.write(f"| [`{r['name']}`](records/{path.name}) | {r['title']} | {p.get('written_by', '?')} | "
                    f"{p.get('date', '?')} | {p.get('cpu_model', '?')} | `{str(src)[:10]}` |\n")


def write_catch_plot() -> None:
    path = RECORDS / "catch_runs.json"
    if not path.exists():
        return
    record = load_record(path)
    figures = record.get("figures", {})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for label, curve in figures.get("curves", {}).items():
        ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, lw=1.8 if label.startswith("now") else 0.9,
                label=label)
    if "optimum" in figures:
        ax.axhline(figures["optimum"], color="k", ls="--", lw=0.8, label="optimum")
    if "random" in figures:
        ax.axhline(figures["random"], color="grey", ls=":", lw=0.8, label="random policy")
    ax.set_xlabel("epoch")
    ax.set_ylabel("real-env return (5 games)")
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    with mkdocs_gen_files.open("evidence/catch_returns.svg", "w") as f:
        f.write(buf.getvalue())


write_index()
write_catch_plot()
