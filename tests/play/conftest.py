"""ci-size checkpoints made in the test session (never downloaded weights): an Atari agent in a run folder,
a CS:GO run state and a tiny ingested CS:GO test split. Headless: SDL's dummy video driver."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["PYGAME_HIDE_SUPPORT_PROMPT"] = "1"

from diamond_kedro.config import parse_config  # noqa: E402
from diamond_kedro.models.agent import save_checkpoint  # noqa: E402
from diamond_kedro.builders import build_agent  # noqa: E402
from tests.model_helpers import randomize_zero_inits  # noqa: E402
from tests.profiles import profile_parameters  # noqa: E402


def make_ci_agent(seed: int = 0):
    """The ci profile's agent for Breakout (4 actions, 32x32) with the zero-initialised output convs
    randomised, so that generated frames depend on the context and the action."""
    torch.manual_seed(seed)
    cfg = parse_config(profile_parameters("ci"))
    agent = build_agent(cfg, 4)
    randomize_zero_inits(agent)
    # An untrained reward/end model ends half of the imagined steps; make this one say "reward 0, go on"
    # (constant hidden features 1, then logits +-|features| for reward 0 and continue) so that episodes
    # last until the horizon and tests see the actions' effect on consecutive frames.
    with torch.no_grad():
        first, last = agent.rew_end_model.head[0], agent.rew_end_model.head[2]
        first.weight.zero_()
        first.bias.fill_(1.0)
        last.weight.zero_()
        last.weight[1] = 1.0  # reward class 1 (= 0)
        last.weight[3] = 1.0  # end class 0 (continue)
        last.weight[4] = -1.0  # end class 1
    return agent


@pytest.fixture(scope="session")
def atari_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/runs/Breakout_seed0_ci with one agent version (no replay: contexts come from the real env)."""
    root = tmp_path_factory.mktemp("runs") / "Breakout_seed0_ci"
    folder = root / "checkpoints" / "agent_versions"
    folder.mkdir(parents=True)
    agent = make_ci_agent()
    save_checkpoint(folder / "agent_epoch_00001.pt", agent, agent.cfg)
    return root


CSGO_LEN = 8


@pytest.fixture(scope="session")
def csgo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder data/runs/csgo_ci with a state.pt in the CsgoRun layout, ingested data root with a test split)."""
    from diamond_kedro.csgo.config import parse_csgo_config
    from diamond_kedro.replay.store import EpisodeChunk, ReplayStore
    from diamond_kedro.builders import CSGO_STATE_FORMAT, build_models
    from diamond_kedro.utils.state_file import save_state_file

    base = tmp_path_factory.mktemp("csgo")
    data = base / "data"
    cfg = parse_csgo_config({**profile_parameters("ci")["csgo"], "data": {"out_dir": str(data), "fsync": False}})
    torch.manual_seed(0)
    models = build_models(cfg)
    for m in models.values():
        randomize_zero_inits(m)
    root = base / "csgo_ci"
    (root / "checkpoints").mkdir(parents=True)
    state = {"format": CSGO_STATE_FORMAT, "version": 1, "config": cfg.model_dump(), "counters": {"epoch": 1},
             "models": {k: m.state_dict() for k, m in models.items()}}
    save_state_file(state, root / "checkpoints" / "state.pt")
    rng = np.random.default_rng(0)
    for res, (h, w) in (("low_res", (30, 56)), ("full_res", (150, 280))):
        store = ReplayStore(data / res / "test", fsync=False)
        for e in range(2):
            r = np.random.default_rng(e)  # the same actions in both resolutions
            act = np.zeros((CSGO_LEN, 51), dtype=np.float32)
            act[np.arange(CSGO_LEN), r.integers(0, 11, CSGO_LEN)] = 1
            act[:, 13 + 11] = act[:, 36 + 7] = 1  # mouse still
            store.add_episode(EpisodeChunk(
                obs=rng.integers(0, 256, (CSGO_LEN, h, w, 3), dtype=np.uint8), act=act,
                rew=np.zeros(CSGO_LEN, np.float32), end=np.zeros(CSGO_LEN, np.uint8), trunc=np.zeros(CSGO_LEN, np.uint8),
            ))
    return root, data
