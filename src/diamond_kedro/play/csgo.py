"""Playing the CS:GO world model (spec §7.5): dynamics at 30×56, then the upsampler to 150×280, one step at a time.

Each step does what :func:`diamond_kedro.csgo.generate.imagine` does for one frame (same samplers, same
order of random draws, so a played sequence equals ``imagine`` with the same actions and seed — tested),
but keeps the buffers between steps so the next action can come from the keyboard and mouse. With the
upsampler off, the bicubic ×f upsampling of the low-res frame is shown instead (1 NFE per frame with
``fast``). Episodes are truncated at ``horizon`` steps (1000, as the authors) and restart from the next
context.

Contexts: test-split episodes of the ingested dataset (``<out_dir>/{low_res,full_res}/test``), the first L
frames of a window at a random start; or the authors' spawn folders (``spawn/<name>/{low_res,full_res,act,
next_act}.npy``). The recorded actions that follow a context drive the ``replay`` policy.

The same session plays every run of the static family: a ``static_world_model`` run trained on any recorded
gameplay has its dataset's action space (discrete ids, multi-hot or continuous vectors) and may have no
upsampler (then the dynamics model's frames are shown as they are). The keyboard and ``--keys`` speak the
CS:GO action vector only, so a run with another action space plays the ``replay`` or ``random`` policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from diamond_kedro.csgo.actions import ACTION_DIM, decode_action
from diamond_kedro.models.diffusion_sampler import DiffusionSampler, csgo_sampler_configs
from diamond_kedro.play.loading import CsgoSource, PlayError

CSGO_POLICIES = ("human", "replay", "random")


@dataclass
class CsgoContext:
    low: Tensor  # (L, 3, h, w) in [−1, 1]
    full_last: Tensor  # (3, H, W) the full-res version of the newest context frame
    act: Tensor  # (L, 51) (or (L,) ids / (L, A) of a static_world_model run); the last row is overwritten by the first played action
    next_act: Tensor  # (T, 51) the recorded actions from the newest context frame on (may be empty)
    name: str
    episode: int | None = None  # episode id in its split (test, else train: see dataset_contexts) and window start
    start: int | None = None


def _u8_chw(x: np.ndarray) -> Tensor:
    return torch.tensor(np.asarray(x), dtype=torch.float32).div(255).mul(2).sub(1)  # a copy: store arrays are read-only


def _act_tensor(act: np.ndarray) -> Tensor:
    """Recorded actions as the model takes them: int64 ids (discrete) or float32 vectors."""
    act = np.asarray(act)
    return torch.tensor(act, dtype=torch.long if np.issubdtype(act.dtype, np.integer) else torch.float32)


def dataset_contexts(data_root: str | Path, num_cond: int, seed: int = 0, max_contexts: int = 64) -> list[CsgoContext]:
    """Contexts from the test split of an ingested dataset (random window starts, seeded); from the training
    split when no test episode has ``num_cond`` frames (a short single recording, whose time-split test part
    is shorter than a context). A dataset ingested without an upsampler has only ``low_res`` (its frames are
    the full-resolution ones)."""
    root = Path(data_root)
    out = _split_contexts(root, "test", num_cond, seed, max_contexts, required=True)
    if not out:
        out = _split_contexts(root, "train", num_cond, seed, max_contexts, required=False)
    if not out:
        raise PlayError(f"{root}: no test or training episode has {num_cond} frames")
    return out


def _split_contexts(root: Path, split: str, num_cond: int, seed: int, max_contexts: int,
                    required: bool) -> list[CsgoContext]:
    from diamond_kedro.replay.store import ReplayStore

    stores = {}
    for res in ("low_res", "full_res"):
        path = root / res / split
        if not (path / "manifest.json").exists():
            if res == "full_res" and "low_res" in stores:
                continue
            if not required:
                return []
            raise PlayError(f"{path} is not an ingested dataset store: run the csgo_ingest or "
                            "static_world_model_ingest pipeline, or pass --data/--spawn")
        stores[res] = ReplayStore(path, create=False)
    low_store = stores["low_res"]
    full_store = stores.get("full_res", low_store)
    rng = np.random.default_rng(seed)
    out = []
    for eid in low_store.episode_ids[:max_contexts]:
        low_ep, full_ep = low_store.load_episode(eid), full_store.load_episode(eid)
        if low_ep.length < num_cond:
            continue
        start = int(rng.integers(0, low_ep.length - num_cond + 1))
        sl = slice(start, start + num_cond)
        out.append(CsgoContext(
            low=_u8_chw(low_ep.obs[sl]).permute(0, 3, 1, 2),
            full_last=_u8_chw(full_ep.obs[start + num_cond - 1]).permute(2, 0, 1),
            act=_act_tensor(low_ep.act[sl]),
            next_act=_act_tensor(low_ep.act[start + num_cond - 1 :]),
            name=f"{split} episode {eid} @ {start}", episode=int(eid), start=start,
        ))
    return out


def spawn_contexts(spawn_dir: str | Path, num_cond: int) -> list[CsgoContext]:
    """The authors' spawn points: ``spawn_dir`` is one spawn folder or a folder of them (sorted)."""
    root = Path(spawn_dir)
    if not root.is_dir():
        raise PlayError(f"spawn folder {root} does not exist")
    folders = [root] if (root / "low_res.npy").exists() else sorted(p for p in root.iterdir() if (p / "low_res.npy").exists())
    if not folders:
        raise PlayError(f"{root} has no spawn folders (<name>/low_res.npy, full_res.npy, act.npy)")
    out = []
    for f in folders:
        try:
            low, full, act = (np.load(f / n) for n in ("low_res.npy", "full_res.npy", "act.npy"))
            next_act = np.load(f / "next_act.npy") if (f / "next_act.npy").exists() else np.zeros((0, ACTION_DIM))
        except (OSError, ValueError) as exc:
            raise PlayError(f"cannot read spawn folder {f}: {exc}") from None
        if low.ndim != 4 or low.shape[0] < num_cond or act.shape[-1] != ACTION_DIM:
            raise PlayError(f"{f}: expected low_res.npy (>= {num_cond}, 3, h, w) and act.npy (n, {ACTION_DIM}), "
                            f"got {low.shape} and {act.shape}")
        out.append(CsgoContext(
            low=_u8_chw(low[-num_cond:]), full_last=_u8_chw(full[-1]),
            act=torch.as_tensor(act[-num_cond:], dtype=torch.float32),
            next_act=torch.as_tensor(next_act, dtype=torch.float32), name=f"spawn {f.name}",
        ))
    return out


class CsgoPlay:
    def __init__(
        self,
        src: CsgoSource,
        contexts: list[CsgoContext],
        *,
        device: torch.device | str = "cpu",
        preset: str = "fast",
        upsample: bool = True,
        horizon: int = 1000,
        policy: str = "human",
        seed: int = 0,
    ) -> None:
        if policy not in CSGO_POLICIES:
            raise PlayError(f"unknown policy {policy!r}; choose from {', '.join(CSGO_POLICIES)}")
        if not contexts:
            raise PlayError("no contexts to start from")
        self.device = torch.device(device)
        self.family = getattr(src, "family", "csgo")
        spec = getattr(src, "action", None)
        # the keyboard, mouse and --keys make CS:GO vectors: any run with that action layout can take them
        self.csgo_actions = spec is None or (spec.kind == "multi_hot" and spec.dim == ACTION_DIM)
        self.action_kind, self.action_dim = ("multi_hot", ACTION_DIM) if spec is None else (spec.kind, spec.dim)
        if not self.csgo_actions and policy == "human":
            policy = "replay"  # no keyboard map for this action space: drive it with the recorded actions
        self.denoiser = src.denoiser.to(self.device).eval()
        self.upsampler = src.upsampler.to(self.device).eval() if src.upsampler is not None else None
        self.factor = self.upsampler.cfg.upsampling_factor if self.upsampler is not None else 1
        if self.factor is None:
            raise PlayError(f"{src.source}: the second model is not an upsampler")
        self.L = self.denoiser.num_steps_conditioning
        c0 = contexts[0]
        if c0.low.shape[0] != self.L or c0.full_last.shape[-2:] != (c0.low.shape[-2] * self.factor, c0.low.shape[-1] * self.factor):
            raise PlayError(f"contexts of shape {tuple(c0.low.shape)} / {tuple(c0.full_last.shape)} do not fit a model "
                            f"with L={self.L} and upsampling x{self.factor}")
        self.source = src.source
        self.contexts = contexts
        self.set_preset(preset)
        self.upsample = upsample and self.upsampler is not None
        self.horizon = horizon
        self.policy = policy
        self.rng = np.random.default_rng(seed)
        self.num_resets = 0
        self.steps = 0
        self.last_action = self.no_action()
        self.reset()

    @property
    def policies(self) -> tuple[str, ...]:
        return CSGO_POLICIES if self.csgo_actions else tuple(p for p in CSGO_POLICIES if p != "human")

    def no_action(self) -> np.ndarray:
        """Nothing pressed: the zero vector, or id 0 for discrete actions."""
        if self.action_kind == "discrete":
            return np.array(0, dtype=np.int64)
        return np.zeros(self.action_dim, dtype=np.float32)

    def _checked(self, a: np.ndarray) -> np.ndarray:
        if self.action_kind == "discrete":
            if a.shape != () or not np.issubdtype(a.dtype, np.integer) or not 0 <= int(a) < self.action_dim:
                raise PlayError(f"this run's actions are ids in [0, {self.action_dim}), got {a!r}")
            return a.astype(np.int64)
        if a.shape != (self.action_dim,):
            what = "a CS:GO action has" if self.csgo_actions else f"this run's {self.action_kind} actions have"
            raise PlayError(f"{what} {self.action_dim} entries, got shape {a.shape}")
        return a.astype(np.float32)

    def set_preset(self, preset: str) -> None:
        try:
            dyn, up = csgo_sampler_configs(preset)
        except ValueError as exc:
            raise PlayError(str(exc)) from None
        self.preset = preset
        self.dynamics = DiffusionSampler(self.denoiser, dyn)
        self.upsampling = DiffusionSampler(self.upsampler, up) if self.upsampler is not None else None

    def reset(self) -> None:
        ctx = self.contexts[self.num_resets % len(self.contexts)]
        self.num_resets += 1
        self.context = ctx
        self.low_buffer = ctx.low.unsqueeze(0).to(self.device)
        self.act_buffer = ctx.act.unsqueeze(0).to(self.device).clone()
        self.full = ctx.full_last.unsqueeze(0).to(self.device)
        self.episode_steps = 0

    def cycle_policy(self) -> str:
        self.policy = self.policies[(self.policies.index(self.policy) + 1) % len(self.policies)]
        return self.policy

    def _controller_action(self, action: np.ndarray | None) -> np.ndarray:
        if self.policy == "replay":
            nxt = self.context.next_act
            if self.episode_steps < len(nxt):
                return nxt[self.episode_steps].numpy()
            return self.no_action()  # a context with no recorded continuation
        if self.policy == "random" and not self.csgo_actions:
            if self.action_kind == "discrete":
                return np.array(self.rng.integers(self.action_dim), dtype=np.int64)
            if self.action_kind == "multi_hot":
                return (self.rng.random(self.action_dim) < 0.15).astype(np.float32)
            return self.rng.uniform(-1, 1, self.action_dim).astype(np.float32)  # continuous: the data's scale is unknown
        if self.policy == "random":
            from diamond_kedro.csgo.actions import KEYS, MOUSE_X_BINS, MOUSE_Y_BINS, encode_action

            keys = [k for k in KEYS[:7] if self.rng.random() < 0.15]
            return encode_action(keys, False, False, float(self.rng.choice(MOUSE_X_BINS)), float(self.rng.choice(MOUSE_Y_BINS)))
        return action if action is not None else self.no_action()

    @torch.no_grad()
    def step(self, action: np.ndarray | None = None) -> np.ndarray:
        """One frame. ``action``: the player's 51-dim vector (human policy). Returns the action used."""
        if self.policy == "replay" and self.episode_steps >= len(self.context.next_act):
            self.reset()  # the recorded actions ran out: the next context (the authors truncate too)
        a = self._checked(np.asarray(self._controller_action(action)))
        self.last_action = a
        self.act_buffer[:, -1] = torch.as_tensor(a, device=self.device)
        next_low, _ = self.dynamics.sample(self.low_buffer, self.act_buffer)
        next_low_up = F.interpolate(next_low, scale_factor=self.factor, mode="bicubic") if self.factor > 1 else next_low
        if self.upsample and self.upsampling is not None:
            self.full, _ = self.upsampling.sample(torch.stack((self.full, next_low_up), dim=1), None)
        else:
            self.full = next_low_up.clamp(-1, 1)
        self.low_buffer = torch.cat((self.low_buffer[:, 1:], next_low.unsqueeze(1)), dim=1)
        self.act_buffer = self.act_buffer.roll(-1, dims=1)
        self.steps += 1
        self.episode_steps += 1
        if self.episode_steps >= self.horizon:
            self.reset()
        return a

    def frame(self) -> np.ndarray:
        return self.full[0].clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def low_res_frame(self) -> np.ndarray:
        return self.low_buffer[0, -1].clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def panels(self) -> list[tuple[str, np.ndarray]]:
        if self.upsampler is None:
            return [("world model", self.frame())]
        return [("world model" + ("" if self.upsample else " (bicubic, upsampler off)"), self.frame())]

    def hud(self) -> list[str]:
        if not self.csgo_actions:
            shown = int(self.last_action) if self.action_kind == "discrete" else np.round(self.last_action, 2).tolist()
            return [
                f"{self.family}  policy: {self.policy} (m)  step {self.steps}  {self.context.name}",
                f"action ({self.action_kind}, {self.action_dim}): {shown}",
                f"preset {self.preset} (p)  upsampler "
                + ("none" if self.upsampler is None else ("on" if self.upsample else "off") + " (u)"),
            ]
        d = decode_action(self.last_action)
        return [
            f"CS:GO  policy: {self.policy} (m)  step {self.steps}  {self.context.name}",
            f"keys [{' '.join(d.keys) or '-'}]  mouse x {d.mouse_x:+d} y {d.mouse_y:+d}  "
            f"clicks {'L' if d.left_click else '-'}{'R' if d.right_click else '-'}",
            f"preset {self.preset} (p)  upsampler {'on' if self.upsample else 'off'} (u)",
        ]

    def close(self) -> None:
        pass
