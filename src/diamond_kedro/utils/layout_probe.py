"""Per-machine cache of measured kernel choices: the CPU convolution memory layout and the training precision.

A choice is measured once per (CPU model, torch version, thread count, ISA limit) and kept in
``$XDG_CACHE_HOME/diamond_kedro/kernel_choices.json`` (``~/.cache`` by default; ``DIAMOND_CACHE_DIR``
overrides the folder), written atomically. An unreadable cache file is measured over, never trusted.
Processes measuring at once (a sweep's runs starting together) each add their entry: the file is re-read
and rewritten under a lock (``kernel_choices.json.lock``), so no writer drops another's entries.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch

from diamond_kedro.utils.atomic import atomic_write_text
from diamond_kedro.utils.machine import cpu_model  # noqa: F401  (also this module's: the cache key names the CPU)

ISA_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def isa_limit() -> str:
    """The ISA limits set in the environment (they change which kernels run), '' when none."""
    return ",".join(f"{v}={os.environ[v]}" for v in ISA_VARS if os.environ.get(v))


def cache_file() -> Path:
    root = os.environ.get("DIAMOND_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "diamond_kedro"
    )
    return Path(root) / "kernel_choices.json"


def machine_key() -> str:
    return f"{cpu_model()} | torch {torch.__version__} | threads {torch.get_num_threads()} | isa {isa_limit() or 'native'}"


def cached_choice(probe: Callable[[], dict[str, float]], name: str = "conv_layout") -> bool:
    """True when channels_last won ``probe`` (seconds per layout) on this machine; measured on first use."""
    # channels_last must win by a margin: a tie is not worth losing the AdaGroupNorm fusion for
    choice = cached_pick(name, probe, lambda t: "channels_last" if t["channels_last"] < 0.95 * t["contiguous"] else "contiguous")
    return choice == "channels_last"


def cached_pick(name: str, probe: Callable[[], dict[str, float]], decide: Callable[[dict[str, float]], str]) -> str:
    """The option ``decide`` picks from ``probe()``'s seconds per option, measured once per machine key.

    A cached entry is trusted only when its choice is one of the options its own timings name; anything
    else (a hand-edited or truncated file) is measured over and rewritten.
    """
    path, key = cache_file(), machine_key()
    entry = _read_cache(path).get(name, {}).get(key)
    if isinstance(entry, dict) and isinstance(entry.get("seconds"), dict) and entry.get("choice") in entry["seconds"]:
        return entry["choice"]
    times = probe()  # measured without the lock: it takes seconds, and others may be measuring too
    choice = decide(times)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock

        with FileLock(f"{path}.lock", timeout=60):
            cache = _read_cache(path)  # what others wrote since our first read
            section = cache[name] = cache.get(name, {})
            section[key] = {"choice": choice, "seconds": times}
            atomic_write_text(path, json.dumps(cache, indent=1))
    except (OSError, TimeoutError):
        pass  # a read-only home (or a lock never released): the choice still holds for this process
    return choice


def _read_cache(path: Path) -> dict:
    """The cache as {name: {machine key: entry}}; anything else in the file (truncated, hand-edited) is dropped."""
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(cache, dict):
        return {}
    return {k: v for k, v in cache.items() if isinstance(v, dict)}
