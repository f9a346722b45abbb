"""The embedded Ray cluster of ``diamond-kedro sweep`` listens on loopback only.

Run outside any network namespace (unlike test_ray_sweep), so that the machine's external address exists:
the cluster is started exactly as the sweep starts it, in a fresh process, and every listening socket of
that process and of all the processes Ray started under it is listed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import psutil

SCRIPT = textwrap.dedent('''
    import argparse, json, os, psutil
    from diamond_kedro.sweep.cli import _init_ray

    ray = _init_ray(argparse.Namespace(address=None, num_cpus=1))

    @ray.remote
    def pid():
        return os.getpid()

    worker = ray.get(pid.remote())  # a worker is up (it listens too)
    me = psutil.Process()
    found = []
    for p in [me, *me.children(recursive=True)]:
        try:
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    found.append([p.pid, p.name(), c.laddr.ip, c.laddr.port])
        except psutil.NoSuchProcess:  # exited between the listing and the read: it listens on nothing
            continue
    ray.shutdown()
    print("LISTENING " + json.dumps({"sockets": found, "worker": worker}))
''')

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def test_the_embedded_cluster_listens_on_loopback_only() -> None:
    external = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                if a.family.name in ("AF_INET", "AF_INET6") and a.address.split("%")[0] not in LOOPBACK}
    assert external, "this machine has no external address: the test would prove nothing"
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=240,
                         env={**__import__("os").environ, "RAY_USAGE_STATS_ENABLED": "0"})
    line = next((x for x in out.stdout.splitlines() if x.startswith("LISTENING ")), None)
    assert line is not None, out.stderr[-3000:]
    got = json.loads(line.removeprefix("LISTENING "))
    names = {name for _, name, _, _ in got["sockets"]}
    assert {"gcs_server", "raylet"} <= names, got  # Ray's servers were seen
    assert got["worker"] in {pid for pid, *_ in got["sockets"]}, got  # and the worker's
    wide = [s for s in got["sockets"] if s[2] not in LOOPBACK]
    assert not wide, f"listening beyond loopback: {wide}"
