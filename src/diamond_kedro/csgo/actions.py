"""The 51-dim multi-hot CS:GO action vector of Pearce & Zhu's dataset (spec §7.2).

    slice   size  meaning
    0-10    11    keys W, A, S, D, space (jump), left ctrl (crouch), left shift (walk), 1, 2, 3, R (reload)
    11      1     left mouse button
    12      1     right mouse button
    13-35   23    mouse-x one-hot over MOUSE_X_BINS
    36-50   15    mouse-y one-hot over MOUSE_Y_BINS

The world model only ever sees the vector (its action embedding is the sum of the rows of the active
entries); these helpers exist to build vectors (play, tests) and to display recorded ones. Decoding
follows the authors: keys and clicks by rounding, mouse by arg-max.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

KEYS: tuple[str, ...] = ("w", "a", "s", "d", "space", "ctrl", "shift", "1", "2", "3", "r")
MOUSE_X_BINS: tuple[int, ...] = (
    -1000, -500, -300, -200, -100, -60, -30, -20, -10, -4, -2, 0, 2, 4, 10, 20, 30, 60, 100, 200, 300, 500, 1000,
)
MOUSE_Y_BINS: tuple[int, ...] = (-200, -100, -50, -20, -10, -4, -2, 0, 2, 4, 10, 20, 50, 100, 200)

NUM_KEYS = len(KEYS)  # 11
LEFT_CLICK = NUM_KEYS  # 11
RIGHT_CLICK = NUM_KEYS + 1  # 12
MOUSE_X_SLICE = slice(13, 13 + len(MOUSE_X_BINS))  # 13..35
MOUSE_Y_SLICE = slice(MOUSE_X_SLICE.stop, MOUSE_X_SLICE.stop + len(MOUSE_Y_BINS))  # 36..50
ACTION_DIM = MOUSE_Y_SLICE.stop  # 51


@dataclass(frozen=True)
class CSGOAction:
    """A decoded action: pressed keys (names from ``KEYS``, in ``KEYS`` order), clicks, mouse motion (bin values)."""

    keys: tuple[str, ...] = ()
    left_click: bool = False
    right_click: bool = False
    mouse_x: int = 0
    mouse_y: int = 0


def snap_to_bin(value: float, bins: tuple[int, ...]) -> int:
    """The allowed bin value closest to ``value`` (values beyond the ends clip to the extreme bins)."""
    arr = np.asarray(bins)
    return int(arr[np.argmin(np.abs(arr - value))])


def encode_action(
    keys: Iterable[str] = (),
    left_click: bool = False,
    right_click: bool = False,
    mouse_x: float = 0,
    mouse_y: float = 0,
) -> np.ndarray:
    """float32 (51,) multi-hot vector. Mouse motion is snapped to the nearest bin (as the play tool does)."""
    vec = np.zeros(ACTION_DIM, dtype=np.float32)
    for key in keys:
        k = key.lower()
        if k not in KEYS:
            raise ValueError(f"unknown CS:GO key {key!r}; valid keys: {', '.join(KEYS)}")
        vec[KEYS.index(k)] = 1
    vec[LEFT_CLICK] = float(bool(left_click))
    vec[RIGHT_CLICK] = float(bool(right_click))
    vec[MOUSE_X_SLICE.start + MOUSE_X_BINS.index(snap_to_bin(mouse_x, MOUSE_X_BINS))] = 1
    vec[MOUSE_Y_SLICE.start + MOUSE_Y_BINS.index(snap_to_bin(mouse_y, MOUSE_Y_BINS))] = 1
    return vec


def decode_action(vec: np.ndarray) -> CSGOAction:
    """Inverse of :func:`encode_action` for a (51,) vector: keys/clicks by rounding, mouse by arg-max."""
    v = np.asarray(vec, dtype=np.float32)
    if v.shape != (ACTION_DIM,):
        raise ValueError(f"a CS:GO action vector has shape ({ACTION_DIM},), got {v.shape}")
    keys = tuple(k for k, x in zip(KEYS, v[:NUM_KEYS]) if round(float(x)) >= 1)
    return CSGOAction(
        keys=keys,
        left_click=round(float(v[LEFT_CLICK])) >= 1,
        right_click=round(float(v[RIGHT_CLICK])) >= 1,
        mouse_x=MOUSE_X_BINS[int(np.argmax(v[MOUSE_X_SLICE]))],
        mouse_y=MOUSE_Y_BINS[int(np.argmax(v[MOUSE_Y_SLICE]))],
    )
