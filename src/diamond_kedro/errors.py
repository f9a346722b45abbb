"""The project's user-facing errors: one base class, so every entry point (``kedro run`` through the
project CLI, ``diamond-kedro play|sweep``) can print the message as one line and exit 2.

An error belongs here when it is about the user's input or the state of their files (a bad parameter, a
corrupt dataset file, a finished run, a folder held by another process), never about a bug. Its message is
the whole story: it names the file, row, key or holder, and what to do.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error whose message is meant for the user as one line (no traceback)."""
