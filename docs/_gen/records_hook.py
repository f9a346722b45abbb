"""MkDocs hook: tables of result records, rendered into the Evidence pages at build time.

A page writes ``<!-- record: NAME -->`` where a table belongs; the hook replaces it with the table of
``docs/evidence/records/NAME.json`` and a line saying where the figures come from (command, machine, CPU,
date, commit — or the commit they were transcribed from). A new record for NAME (``--record`` on the
benchmark, then commit the JSON) replaces the figures without editing the page. A missing or malformed
record fails the build, naming the page and the record.

A figure in prose is written ``<!-- value: NAME:path.to.figure -->`` (optionally ``|FORMAT``, a Python format
spec applied to each number, e.g. ``<!-- value: learning_wm:figures.gap_db|+.2f -->``): the path walks the
record's keys (and list indices) from its top; the hook puts the value there as a link to the record, so the
prose carries no hand-typed measurement. A missing record, key or index fails the build, naming the page,
the record and the path.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _record import load_record  # noqa: E402  (benchmarks/ is not a package)

MARKER = re.compile(r"<!--\s*record:\s*([A-Za-z0-9_.-]+)\s*-->")
VALUE = re.compile(r"<!--\s*value:\s*([A-Za-z0-9_.-]+):([^\s|]+?)\s*(?:\|\s*([^\s]+?)\s*)?-->")


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


def lookup(record: dict[str, Any], dotted: str) -> Any:
    """The value at ``a.b.0.c`` in a record: dict keys, and integer indices into lists."""
    value: Any = record
    for i, key in enumerate(dotted.split(".")):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.lstrip("-").isdigit() and -len(value) <= int(key) < len(value):
            value = value[int(key)]
        else:
            where = ".".join(dotted.split(".")[:i]) or "the record"
            raise KeyError(f"no '{key}' in {where}")
    return value


def format_value(value: Any, spec: str | None) -> str:
    """One figure as prose shows it: numbers through the format spec (else as stored), lists joined."""
    if isinstance(value, list):
        return ", ".join(format_value(v, spec) for v in value)
    if isinstance(value, dict):
        raise TypeError("a value marker must name one figure (or a list of them), not a group")
    if spec and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec).replace("-", "−")  # a typographic minus, as the prose writes it
    return str(value)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    directory = records_dir(config)
    page_dir = Path(page.file.src_uri).parent
    cache: dict[str, dict[str, Any]] = {}

    def load(name: str) -> tuple[dict[str, Any], str]:
        if name not in cache:
            path = directory / f"{name}.json"
            if not path.exists():
                raise PluginError(f"{page.file.src_uri}: no record '{name}' ({path} is missing)")
            try:
                cache[name] = load_record(path)
            except ValueError as e:
                raise PluginError(f"{page.file.src_uri}: {e}") from None
        rel = Path("evidence/records") / f"{name}.json"
        link = Path(*[".."] * len(page_dir.parts), rel).as_posix() if page_dir.parts else rel.as_posix()
        return cache[name], link

    def replace(match: re.Match) -> str:
        record, link = load(match.group(1))
        return render(record, link)

    def replace_value(match: re.Match) -> str:
        name, dotted, spec = match.groups()
        record, link = load(name)
        try:
            text = format_value(lookup(record, dotted), spec)
        except (KeyError, TypeError, ValueError) as e:
            msg = e.args[0] if e.args else e
            raise PluginError(f"{page.file.src_uri}: record '{name}' has no figure '{dotted}' ({msg})") from None
        return f'[{text}]({link} "record {name}: {dotted}")'

    return VALUE.sub(replace_value, MARKER.sub(replace, markdown))
