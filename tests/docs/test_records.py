"""benchmarks/_record.py: the records a benchmark's --record DIR writes, and the checks that read them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from tests.docs.conftest import PROJECT

sys.path.insert(0, str(PROJECT / "benchmarks"))
from _record import SCHEMA, add_record_argument, load_record, maybe_record  # noqa: E402


def test_record_flag_writes_a_record_with_provenance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = argparse.ArgumentParser()
    add_record_argument(p)
    monkeypatch.setattr(sys, "argv", [str(PROJECT / "benchmarks" / "bench_x.py"), "--steps", "2"])
    args = p.parse_args(["--record", str(tmp_path / "rec")])
    path = maybe_record(args, "x", {"a": {"b": 1.5}}, table={"columns": ["k", "v"], "rows": [["a", 1.5]]})
    record = load_record(path)
    assert path == tmp_path / "rec" / "x.json"
    prov = record["provenance"]
    assert record["schema"] == SCHEMA and record["figures"] == {"a": {"b": 1.5}}
    assert prov["written_by"] == "harness" and prov["command"] == "python benchmarks/bench_x.py --steps 2"
    assert prov["cpu_model"] and prov["machine"] and prov["date"].endswith("Z")
    assert len(prov["commit"] or "") == 40  # the checkout is a git repository
    assert not list((tmp_path / "rec").glob("*.tmp"))  # written atomically


def test_no_record_without_the_flag() -> None:
    p = argparse.ArgumentParser()
    add_record_argument(p)
    assert maybe_record(p.parse_args([]), "x", {}) is None


def test_bad_records_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": 1, "name": "bad", "title": "t", "provenance": {},
                               "table": {"columns": ["a", "b"], "rows": [[1]]}}))
    with pytest.raises(ValueError, match=r"bad.json: table row 0 has 1 cells, expected 2"):
        load_record(bad)
    bad.write_text("{")
    with pytest.raises(ValueError, match="bad.json: not a readable JSON record"):
        load_record(bad)


def test_committed_records_are_valid_and_say_where_they_come_from() -> None:
    paths = sorted((PROJECT / "docs" / "evidence" / "records").glob("*.json"))
    assert paths
    for path in paths:
        record = load_record(path)
        prov = record["provenance"]
        assert record["name"] == path.stem
        assert prov.get("command") and prov.get("date") and prov.get("cpu_model"), path
        if prov["written_by"] == "transcribed":
            assert len(prov["transcribed_from"]) == 40 and len(prov["first_published_in"]) == 40, path
        else:
            assert len(prov["commit"]) == 40, path
