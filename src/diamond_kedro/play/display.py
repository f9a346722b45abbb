"""The pygame(-ce) screen: panels upscaled side by side under a text header, in a window or headless.

Headless, SDL's dummy video driver is selected before pygame starts, so nothing needs a display; the
composed picture (exactly what a window would show) is returned by :meth:`Screen.draw` for recording.
Key state is tracked from KEYDOWN/KEYUP events (not ``pygame.key.get_pressed``), so events posted to the
queue (tests, scripts) act exactly like real key presses.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from diamond_kedro.play.loading import PlayError

HEADER_LINE = 18  # pixels per header text line
PANEL_GAP = 6
BG = (20, 20, 24)
FG = (235, 235, 235)


def display_available() -> bool:
    """Whether a window can be opened: an X11/Wayland display on Linux (other systems always have one)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def init_pygame(headless: bool) -> Any:
    """Import and initialise pygame; headless uses SDL's dummy video driver. PlayError if no display."""
    if headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    elif os.environ.get("SDL_VIDEODRIVER") != "dummy" and not display_available():
        raise PlayError("no display found (DISPLAY/WAYLAND_DISPLAY unset): run with --headless --steps N --record out.mp4")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    pygame.display.init()
    pygame.font.init()
    return pygame


def upscale(frame: np.ndarray, height: int) -> np.ndarray:
    """Nearest-neighbour upscaling by the integer factor that brings ``frame`` to ``height`` rows (>= 1)."""
    s = max(1, height // frame.shape[0])
    return frame.repeat(s, axis=0).repeat(s, axis=1) if s > 1 else frame


class Screen:
    """Lays out ``[header][panel | panel ...]``; a window unless ``headless``."""

    def __init__(self, title: str, panel_shape: tuple[int, int], num_panels: int, *, headless: bool,
                 height: int = 512, header_lines: int = 4) -> None:
        self.pg = init_pygame(headless)
        pg = self.pg
        self.headless = headless
        h, w = panel_shape
        self.scale = max(1, height // h)
        self.panel_h, self.panel_w = h * self.scale, w * self.scale
        self.header_h = HEADER_LINE * header_lines + 8
        self.size = (num_panels * self.panel_w + (num_panels - 1) * PANEL_GAP, self.header_h + self.panel_h + HEADER_LINE)
        if headless:
            self.surface = pg.Surface(self.size)
        else:
            try:
                self.surface = pg.display.set_mode(self.size)
            except pg.error as exc:
                raise PlayError(f"cannot open a window ({exc}): run with --headless") from None
            pg.display.set_caption(title)
        self.font = pg.font.Font(None, 20)
        self.held: set[str] = set()  # pygame key names currently down

    def events(self) -> list[Any]:
        """This frame's events; keeps ``held`` up to date."""
        pg = self.pg
        out = pg.event.get()
        for ev in out:
            if ev.type == pg.KEYDOWN:
                self.held.add(pg.key.name(ev.key))
            elif ev.type == pg.KEYUP:
                self.held.discard(pg.key.name(ev.key))
        return out

    def draw(self, panels: list[tuple[str, np.ndarray]], header: list[str], footer: str = "") -> np.ndarray:
        """Draw and (in a window) show the frame; returns it as (H, W, 3) uint8."""
        pg = self.pg
        surf = self.surface
        surf.fill(BG)
        for i, line in enumerate(header):
            surf.blit(self.font.render(line, True, FG), (6, 4 + i * HEADER_LINE))
        for i, (label, frame) in enumerate(panels):
            big = upscale(frame, self.panel_h)
            x = i * (self.panel_w + PANEL_GAP)
            surf.blit(pg.surfarray.make_surface(big.swapaxes(0, 1)), (x, self.header_h))
            surf.blit(self.font.render(label, True, FG), (x + 6, self.header_h + self.panel_h + 2))
        if footer:
            text = self.font.render(footer, True, FG)
            surf.blit(text, (self.size[0] - text.get_width() - 6, self.header_h + self.panel_h + 2))
        if not self.headless:
            pg.display.flip()
        return pg.surfarray.array3d(surf).swapaxes(0, 1).copy()

    def close(self) -> None:
        self.pg.display.quit()
