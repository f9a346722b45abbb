"""The 51-dim CS:GO action vector (spec §7.2), checked against hand-computed indices."""

from __future__ import annotations

import numpy as np
import pytest

from diamond_kedro.csgo.actions import (
    ACTION_DIM, MOUSE_X_BINS, MOUSE_X_SLICE, MOUSE_Y_BINS, MOUSE_Y_SLICE, CSGOAction, decode_action, encode_action,
)


def test_layout_matches_the_spec_table() -> None:
    assert ACTION_DIM == 51
    assert (MOUSE_X_SLICE.start, MOUSE_X_SLICE.stop) == (13, 36) and len(MOUSE_X_BINS) == 23
    assert (MOUSE_Y_SLICE.start, MOUSE_Y_SLICE.stop) == (36, 51) and len(MOUSE_Y_BINS) == 15


def test_encode_sets_the_hand_computed_indices() -> None:
    v = encode_action(["W", "space"], left_click=True, mouse_x=-60, mouse_y=2)
    # W -> 0, space -> 4, left click -> 11, mouse_x -60 is bin 5 -> 13 + 5 = 18, mouse_y 2 is bin 8 -> 36 + 8 = 44
    assert v.dtype == np.float32 and v.shape == (51,)
    assert sorted(np.flatnonzero(v).tolist()) == [0, 4, 11, 18, 44]
    # no motion: mouse_x 0 is bin 11 -> 24, mouse_y 0 is bin 7 -> 43
    assert sorted(np.flatnonzero(encode_action()).tolist()) == [24, 43]


def test_mouse_motion_snaps_to_the_nearest_bin() -> None:
    assert decode_action(encode_action(mouse_x=8)).mouse_x == 10  # |8-4| = 4 > |8-10| = 2
    assert decode_action(encode_action(mouse_x=5000)).mouse_x == 1000  # beyond the last bin
    assert decode_action(encode_action(mouse_y=-3.5)).mouse_y == -4


def test_decode_rounds_keys_and_argmaxes_mouse() -> None:
    v = np.zeros(51, dtype=np.float32)
    v[1], v[2], v[12] = 0.6, 0.4, 1.0  # A pressed (0.6 rounds to 1), S not (0.4 rounds to 0), right click
    v[13 + 22], v[13 + 3] = 0.9, 0.2  # mouse_x arg-max is bin 22 = +1000
    v[36 + 0] = 0.7  # mouse_y bin 0 = -200
    assert decode_action(v) == CSGOAction(keys=("a",), left_click=False, right_click=True, mouse_x=1000, mouse_y=-200)
    action = CSGOAction(keys=("w", "d", "ctrl", "2", "r"), left_click=True, right_click=False, mouse_x=-300, mouse_y=50)
    assert decode_action(encode_action(action.keys, True, False, -300, 50)) == action


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="'q'"):
        encode_action(["q"])
    with pytest.raises(ValueError, match="51"):
        decode_action(np.zeros(50))
