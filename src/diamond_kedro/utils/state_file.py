"""Run state files (``checkpoints/state.pt``) that hold data only: reading one can never run code.

Why ``torch.load(weights_only=True)`` and not safetensors + JSON: a run's state is a tree of model and
optimiser state dicts (tensors under int and str keys), counters, the config, RNG states (Python's is a
tuple of 625 ints, numpy's a uint32 array plus ints, torch's byte tensors), the emulator states (bytes) and
the epoch's report. PyTorch's restricted unpickler (``weights_only=True``) rebuilds exactly that -- tensors,
dicts, lists, tuples, str, bytes, int (of any size), float, bool, None -- and refuses every other global
before calling anything, so a crafted file fails to load instead of running code. We pass NO extra allow-list
(no ``add_safe_globals``): what is not one of those types is encoded here first (numpy arrays as tensors,
paths as str, both tagged so that ``decode`` gives back the same objects). One file also keeps the commit
one ``os.replace`` (``utils.atomic``), which a safetensors file + a JSON file would have to emulate with an
epoch folder and a pointer file. ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` does not weaken this: it only changes
the default of calls that do not pass ``weights_only``.

Everything is loaded to the CPU (``map_location="cpu"``) and the caller moves what it needs: RNG states must
stay CPU byte tensors (``torch.set_rng_state`` refuses CUDA ones), models and optimisers copy into their own
device on ``load_state_dict``.

Run folders written before this format hold a fully pickled ``state.pt``: loading one raises
:class:`PickledStateFile` (one line: the file and the conversion command) and never unpickles it.
``diamond-kedro convert-run RUN_FOLDER`` (:func:`convert_pickled_state`) is the one place that still uses
the unpickler, once, when the user asks for it.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from diamond_kedro.errors import UserError
from diamond_kedro.utils.atomic import atomic_torch_save

FORMAT_KEY = "diamond_kedro_state"
FORMAT = "weights_only/1"
_NDARRAY = "__ndarray__"
_PATH = "__path__"


class StateFileError(UserError, ValueError):
    """A run state file that cannot be read (missing, foreign, torn by hand, of an unknown format)."""


class PickledStateFile(StateFileError):
    """A ``state.pt`` in the old, fully pickled format (or a crafted one): refused without unpickling."""


def convert_hint(path: Path) -> str:
    run = Path(path).parent.parent if Path(path).parent.name == "checkpoints" else Path(path).parent
    return f"diamond-kedro convert-run {run}"


def encode(obj: Any, where: str = "state") -> Any:
    """``obj`` as types the restricted unpickler rebuilds; TypeError (naming the key) for anything else, at
    save time rather than as an unreadable file at the next resume."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"cannot store an object array at {where} in a run state")
        return {_NDARRAY: torch.from_numpy(np.array(obj, copy=True, order="C"))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return {_PATH: str(obj)}
    if isinstance(obj, dict):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj  # a module's state dict (an OrderedDict with ``_metadata``): kept as it is
        if _NDARRAY in obj or _PATH in obj:
            raise TypeError(f"reserved key at {where} in a run state")
        return {k: encode(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(encode(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, list):
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"cannot store a {type(obj).__name__} at {where} in a run state (data only)")


def decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1 and _NDARRAY in obj:
            return obj[_NDARRAY].numpy().copy()
        if len(obj) == 1 and _PATH in obj:
            return Path(obj[_PATH])
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(decode(v) for v in obj)
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


def save_state_file(state: dict[str, Any], path: Path | str) -> None:
    """Write ``state`` atomically (temp file, fsync, rename, fsync of the folder) in the data-only format."""
    atomic_torch_save({FORMAT_KEY: FORMAT, "state": encode(state)}, path)


def load_state_file(path: Path | str, *, mmap: bool = False) -> dict[str, Any]:
    """The state saved by :func:`save_state_file`, on the CPU. Never unpickles anything but data."""
    path = Path(path)
    if not path.is_file():
        raise StateFileError(f"run state {path} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # not a pickle of objects at all (garbage, a torn copy)
            raise StateFileError(f"cannot read run state {path}: not a state file written by diamond-kedro") from exc
        # the restricted unpickler met a global outside the allow-list: an old pickled state (or a crafted one)
        raise PickledStateFile(
            f"{path} is an old-format run state (pickled Python objects, which could run code when loaded) and was "
            f"not read; if you trust where it came from, convert it once with `{convert_hint(path)}`"
        ) from exc
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise StateFileError(f"cannot read run state {path}: {first[0] if first else type(exc).__name__}") from exc
    if not isinstance(raw, dict) or raw.get(FORMAT_KEY) != FORMAT:
        raise StateFileError(f"{path} is not a diamond-kedro run state (no {FORMAT_KEY}={FORMAT!r} tag)")
    return decode(raw["state"])


def convert_pickled_state(path: Path | str, fix: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                          say: Callable[[str], None] = print) -> Path:
    """Convert an old pickled ``state.pt`` in place (the original kept as ``state.pt.pickled``): the one
    place that unpickles a state file, run only when the user asks for it. ``fix`` turns the old objects
    into data (emulator states to bytes, the report to a dict). Returns the backup's path."""
    path = Path(path)
    try:
        load_state_file(path)
        raise StateFileError(f"{path} is already in the data-only format: nothing to convert")
    except PickledStateFile:
        pass
    say(f"UNPICKLING {path}: this runs whatever code the file holds; do this only for files you trust")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if fix is not None:
        state = fix(state)
    backup = path.with_name(path.name + ".pickled")
    if backup.exists():
        backup.unlink()
    try:
        os.link(path, backup)  # the original stays reachable; state.pt itself is never missing (atomic replace)
    except OSError:  # a filesystem without hard links
        shutil.copy2(path, backup)
    save_state_file(state, path)
    say(f"converted {path} (the pickled original is {backup}: delete it once the run resumes)")
    return backup
