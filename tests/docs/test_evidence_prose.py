"""Figures in the documentation's prose come from result records (``<!-- value: NAME:path -->``), and no
page (the Evidence pages, the guides, the reference) nor the README carries a hand-typed measurement."""

from __future__ import annotations

import importlib.util
import re
import types
from pathlib import Path

import pytest
from mkdocs.exceptions import PluginError

from tests.docs.conftest import PROJECT, copy_docs_project, mkdocs_build


def _hook() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("records_hook", PROJECT / "docs" / "_gen" / "records_hook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _render(markdown: str, docs: Path, src_uri: str = "evidence/x.md") -> str:
    page = types.SimpleNamespace(file=types.SimpleNamespace(src_uri=src_uri))
    return _hook().on_page_markdown(markdown, page, {"docs_dir": str(docs)}, None)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    records = tmp_path / "docs" / "evidence" / "records"
    records.mkdir(parents=True)
    (records / "r.json").write_text(
        '{"schema": 1, "name": "r", "title": "t", "provenance": {}, '
        '"figures": {"ms": 309, "gap": [0.39, -0.1, 0.82], "range": "2.1–3.0", "nested": {"a": [1.5, 2.25]}}}')
    return tmp_path / "docs"


def test_value_markers_render_the_record_figures_as_links(docs: Path) -> None:
    md = ("takes <!-- value: r:figures.ms --> ms; gaps <!-- value: r:figures.gap|+.2f --> dB; "
          "<!-- value:r:figures.range -->×; <!-- value: r:figures.nested.a.1 -->")
    out = _render(md, docs)
    link = '(../evidence/records/r.json "record r: figures.{}")'
    assert out == (f"takes [309]{link.format('ms')} ms; gaps [+0.39, −0.10, +0.82]{link.format('gap')} dB; "
                   f"[2.1–3.0]{link.format('range')}×; [2.25]{link.format('nested.a.1')}")
    assert _render("<!-- value: r:figures.ms -->", docs, "guides/deep/p.md") == \
        '[309](../../evidence/records/r.json "record r: figures.ms")'


@pytest.mark.parametrize("marker, message", [
    ("<!-- value: r:figures.nope -->", "evidence/x.md: record 'r' has no figure 'figures.nope' (no 'nope' in figures)"),
    ("<!-- value: r:figures.gap.3 -->", "record 'r' has no figure 'figures.gap.3' (no '3' in figures.gap)"),
    ("<!-- value: r:figures.nested -->", "record 'r' has no figure 'figures.nested' (a value marker must name one figure"),
    ("<!-- value: gone:figures.ms -->", "evidence/x.md: no record 'gone'"),
])
def test_a_missing_record_or_figure_is_named(docs: Path, marker: str, message: str) -> None:
    with pytest.raises(PluginError, match=re.escape(message)):
        _render(f"text {marker} text", docs)


def test_a_missing_figure_fails_the_strict_build(tmp_path: Path) -> None:
    project = copy_docs_project(tmp_path / "project")
    page = project / "docs" / "evidence" / "speed.md"
    page.write_text(page.read_text() + "\nIt took <!-- value: speed_prose:figures.no_such_figure --> s.\n")
    proc = mkdocs_build(project, tmp_path / "site", check=False)
    assert proc.returncode != 0
    assert "evidence/speed.md: record 'speed_prose' has no figure 'figures.no_such_figure'" in proc.stdout + proc.stderr


# A measured figure: a number (or a range) with the unit of a time, a ratio, a PSNR, a throughput or a share.
# Sizes such as 64×64 or F(2×2, 3×3) are not matched (a digit follows the ×).
MEASURED = re.compile(r"(?<![\w.])[+−-]?\d+(?:[.,]\d+)?(?:\s?[–-]\s?\d+(?:\.\d+)?)?\s*"
                      r"(?:x|×|s|ms|min|minutes|dB|GFLOP/s|%)(?![\w²])")
# Numbers with those units that are not measurements, each with why (page, the text as written):
NOT_MEASURED = {
    ("docs/evidence/catch.md", "90 %"),      # the success threshold: "pass 90 % of the optimum"
    ("docs/evidence/learning.md", "90 %"),   # the same threshold: "≥ 90 % of the optimum"
    ("docs/evidence/learning.md", "5×"),     # a budget: 1 500 steps against 300 ("a 5× longer run")
    ("docs/evidence/speed.md", "1.5×"),      # the project's target, not a result
    ("docs/evidence/speed.md", "2.25×"),     # arithmetic: 36 multiplications per tile against 16
    ("docs/evidence/speed.md", "1.3×"),      # the precision probe's threshold (utils/precision.py)
    ("docs/guides/bring-your-own.md", "16 ×"),  # the paper's batch: "batch 16 × 8 accumulation"
    ("docs/guides/gpu.md", "450 s"),            # the GPU check's time budget per part, a setting
    ("docs/guides/reproduce-paper.md", "2 ×"),  # arithmetic on the paper's figure: "2 × 12 GB"
    ("docs/guides/reproduce-paper.md", "12 ×"),  # arithmetic: at most 12 agent versions × their size
}


def prose(markdown: str) -> str:
    """What a reader sees typed by hand: no code blocks, no inline code, no markers (rendered from records)."""
    markdown = re.sub(r"^(```|~~~).*?^\1", "", markdown, flags=re.S | re.M)
    markdown = re.sub(r"<!--.*?-->", "", markdown, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", markdown)


def measured_figures(path: Path) -> list[str]:
    rel = path.relative_to(PROJECT).as_posix()
    return [m.group(0) for m in MEASURED.finditer(prose(path.read_text(encoding="utf-8")))
            if (rel, m.group(0)) not in NOT_MEASURED]


def test_the_heuristic_finds_hand_typed_figures() -> None:
    text = prose("takes 309 ms, 2.1–3.0× faster, 0.12 dB, 173 GFLOP/s, 1.3 % and ≈ 5–6 min\n"
                 "`python x.py --steps 300` <!-- value: r:figures.ms --> ms, 64×64 frames, F(2×2, 3×3), 4096² at 26s\n"
                 "```\n1 500 s\n```\n")
    assert [m.group(0) for m in MEASURED.finditer(text)] == ["309 ms", "2.1–3.0×", "0.12 dB", "173 GFLOP/s", "1.3 %",
                                                             "5–6 min", "26s"]


@pytest.mark.parametrize("path", [*sorted((PROJECT / "docs").rglob("*.md")), PROJECT / "README.md"],
                         ids=lambda p: p.relative_to(PROJECT).as_posix())
def test_no_hand_typed_measurement(path: Path) -> None:
    assert measured_figures(path) == [], (
        f"{path.relative_to(PROJECT)}: measured figures typed into the prose; render them from a record "
        "(<!-- value: NAME:path -->) or drop them")


def test_the_allow_list_has_no_stale_entries() -> None:
    for rel, text in NOT_MEASURED:
        assert text in prose((PROJECT / rel).read_text(encoding="utf-8")), (rel, text)
