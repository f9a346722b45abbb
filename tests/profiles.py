"""The project's parameters for a Kedro profile, merged as Kedro does (base, then the profile, soft merge)."""

from __future__ import annotations

from pathlib import Path

import yaml

CONF = Path(__file__).resolve().parents[1] / "conf"


def _merge(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


def profile_parameters(env: str = "base") -> dict:
    params: dict = {}
    for f in sorted((CONF / "base").glob("parameters*.yml")):
        params.update(yaml.safe_load(f.read_text()))
    if env != "base":
        for f in sorted((CONF / env).glob("parameters*.yml")):
            _merge(params, yaml.safe_load(f.read_text()))
    return params
