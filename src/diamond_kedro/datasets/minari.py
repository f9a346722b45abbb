"""Source: a local Minari dataset (Farama's standard for offline RL) with image observations.

``dataset.path`` is the dataset's folder (``<root>/<namespace>/<name>-v<k>``, the one holding ``data/``) or
its ``data/`` folder itself; nothing is downloaded. Each Minari episode is one unit and one episode, named
``episode_<id>``.

Observations must be images: a ``Box`` of uint8 (H, W, 3), (H, W, 1) or (H, W) (grey is repeated to RGB),
or a ``Dict`` space whose ``dataset.minari.observation_key`` entry is such a Box. Minari stores T + 1
observations for T steps (the last is the frame after the last action); we keep obs[0 .. T-1] so that
obs[t] is the frame on which act[t] was taken (spec §0.2), and the episode's rewards, terminations and
truncations. Actions: ``Discrete(n)`` -> discrete (n ids), ``MultiBinary(n)`` -> multi_hot, ``Box`` of shape
(n,) -> continuous; other action spaces are refused with the space named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diamond_kedro.datasets.writer import ActionSpec, DatasetError, RawEpisode, SourceNotFound, Unit


def _data_dir(path: Path) -> Path:
    for cand in (path / "data", path):
        if (cand / "metadata.json").is_file():
            return cand
    raise SourceNotFound(
        f"{path} is not a local Minari dataset (no data/metadata.json; dataset.path must be the dataset's folder, "
        "e.g. ~/.minari/datasets/<namespace>/<name>-v0)"
    )


class MinariSource:
    kind = "minari"

    def __init__(self, path: str | Path, observation_key: str | None = None, action_kind: str = "auto") -> None:
        import gymnasium as gym
        from minari import MinariDataset

        self.path = Path(path)
        self.data_dir = _data_dir(self.path)
        try:
            self.dataset = MinariDataset(str(self.data_dir))
        except Exception as exc:  # minari/h5py/pyarrow raise their own types for unreadable files
            raise DatasetError(f"{self.data_dir}: cannot open the Minari dataset: {exc}") from exc
        self.observation_key = observation_key
        obs_space = self.dataset.observation_space
        if isinstance(obs_space, gym.spaces.Dict):
            if observation_key is None or observation_key not in obs_space.spaces:
                raise DatasetError(f"{self.data_dir}: observations are a Dict with keys {list(obs_space.spaces)}; "
                                   "set dataset.minari.observation_key to the image entry")
            obs_space = obs_space.spaces[observation_key]
        if not (isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.uint8
                and (len(obs_space.shape) == 2 or (len(obs_space.shape) == 3 and obs_space.shape[-1] in (1, 3)))):
            raise DatasetError(f"{self.data_dir}: observation space {obs_space} is not an image "
                               "(uint8 Box of shape (H, W), (H, W, 1) or (H, W, 3))")
        space = self.dataset.action_space
        if isinstance(space, gym.spaces.Discrete):
            kind, dim = "discrete", int(space.n)
        elif isinstance(space, gym.spaces.MultiBinary) and len(np.shape(space.n)) <= 1:
            kind, dim = "multi_hot", int(np.prod(space.n))
        elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            kind, dim = "continuous", int(space.shape[0])
        else:
            raise DatasetError(f"{self.data_dir}: action space {space} is not supported "
                               "(Discrete, MultiBinary(n) or a 1-D Box)")
        if action_kind not in ("auto", kind):
            if not (kind == "multi_hot" and action_kind == "continuous"):
                raise DatasetError(f"{self.data_dir}: dataset.action_kind is {action_kind} but the action space is {space}")
            kind = action_kind
        self.spec = ActionSpec(kind, dim)
        self.ids = [int(i) for i in self.dataset.episode_indices]

    def units(self) -> list[Unit]:
        return [Unit(f"episode_{i}", (f"episode_{i}",), f"{self.data_dir} episode {i}") for i in self.ids]

    def action_spec(self) -> ActionSpec:
        return self.spec

    def settings(self) -> dict[str, Any]:
        return {"path": str(self.path), "observation_key": self.observation_key}

    def read(self, unit: Unit) -> list[RawEpisode]:
        eid = int(unit.file_id.removeprefix("episode_"))
        try:
            (ep,) = list(self.dataset.iterate_episodes([eid]))
            obs = ep.observations[self.observation_key] if self.observation_key else ep.observations
            obs = np.asarray(obs)
            act = np.asarray(ep.actions)
            rew, end, trunc = (np.asarray(x) for x in (ep.rewards, ep.terminations, ep.truncations))
        except DatasetError:
            raise
        except Exception as exc:
            raise DatasetError(f"{unit.where}: cannot read the episode: {exc}") from exc
        t = len(act)
        if t < 1:
            raise DatasetError(f"{unit.where}: the episode has no steps")
        if len(obs) != t + 1:
            raise DatasetError(f"{unit.where}: {len(obs)} observations for {t} actions (Minari stores T + 1)")
        obs = obs[:t]
        if obs.ndim == 3:
            obs = obs[..., None]
        if obs.shape[-1] == 1:
            obs = np.repeat(obs, 3, axis=-1)
        return [RawEpisode(unit.file_id, np.ascontiguousarray(obs, dtype=np.uint8), act, rew, end, trunc)]
