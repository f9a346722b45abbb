"""MkDocs hook: tables of result records, rendered into the Evidence pages at build time.

A page writes ``<!-- record: NAME -->`` where a table belongs; the hook replaces it with the table of
``docs/evidence/records/NAME.json`` and a line saying where the figures come from (command, machine, CPU,
date, commit — or the commit they were transcribed from). A new record for NAME (``--record`` on the
benchmark, then commit the JSON) replaces the figures without editing the page. A missing or malformed
record fails the build, naming the page and the record.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _record import load_record  # noqa: E402  (benchmarks/ is not a package)

MARKER = re.compile(r"<!--\s*record:\s*([A-Za-z0-9_.-]+)\s*-->")


def records_dir(config: Any) -> Path:
    return Path(config["docs_dir"]) / "evidence" / "records"


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        value = f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _flat(figures: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(figures, dict):
        out = []
        for k, v in figures.items():
            out.extend(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(figures, list) and len(figures) > 8:
        return [(prefix, f"{len(figures)} values")]
    return [(prefix, figures)]


def provenance_line(record: dict[str, Any], link: str) -> str:
    p = record["provenance"]
    parts = []
    if p.get("written_by") == "transcribed":
        src = p.get("transcribed_from", "?")
        first = p.get("first_published_in")
        parts.append(f"transcribed from `{p.get('transcribed_from_file', 'README.md')}` at {src[:10]}"
                     + (f" (first published in {first[:10]})" if first else ""))
    else:
        parts.append(f"written by the harness at commit {str(p.get('commit') or '?')[:10]}"
                     + (" with uncommitted changes" if p.get("dirty") else ""))
    for key, label in (("command", None), ("cpu_model", "CPU"), ("machine", None), ("gpu", "GPU"), ("date", None)):
        if p.get(key):
            parts.append(f"`{p[key]}`" if key == "command" else (f"{label} {p[key]}" if label else str(p[key])))
    if p.get("notes"):
        parts.append(p["notes"])
    return f"*Source: {'; '.join(parts)}. [Record `{record['name']}`]({link}).*"


def render(record: dict[str, Any], link: str) -> str:
    table = record.get("table")
    if table is None:  # a harness record without a table: every scalar figure, flattened
        table = {"columns": ["figure", "value"], "rows": [[k, v] for k, v in _flat(record.get("figures", {}))]}
    cols = table["columns"]
    lines = ["| " + " | ".join(_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table["rows"]]
    return "\n".join(lines) + "\n\n" + provenance_line(record, link) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    directory = records_dir(config)
    page_dir = Path(page.file.src_uri).parent

    def replace(match: re.Match) -> str:
        name = match.group(1)
        path = directory / f"{name}.json"
        if not path.exists():
            raise PluginError(f"{page.file.src_uri}: no record '{name}' ({path} is missing)")
        try:
            record = load_record(path)
        except ValueError as e:
            raise PluginError(f"{page.file.src_uri}: {e}") from None
        rel = Path("evidence/records") / f"{name}.json"
        link = Path(*[".."] * len(page_dir.parts), rel).as_posix() if page_dir.parts else rel.as_posix()
        return render(record, link)

    return MARKER.sub(replace, markdown)
