"""What a sweep is (games x seeds of one Kedro profile) and what it leaves on disk.

A sweep named NAME lives beside the runs, in ``<run.root>/../sweeps/NAME/`` (so on the shared filesystem
when ``run.root`` is one)::

    sweep.json          the cells (game, seed), the profile, the extra parameters, the MLflow store
    cells/<key>.json    one status per cell, rewritten atomically by its Ray task after every epoch:
                        state, epoch, env steps, latest return, attempt, host and pid of the worker
    logs/<key>.log      the Kedro log of the cell's task (all attempts)

The runs themselves are ordinary runs (``<run.root>/<Game>_seed<seed>_<NAME>/``): the sweep sets
``env.game``, ``run.seed`` and ``run.name = NAME``, nothing else.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diamond_kedro.utils.atomic import atomic_write_text
from diamond_kedro.errors import UserError

ATARI_100K = "atari100k"
STATES = ("pending", "running", "stale", "done", "failed")  # stale: "running" left by a dead driver (--status)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SweepError(UserError, ValueError):
    """Bad sweep input; the CLI prints its message as one line."""


def parse_games(text: str) -> list[str]:
    """``Breakout,Pong`` or ``atari100k`` (the 26 games) -> canonical game names, in order, no repeats."""
    from diamond_kedro.envs.atari import ATARI_100K_GAMES, resolve_game

    games: list[str] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        names = list(ATARI_100K_GAMES) if item.lower() == ATARI_100K else [item]
        for name in names:
            try:
                game = resolve_game(name).removesuffix("NoFrameskip-v4")
            except ValueError as exc:
                raise SweepError(f"--games: {exc}") from None
            if game not in games:
                games.append(game)
    if not games:
        raise SweepError("--games: no game given (e.g. --games Breakout,Pong or --games atari100k)")
    return games


def parse_seeds(text: str) -> list[int]:
    """``0-4``, ``0,3,7`` or ``0-2,10`` -> sorted distinct seeds."""
    seeds: set[int] = set()
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if m is None:
            raise SweepError(f"--seeds: {item!r} is not a seed or a range like 0-4")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise SweepError(f"--seeds: empty range {item!r}")
        seeds.update(range(lo, hi + 1))
    if not seeds:
        raise SweepError("--seeds: no seed given (e.g. --seeds 0-4)")
    return sorted(seeds)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets (``a=[1,2],b=3`` -> two items)."""
    items, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return [i for i in (s.strip() for s in items) if i]


def parse_params(text: str | None) -> dict[str, Any]:
    """``--params a.b=1,c=x`` -> nested dict, typed as ``kedro run --params`` types them (OmegaConf dotlist)."""
    from omegaconf import OmegaConf

    items = _split_top_level(text or "")
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise SweepError(f"--params: {item!r} is not key=value")
    out = OmegaConf.to_container(OmegaConf.from_dotlist(items)) if items else {}
    for owned in ("env.game", "run.seed"):
        section, name = owned.split(".")
        if name in (out.get(section) or {}):
            raise SweepError(f"--params: {owned} is set by the sweep (use --games / --seeds)")
    return out


def merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of ``src`` into a copy of ``dst``."""
    out = dict(dst)
    for k, v in src.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise SweepError(f"--name: {name!r} must be letters, digits, '.', '_' or '-' (it names folders and runs)")
    return name


def cell_key(game: str, seed: int, name: str) -> str:
    """The run key of a cell (``diamond_kedro.training.run.run_key``)."""
    return f"{game}_seed{seed}_{name}"


@dataclass
class CellStatus:
    game: str
    seed: int
    key: str
    state: str = "pending"
    epoch: int = 0
    total_epochs: int | None = None
    env_steps: int = 0
    latest_return: float | None = None
    return_source: str = ""  # final_return_mean or test_dataset/return_mean
    attempt: int = 0  # Ray task attempts that started (> 1 after a retry)
    host: str = ""
    pid: int = 0
    error: str = ""
    updated: float = 0.0


@dataclass
class Sweep:
    """A sweep's definition and folder; ``cells`` in order game-major."""

    name: str
    folder: Path
    project: str
    env: str
    games: list[str]
    seeds: list[int]
    params: dict[str, Any] = field(default_factory=dict)
    run_root: str = ""
    tracking_uri: str | None = None
    experiment_name: str = "diamond-atari"
    artifact_location: str | None = None

    @property
    def cells(self) -> list[tuple[str, int]]:
        return [(g, s) for g in self.games for s in self.seeds]

    def key(self, game: str, seed: int) -> str:
        return cell_key(game, seed, self.name)

    def status_path(self, game: str, seed: int) -> Path:
        return self.folder / "cells" / f"{self.key(game, seed)}.json"

    def log_path(self, game: str, seed: int) -> Path:
        return self.folder / "logs" / f"{self.key(game, seed)}.log"

    def run_folder(self, game: str, seed: int) -> Path:
        return Path(self.run_root) / self.key(game, seed)

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "folder"}
        atomic_write_text(self.folder / "sweep.json", json.dumps(data, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "Sweep":
        path = folder / "sweep.json"
        if not path.is_file():
            raise SweepError(f"no sweep at {folder} (missing sweep.json): run the sweep first, or check --name")
        try:
            data = json.loads(path.read_text())
            return cls(folder=folder, **data)
        except (json.JSONDecodeError, TypeError) as exc:
            raise SweepError(f"{path} is not a sweep definition: {exc}") from None

    def statuses(self) -> list[CellStatus]:
        out = []
        for game, seed in self.cells:
            out.append(read_status(self.status_path(game, seed)) or CellStatus(game, seed, self.key(game, seed)))
        return out


def read_status(path: Path) -> CellStatus | None:
    try:
        return CellStatus(**json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError):
        return None  # not written yet (a torn file cannot happen: writes are atomic)


def write_status(path: Path, status: CellStatus) -> None:
    atomic_write_text(path, json.dumps(asdict(status), indent=2))


def format_table(statuses: list[CellStatus]) -> str:
    """The progress table: game, seed, epoch, env steps, latest return, state."""
    header = ("game", "seed", "epoch", "env steps", "latest return", "state")
    rows = []
    for s in statuses:
        epoch = f"{s.epoch}/{s.total_epochs}" if s.total_epochs else str(s.epoch)
        ret = "-" if s.latest_return is None else f"{s.latest_return:.1f}" + (" (final)" if s.return_source == "final_return_mean" else "")
        state = s.state + (f" (attempt {s.attempt})" if s.attempt > 1 and s.state == "running" else "")
        if s.state in ("failed", "stale") and s.error:
            state += f": {s.error[:60]}"
        rows.append((s.game, str(s.seed), epoch, str(s.env_steps), ret, state))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    counts = {st: sum(s.state == st for s in statuses) for st in STATES}
    lines.append(", ".join(f"{n} {st}" for st, n in counts.items() if n))
    return "\n".join(lines)
