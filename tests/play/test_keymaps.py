"""Keyboard / mouse / scripted input -> Atari action indices and CS:GO multi-hot vectors (hand-computed)."""

from __future__ import annotations

import numpy as np
import pytest

from diamond_kedro.play.atari import action_names
from diamond_kedro.play.keymaps import (
    CsgoInput, atari_action, atari_script_controls, csgo_script_action, parse_script,
)

BREAKOUT = ["NOOP", "FIRE", "RIGHT", "LEFT"]
# the ALE's full 18-action order (games such as Alien use all of them)
FULL = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT", "UPFIRE",
        "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE", "DOWNLEFTFIRE"]


def test_minimal_action_sets_come_from_the_emulator() -> None:
    assert action_names("Breakout") == BREAKOUT  # spec §1.3
    assert action_names("Alien") == FULL


@pytest.mark.parametrize("controls, breakout, full", [
    (set(), 0, 0),
    ({"fire"}, 1, 1),
    ({"right"}, 2, 3),
    ({"left"}, 3, 4),
    ({"up"}, 0, 2),                      # Breakout has no UP: nothing held that the game knows -> NOOP
    ({"up", "right"}, 2, 6),             # no UPRIGHT in Breakout -> the longest combination it has: RIGHT
    ({"right", "fire"}, 2, 11),          # no RIGHTFIRE in Breakout -> RIGHT (left/right before fire)
    ({"up", "right", "fire"}, 2, 14),
    ({"down", "left", "fire"}, 3, 17),
    ({"left", "right"}, 0, 0),           # opposite directions cancel
    ({"left", "right", "fire"}, 1, 1),
])
def test_atari_controls_to_action_index(controls: set[str], breakout: int, full: int) -> None:
    assert atari_action(controls, BREAKOUT) == breakout
    assert atari_action(controls, FULL) == full


def test_atari_script() -> None:
    steps = parse_script("fire, d ,a+space,,noop,up+right")
    assert [atari_script_controls(s) for s in steps] == [
        {"fire"}, {"right"}, {"left", "fire"}, set(), set(), {"up", "right"}]
    with pytest.raises(ValueError, match="unknown Atari key 'jump'"):
        atari_script_controls(["jump"])


def hot(vec: np.ndarray) -> list[int]:
    return np.flatnonzero(vec).tolist()


def test_csgo_script_to_multi_hot() -> None:
    # W=0, space=4, left click=11; mouse x 100 is bin 18 of 23 -> 13+18=31; mouse y -20 is bin 3 of 15 -> 36+3=39
    assert hot(csgo_script_action(["w", "space", "lmb", "mx=100", "my=-20"])) == [0, 4, 11, 31, 39]
    # nothing held: only the two "no motion" bins (x 0 = bin 11 -> 24, y 0 = bin 7 -> 43)
    assert hot(csgo_script_action([])) == [24, 43]
    # ctrl=5, shift=6, 3=9, r=10, right click=12; mx=7 snaps to 4 (bin 13 -> 26), my=300 clips to 200 (bin 14 -> 50)
    assert hot(csgo_script_action(["ctrl", "shift", "3", "r", "rmb", "mx=7", "my=300"])) == [5, 6, 9, 10, 12, 26, 50]
    for bad, msg in ((["jump"], "unknown CS:GO key 'jump'"), (["mx=fast"], "bad mouse motion")):
        with pytest.raises(ValueError, match=msg):
            csgo_script_action(bad)


def test_csgo_keyboard_and_mouse() -> None:
    inp = CsgoInput(mouse_multiplier=10)
    inp.press("w")
    inp.press("s")  # pressed later than W: dropped while W is held (spec §7.7)
    inp.press("left ctrl")
    inp.press("2")
    inp.move_mouse(7, -3)  # x 70 -> bin 60 (index 17 -> 30); y -30 -> bin -20 (index 3 -> 39; |-30+20| < |-30+50|)
    assert hot(inp.action()) == [0, 5, 8, 30, 39]
    inp.release("w")  # now S counts
    inp.press("left")  # the left arrow overrides the mouse x: -60 (index 5 -> 18)
    inp.left_click = True
    assert hot(inp.action()) == [2, 5, 8, 11, 18, 39]
    inp.end_frame()
    inp.release("left")
    assert hot(inp.action()) == [2, 5, 8, 11, 24, 43]  # no motion in the next frame


def test_console_entry_point_exits_2_with_one_stderr_line(tmp_path) -> None:
    """``python -m diamond_kedro play ...`` (the dispatcher in __main__) with bad input: status 2, one line."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
    proc = subprocess.run([sys.executable, "-m", "diamond_kedro", "play", "atari", "--run", str(tmp_path / "nope"),
                           "--headless", "--steps", "1"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"diamond-kedro play atari: error: run folder {tmp_path / 'nope'} does not exist"]
