"""Input -> action mappings for playing, free of pygame so they can be tested (and scripted) directly.

Atari (spec §8): the game's minimal action set is a list of ALE names (``NOOP``, ``FIRE``, ``UPRIGHT``,
``DOWNLEFTFIRE``, ...). Held *controls* ``up``/``down``/``left``/``right``/``fire`` compose a name; the
longest combination of held controls whose name exists in the game's action set wins, so W+D+Space in
Breakout (which has only NOOP, FIRE, RIGHT, LEFT) gives FIRE or RIGHT, never an action the game lacks.

CS:GO (spec §7.2, §7.7): held keys, mouse buttons and the mouse motion of the frame become the 51-dim
multi-hot vector of :func:`diamond_kedro.csgo.actions.encode_action`.

Scripted input (``--keys``, for headless runs and tests): one token group per step, steps separated by
commas, controls within a step by ``+``: ``"fire,right,right+fire,noop"`` (Atari) or
``"w,w+mx=100,space,lmb+my=-20"`` (CS:GO). After the script the input is empty (NOOP / no key).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from diamond_kedro.csgo.actions import KEYS as CSGO_KEYS
from diamond_kedro.csgo.actions import MOUSE_X_BINS, MOUSE_Y_BINS, encode_action

ATARI_CONTROLS = ("up", "down", "left", "right", "fire")
# keyboard key name (pygame.key.name) -> Atari control; WASD and the arrows both steer
ATARI_KEYS = {
    "w": "up", "up": "up", "s": "down", "down": "down", "a": "left", "left": "left",
    "d": "right", "right": "right", "space": "fire",
}
ATARI_SCRIPT_ALIASES = {**ATARI_KEYS, "fire": "fire", "noop": None}

# Opposite controls cancel each other (the ALE has no "UPDOWN").
_OPPOSITES = (("up", "down"), ("left", "right"))


def atari_action_name(controls: set[str] | frozenset[str]) -> str:
    """The ALE name of exactly these controls: {"up","right","fire"} -> "UPRIGHTFIRE", {} -> "NOOP"."""
    unknown = set(controls) - set(ATARI_CONTROLS)
    if unknown:
        raise ValueError(f"unknown Atari controls {sorted(unknown)}; valid: {', '.join(ATARI_CONTROLS)}")
    name = "".join(c.upper() for c in ("up", "down", "right", "left") if c in controls)
    if "fire" in controls:
        name += "FIRE"
    return name or "NOOP"


def atari_action(controls: set[str] | frozenset[str], action_names: list[str]) -> int:
    """Index in ``action_names`` (the game's minimal action set) of the held controls (see module doc)."""
    held = set(controls)
    for a, b in _OPPOSITES:
        if a in held and b in held:
            held -= {a, b}
    ordered = [c for c in ATARI_CONTROLS if c in held]
    for size in range(len(ordered), 0, -1):
        for combo in combinations(ordered, size):  # ties: the order of ATARI_CONTROLS (vertical first)
            name = atari_action_name(set(combo))
            if name in action_names:
                return action_names.index(name)
    return action_names.index("NOOP")


def atari_key_help(action_names: list[str]) -> list[str]:
    """One line per action of the game: ``"RIGHT: d / right arrow"`` style help for the window."""
    words = {"up": "W/up", "down": "S/down", "left": "A/left", "right": "D/right", "fire": "space"}
    lines = []
    for name in action_names:
        if name == "NOOP":
            lines.append("NOOP: no key")
            continue
        controls = [c for c in ("up", "down", "right", "left", "fire") if atari_action_name({c}) in name]
        if atari_action_name(set(controls)) == name:
            lines.append(f"{name}: " + "+".join(words[c] for c in controls))
    return lines


def parse_script(script: str | None) -> list[list[str]]:
    """``"a+b,c"`` -> [["a", "b"], ["c"]]; empty steps are allowed (``"fire,,fire"``)."""
    if not script:
        return []
    return [[tok.strip().lower() for tok in step.split("+") if tok.strip()] for step in script.split(",")]


def atari_script_controls(step: list[str]) -> set[str]:
    """Tokens of one scripted Atari step -> held controls (``noop`` holds nothing)."""
    held: set[str] = set()
    for tok in step:
        if tok not in ATARI_SCRIPT_ALIASES:
            raise ValueError(
                f"unknown Atari key {tok!r} in --keys; use {', '.join(sorted(ATARI_SCRIPT_ALIASES))}"
            )
        control = ATARI_SCRIPT_ALIASES[tok]
        if control is not None:
            held.add(control)
    return held


# ----- CS:GO -------------------------------------------------------------------------------------

# pygame key names -> dataset key names (spec §7.2 order: W A S D space ctrl shift 1 2 3 R)
CSGO_KEY_NAMES = {
    "w": "w", "a": "a", "s": "s", "d": "d", "space": "space", "left ctrl": "ctrl", "ctrl": "ctrl",
    "left shift": "shift", "shift": "shift", "1": "1", "2": "2", "3": "3", "r": "r",
}
# held in the same frame, the later-pressed key of these pairs is dropped (spec §7.7)
CSGO_EXCLUSIVE = (("w", "s"), ("a", "d"), ("1", "2"), ("1", "3"), ("2", "3"))
# arrow keys override the mouse (spec §7.7)
CSGO_ARROWS = {"left": ("x", -60), "right": ("x", 60), "up": ("y", -50), "down": ("y", 50)}


class CsgoInput:
    """The player's held keys / buttons (in press order) and this frame's mouse motion -> 51-dim action."""

    def __init__(self, mouse_multiplier: float = 10.0) -> None:
        self.mouse_multiplier = float(mouse_multiplier)
        self.held: list[str] = []  # dataset key names and arrow names, oldest press first
        self.left_click = self.right_click = False
        self.mouse_dx = self.mouse_dy = 0.0

    def press(self, key: str) -> None:
        name = CSGO_KEY_NAMES.get(key, key if key in CSGO_ARROWS else None)
        if name is not None and name not in self.held:
            self.held.append(name)

    def release(self, key: str) -> None:
        name = CSGO_KEY_NAMES.get(key, key if key in CSGO_ARROWS else None)
        if name in self.held:
            self.held.remove(name)

    def move_mouse(self, dx: float, dy: float) -> None:
        """Relative motion of the last motion event of the frame (the authors keep the last one too)."""
        self.mouse_dx, self.mouse_dy = float(dx), float(dy)

    def end_frame(self) -> None:
        self.mouse_dx = self.mouse_dy = 0.0

    def keys(self) -> list[str]:
        kept: list[str] = []
        for k in self.held:
            if k in CSGO_KEYS and not any(k in pair and (set(pair) - {k}) & set(kept) for pair in CSGO_EXCLUSIVE):
                kept.append(k)
        return kept

    def mouse(self) -> tuple[float, float]:
        x = float(np.clip(self.mouse_dx * self.mouse_multiplier, MOUSE_X_BINS[0], MOUSE_X_BINS[-1]))
        y = float(np.clip(self.mouse_dy * self.mouse_multiplier, MOUSE_Y_BINS[0], MOUSE_Y_BINS[-1]))
        arrows = [a for a in self.held if a in CSGO_ARROWS]
        for axis in ("x", "y"):
            dirs = [a for a in arrows if CSGO_ARROWS[a][0] == axis]
            if len(dirs) == 1:  # opposite arrows together cancel: the mouse keeps its motion
                if axis == "x":
                    x = CSGO_ARROWS[dirs[0]][1]
                else:
                    y = CSGO_ARROWS[dirs[0]][1]
        return x, y

    def action(self) -> np.ndarray:
        x, y = self.mouse()
        return encode_action(self.keys(), self.left_click, self.right_click, x, y)


def csgo_script_action(step: list[str]) -> np.ndarray:
    """Tokens of one scripted CS:GO step -> 51-dim vector. Tokens: key names (w a s d space ctrl shift 1 2 3 r),
    ``lmb`` / ``rmb`` clicks, ``mx=<int>`` / ``my=<int>`` mouse motion (snapped to the nearest bin)."""
    keys, lmb, rmb, mx, my = [], False, False, 0.0, 0.0
    for tok in step:
        if tok == "lmb":
            lmb = True
        elif tok == "rmb":
            rmb = True
        elif tok.startswith(("mx=", "my=")):
            try:
                value = float(tok[3:])
            except ValueError:
                raise ValueError(f"bad mouse motion {tok!r} in --keys: expected mx=<number> or my=<number>") from None
            if tok[1] == "x":
                mx = value
            else:
                my = value
        elif tok in CSGO_KEYS:
            keys.append(tok)
        else:
            raise ValueError(
                f"unknown CS:GO key {tok!r} in --keys; use {', '.join(CSGO_KEYS)}, lmb, rmb, mx=<n>, my=<n>"
            )
    return encode_action(keys, lmb, rmb, mx, my)
