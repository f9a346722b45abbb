"""Result records: what a benchmark measured, where, when and with which code, as one JSON file.

Every benchmark that prints figures takes ``--record DIR`` and then also writes ``DIR/<name>.json`` with
this shape (``schema`` 1)::

    {"schema": 1, "name": "...", "benchmark": "benchmarks/bench_x.py", "title": "...",
     "provenance": {"written_by": "harness", "command": "...", "commit": "...", "dirty": false,
                    "date": "2026-12-07T10:00:00Z", "machine": "x86_64, 2 CPUs", "cpu_model": "...",
                    "torch": "2.13.0", "notes": "..."},
     "table": {"columns": [...], "rows": [[...], ...]},      # optional: what the docs show
     "figures": {...}}                                        # everything the benchmark measured

Records worth keeping are committed under ``docs/evidence/records/``; the documentation's Evidence pages
render their tables, and the figures their prose quotes, from them when the site is built
(``docs/_gen/records_hook.py``), so a new record
replaces a figure without editing any prose. Figures measured before this harness existed were
transcribed from the README into records whose ``written_by`` is ``"transcribed"`` and whose
``transcribed_from`` names the commit that published them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from diamond_kedro.utils.machine import cpu_model

SCHEMA = 1
ROOT = Path(__file__).resolve().parents[1]
RECORDS_DIR = ROOT / "docs" / "evidence" / "records"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(notes: str | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    """Where a figure comes from: command, commit (and whether the tree had uncommitted changes), date,
    machine and CPU model, torch version."""
    argv = list(sys.argv if argv is None else argv)
    try:
        import torch

        torch_version = torch.__version__
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # a record must not fail for want of torch
        torch_version, gpu = None, None
    script = Path(argv[0]) if argv else Path("?")
    try:
        script = script.resolve().relative_to(ROOT)
    except ValueError:
        pass
    prov = {
        "written_by": "harness",
        "command": " ".join(["python", str(script), *map(shlex.quote, argv[1:])]),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "cpu_model": cpu_model(),
        "gpu": gpu,
        "torch": torch_version,
    }
    if notes:
        prov["notes"] = notes
    return prov


def make_record(name: str, benchmark: str, figures: Any, *, title: str | None = None,
                table: dict[str, list] | None = None, notes: str | None = None,
                argv: list[str] | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"schema": SCHEMA, "name": name, "benchmark": benchmark, "title": title or name,
                              "provenance": provenance(notes, argv)}
    if table is not None:
        check_table(table, name)
        record["table"] = table
    record["figures"] = figures
    return record


def check_table(table: dict[str, list], where: str) -> None:
    cols, rows = table.get("columns"), table.get("rows")
    if not isinstance(cols, list) or not isinstance(rows, list):
        raise ValueError(f"{where}: table needs a 'columns' list and a 'rows' list")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(cols):
            raise ValueError(f"{where}: table row {i} has {len(row) if isinstance(row, list) else '?'} cells, "
                             f"expected {len(cols)} (columns {cols})")


def write_record(directory: str | Path, record: dict[str, Any]) -> Path:
    """Write ``<directory>/<name>.json`` atomically (``utils.atomic``) and return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{record['name']}.json"
    from diamond_kedro.utils.atomic import atomic_write_text  # lazily: the docs hooks only read records

    atomic_write_text(path, json.dumps(record, indent=1, default=str) + "\n")
    return path


def add_record_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--record", type=Path, metavar="DIR", default=None,
                   help=f"also write a result record (JSON: machine, CPU, commit, command, figures) into DIR; "
                        f"the docs' Evidence pages render {RECORDS_DIR.relative_to(ROOT)}/*.json")


def maybe_record(args: argparse.Namespace, name: str, figures: Any, **kwargs: Any) -> Path | None:
    """The one call a benchmark makes at its end: writes the record when ``--record DIR`` was given."""
    directory = getattr(args, "record", None)
    if directory is None:
        return None
    path = write_record(directory, make_record(name, f"benchmarks/{Path(sys.argv[0]).name}", figures, **kwargs))
    print(f"# record: {path}")
    return path


def load_record(path: str | Path) -> dict[str, Any]:
    """Read and check one record; errors name the file."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON record ({e})") from None
    for key in ("schema", "name", "title", "provenance"):
        if key not in record:
            raise ValueError(f"{path}: record lacks '{key}'")
    if record["schema"] != SCHEMA:
        raise ValueError(f"{path}: record schema {record['schema']}, this code reads {SCHEMA}")
    if "table" in record:
        check_table(record["table"], str(path))
    return record
