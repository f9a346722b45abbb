"""Parameter validation: every paper default parses; bad values fail naming the parameter."""

from __future__ import annotations

import copy
import pytest

from diamond_kedro.config import ConfigError, parse_config

from .profiles import profile_parameters

def _parameters(env: str = "base") -> dict:
    return profile_parameters(env)


@pytest.mark.parametrize("env", ["base", "quick", "ci"])
def test_every_profile_is_valid(env: str) -> None:
    cfg = parse_config(_parameters(env))
    assert cfg.denoiser.training.sample_weights == [0.1, 0.1, 0.1, 0.7]


def test_base_holds_the_papers_values() -> None:
    cfg = parse_config(_parameters())
    assert (cfg.denoiser.training.steps_first_epoch, cfg.rew_end_model.training.steps_first_epoch,
            cfg.actor_critic.training.steps_first_epoch) == (10000, 10000, 5000)
    assert (cfg.denoiser.training.max_grad_norm, cfg.rew_end_model.training.max_grad_norm,
            cfg.actor_critic.training.max_grad_norm) == (1.0, 100.0, 100.0)
    assert (cfg.actor_critic.training.gamma, cfg.actor_critic.training.lambda_) == (0.985, 0.95)
    assert cfg.denoiser.model.channels == [64, 64, 64, 64] and cfg.denoiser.sampler.num_steps_denoising == 3
    assert cfg.collect.epsilon == 0.01 and cfg.run.total_env_steps == 100_000 and cfg.run.num_final_epochs == 50


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("denoiser", "training", "lr"), -1, "denoiser.training.lr"),
        (("denoiser", "model", "chanels"), [1], "denoiser.model.chanels: Extra inputs are not permitted"),
        (("rew_end_model", "training", "sample_weights"), [0.5, 0.6], "sample_weights must lie in [0, 1] and sum to 1"),
        (("collect", "first_epoch", "max_steps"), 10, "max_steps (10) must be >= min_steps"),
        (("run", "device"), "tpu", "run.device"),
        (("env", "game"), "Zork", "env.game"),
        (("actor_critic", "training", "backup_every"), 99, "backup_every must be <= horizon"),
    ],
)
def test_bad_values_name_the_parameter(path: tuple, value: object, message: str) -> None:
    params = copy.deepcopy(_parameters())
    node = params
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        parse_config(params)
    assert message in str(err.value)


def test_missing_section_is_reported_without_dumping_the_parameters() -> None:
    params = _parameters()
    del params["rew_end_model"]
    with pytest.raises(ConfigError) as err:
        parse_config(params)
    assert "rew_end_model: Field required" in str(err.value)
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("name", ["it's", "a/b", "../up", "..", " lead", "tab\there", "new\nline", "", "x" * 101])
def test_run_name_that_would_escape_the_run_root_or_break_mlflow_is_refused(name: str) -> None:
    params = profile_parameters("ci")
    params["run"]["name"] = name
    with pytest.raises(ConfigError, match=r"run\.name: .*letters, digits"):
        parse_config(params)
    params["run"]["name"] = "ok-name_1.2"
    assert parse_config(params).run.name == "ok-name_1.2"


def test_csgo_run_name_is_checked_the_same_way() -> None:
    from diamond_kedro.csgo.config import parse_csgo_config

    with pytest.raises(ValueError, match=r"run\.name"):
        parse_csgo_config({**profile_parameters("ci")["csgo"], "run": {"name": "../x"}})
