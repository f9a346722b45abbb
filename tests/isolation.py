"""Run test processes that open sockets (torchrun's TCP store, Ray's services) in a network namespace of
their own with only the loopback interface up, so nothing they start listens beyond 127.0.0.1 (PyTorch's
TCP store binds every interface). Needs ``unshare`` and root (the project's machines and CI); elsewhere
the command runs as it is."""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache


@lru_cache(maxsize=1)
def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True)
    return probe.returncode == 0


def loopback_only(cmd: list[str]) -> list[str]:
    """``cmd`` inside a fresh network namespace with ``lo`` up (or ``cmd`` if that is not possible)."""
    if not _can_unshare():
        return cmd
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]
