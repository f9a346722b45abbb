"""Run options that only pay on some hardware: bf16 autocast (chosen per machine by default) and torch.compile (off)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from diamond_kedro.config import parse_config
from diamond_kedro.training.run import AtariRun

from ..profiles import profile_parameters


def _cfg(tmp_path: Path, **run: object):
    params = profile_parameters("ci")
    params["run"].update(root=str(tmp_path), **run)
    return parse_config(params)


def test_compile_is_off_and_precision_is_chosen_per_machine_by_default() -> None:
    cfg = parse_config(profile_parameters("base"))
    assert cfg.run.compile is False and cfg.run.amp == "auto"
    for value in (True, False, "auto"):
        params = profile_parameters("base")
        params["run"]["amp"] = value
        assert parse_config(params).run.amp == value
    params["run"]["amp"] = "maybe"
    with pytest.raises(ValueError, match="run.amp"):
        parse_config(params)


def test_auto_precision_resolves_once_per_run_and_is_tagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("diamond_kedro.training.run_common.resolve_amp", lambda setting, device: setting == "auto")
    run = AtariRun(_cfg(tmp_path, amp="auto"))
    try:
        assert run.amp is True
        run.begin_epoch()
        assert run.pending.tags["precision"] == "bf16 autocast"
    finally:
        run.close()


def test_bf16_autocast_epoch_trains_with_finite_losses(tmp_path: Path) -> None:
    run = AtariRun.open(_cfg(tmp_path, amp=True))
    seen: list[torch.dtype] = []
    hook = run.agent.denoiser.inner_model.conv_in.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        report = run.run_epoch()
    finally:
        hook.remove()
        run.close()
    assert torch.bfloat16 in seen  # the training forward passes really ran in bf16
    for key in ("denoiser/train/loss_denoising", "rew_end_model/train/loss_total", "actor_critic/train/loss_total"):
        assert math.isfinite(report.metrics[key]), key


@pytest.mark.parametrize("setting, mode", [(True, None), ("reduce-overhead", "reduce-overhead")])
def test_compile_option_compiles_the_three_models_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting, mode) -> None:
    compiled: list[tuple[str, str | None]] = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append((type(self).__name__, k.get("mode"))))
    run = AtariRun(_cfg(tmp_path, compile=setting))
    try:
        # the denoiser's inner model: Denoiser has no forward, compute_loss and denoise call inner_model
        assert sorted(compiled) == [("ActorCritic", mode), ("InnerModel", mode), ("RewEndModel", mode)]
        # in place: the state-dict keys stay those of the plain modules (no "_orig_mod." prefix)
        assert not any("_orig_mod" in k for k in run.agent.state_dict())
    finally:
        run.close()
