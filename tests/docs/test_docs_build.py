"""The documentation site builds with warnings as errors, its internal links resolve, its generated
reference is complete, and its Evidence tables follow the result records."""

from __future__ import annotations

import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel

from tests.docs.conftest import PROJECT, copy_docs_project, mkdocs_build


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id":
                self.ids.add(value)
            if (name == "href" and tag in ("a", "link")) or (name == "src" and tag in ("img", "script", "video", "source")):
                self.links.append(value)


def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_every_internal_link_resolves(built_site: Path) -> None:
    pages = sorted(built_site.rglob("*.html"))
    assert len(pages) > 20, pages
    parsed = {p: _parse(p) for p in pages}
    broken = []
    for page, links in parsed.items():
        for link in links.links:
            url = urlsplit(link)
            if url.scheme or url.netloc or link.startswith(("mailto:", "javascript:", "data:")):
                continue
            path = unquote(url.path)
            base = built_site if path.startswith("/") else page.parent  # 404.html links from the site root
            target = (base / path.lstrip("/")).resolve() if path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(built_site)} -> {link}")
            elif url.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if url.fragment not in ids:
                    broken.append(f"{page.relative_to(built_site)} -> {link} (no anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken)


def test_pipeline_reference_lists_the_registry(built_site: Path) -> None:
    from kedro.framework.project import configure_project

    configure_project("diamond_kedro")
    from diamond_kedro.pipeline_registry import register_pipelines

    names = set(register_pipelines())
    assert {"atari_epoch", "static_world_model", "static_world_model_ingest", "csgo"} <= names
    text = _text((built_site / "reference" / "pipelines.html").read_text())
    missing = [n for n in sorted(names) if f" {n} " not in text]
    assert not missing, f"pipelines missing from reference/pipelines.html: {missing}"


def _leaf_keys(model: type[BaseModel], prefix: str) -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _leaf_keys(ann, key)
        else:
            keys.append(key)
    return keys


def test_configuration_reference_lists_every_key(built_site: Path) -> None:
    from diamond_kedro.config import DiamondConfig
    from diamond_kedro.csgo.config import CsgoConfig
    from diamond_kedro.datasets.config import StaticWorldModelConfig

    keys = _leaf_keys(DiamondConfig, "") + _leaf_keys(CsgoConfig, "csgo") + _leaf_keys(StaticWorldModelConfig, "static_world_model")
    assert len(keys) > 150 and "denoiser.training.lr" in keys and "static_world_model.dataset.test_fraction" in keys
    cells = set(re.findall(r"<td><code>([^<]+)</code></td>", (built_site / "reference" / "configuration.html").read_text()))
    missing = [k for k in keys if k not in cells]
    assert not missing, f"config keys missing from reference/configuration.html: {missing}"


def test_cli_reference_has_the_commands_help(built_site: Path) -> None:
    text = _text((built_site / "reference" / "cli.html").read_text())
    for needle in ("usage: diamond-kedro play atari", "usage: diamond-kedro sweep", "--gpus-per-run", "--pipelines"):
        assert needle in text, needle


def test_every_evidence_table_names_its_record(built_site: Path) -> None:
    records = {p.stem for p in (PROJECT / "docs" / "evidence" / "records").glob("*.json")}
    pages = "".join(p.read_text() for p in (built_site / "evidence").glob("*.html"))
    pages += (built_site / "guides" / "play.html").read_text() + (built_site / "guides" / "bring-your-own.html").read_text()
    for name in records:
        assert f"records/{name}.json" in pages, f"record {name} is rendered nowhere"
    assert "<!-- record:" not in pages  # every marker was replaced


def test_a_new_record_changes_the_built_table(tmp_path: Path) -> None:
    project = copy_docs_project(tmp_path / "project")  # copytree needs a missing destination; made below
    sys.path.insert(0, str(PROJECT / "benchmarks"))
    from _record import make_record, write_record

    old = json.loads((project / "docs/evidence/records/vs_authors_speed.json").read_text())
    table = {"columns": old["table"]["columns"], "rows": [list(r) for r in old["table"]["rows"]]}
    table["rows"][0][1] = "4.321"  # authors' denoiser training step, a figure the old record does not have
    record = make_record("vs_authors_speed", "benchmarks/bench_vs_authors.py", {"denoiser_train": 4.321},
                         title=old["title"], table=table, argv=["benchmarks/bench_vs_authors.py", "--rounds", "1"])
    write_record(project / "docs/evidence/records", record)
    site = tmp_path / "site"
    mkdocs_build(project, site)
    html = (site / "evidence" / "speed.html").read_text()
    text = _text(html)
    assert "4.321" in text and "5.49" not in text
    assert "written by the harness" in text and "python benchmarks/bench_vs_authors.py --rounds 1" in text


def test_a_missing_record_fails_the_build(tmp_path: Path) -> None:
    project = copy_docs_project(tmp_path / "project")
    page = project / "docs" / "evidence" / "speed.md"
    page.write_text(page.read_text() + "\n<!-- record: no_such_record -->\n")
    proc = mkdocs_build(project, tmp_path / "site", check=False)
    assert proc.returncode != 0
    assert "evidence/speed.md: no record 'no_such_record'" in proc.stdout + proc.stderr


def test_pages_use_pipelines_not_the_deprecated_flag() -> None:
    """Kedro 1.7 deprecates ``--pipeline``; the pages, the README and the Makefile write ``--pipelines``."""
    texts = {p: p.read_text() for p in [*(PROJECT / "docs").rglob("*.md"), PROJECT / "README.md", PROJECT / "Makefile"]}
    stale = [str(p.relative_to(PROJECT)) for p, t in texts.items() if re.search(r"--pipeline[= ]", t)]
    assert not stale, stale
