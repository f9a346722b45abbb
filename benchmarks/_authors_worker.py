"""One model step of the AUTHORS' DIAMOND code, timed in this process (run by bench_vs_authors.py).

    python benchmarks/_authors_worker.py --authors DIR --component denoiser_train --steps 3 --warmup 1

DIR is an export of the public repository eloialonso/diamond (branch main) kept OUTSIDE this project;
its ``src/`` is put on sys.path here, at run time, to measure it. Nothing of it is part of the project.
Its models are built from its own paper configuration (``config/trainer.yaml`` via Hydra, as its
``main.py`` does) and fed the same synthetic segments as our worker (``_worker.synthetic_segments``).
Needs ``hydra-core`` and ``torcheval`` importable (``pip install hydra-core torcheval``).
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace

from _worker import NUM_ACTIONS, measure, synthetic_segments

COMPONENTS = ("denoiser_train", "denoiser_sample", "rew_end_train", "imagination_step", "ac_update")


def _import_authors(root: Path):
    src = root / "src"
    if not (src / "agent.py").is_file() or not (root / "config" / "trainer.yaml").is_file():
        raise SystemExit(f"--authors {root}: not an export of eloialonso/diamond (no src/agent.py, config/trainer.yaml)")
    sys.path.insert(0, str(src))
    # Their utils.py imports wandb at module level; nothing timed here uses it.
    sys.modules.setdefault("wandb", types.ModuleType("wandb"))
    try:
        import hydra  # noqa: F401
        import torcheval  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"the authors' code needs {e.name}: pip install hydra-core torcheval") from None


def _load_cfg(root: Path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("eval"):
        OmegaConf.register_new_resolver("eval", eval)  # their main.py registers it
    with initialize_config_dir(config_dir=str(root / "config"), version_base="1.3"):
        cfg = compose(config_name="trainer")
    OmegaConf.resolve(cfg)
    return cfg


def _batch(Batch, torch, n: int, seq_len: int, device):
    s = synthetic_segments(n, seq_len)
    return Batch(
        s["obs"], s["act"], s["rew"], s["end"].long(), s["trunc"].long(), s["mask_padding"],
        [{} for _ in range(n)], [None] * n,
    ).to(device)


def run(args: argparse.Namespace) -> dict:
    import torch

    root = Path(args.authors).resolve()
    _import_authors(root)
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    from hydra.utils import instantiate

    from agent import Agent
    from data import Batch
    from envs import WorldModelEnv
    from models.diffusion import DiffusionSampler
    from utils import configure_opt

    cfg = _load_cfg(root)
    device = torch.device(args.device)
    agent = Agent(instantiate(cfg.agent, num_actions=NUM_ACTIONS)).to(device)
    agent.denoiser.setup_training(instantiate(cfg.denoiser.sigma_distribution))
    L = cfg.agent.denoiser.inner_model.num_steps_conditioning

    def train_step(model, section, batch):
        opt = configure_opt(model, **section.optimizer)

        def step():
            loss, _ = model(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), section.training.max_grad_norm)
            opt.step()
            opt.zero_grad()

        return step

    c = args.component
    if c == "denoiser_train":
        seq = L + 1 + cfg.denoiser.training.num_autoregressive_steps
        step = train_step(agent.denoiser, cfg.denoiser, _batch(Batch, torch, 32, seq, device))
    elif c == "denoiser_sample":
        agent.denoiser.eval()
        sampler = DiffusionSampler(agent.denoiser, instantiate(cfg.world_model_env.diffusion_sampler))
        b = _batch(Batch, torch, 32, L, device)

        def step():
            with torch.no_grad():
                sampler.sample(b.obs, b.act)
    elif c == "rew_end_train":
        step = train_step(
            agent.rew_end_model, cfg.rew_end_model, _batch(Batch, torch, 32, cfg.rew_end_model.training.seq_length, device)
        )
    elif c in ("imagination_step", "ac_update"):
        # Their WorldModelEnv reads contexts from a DataLoader; an endless iterable of batches with the same
        # interface (``batch_sampler.batch_size``) stands in for it, as ContextStock's sampler does for ours.
        class Contexts:
            batch_sampler = SimpleNamespace(batch_size=32)

            def __iter__(self):
                while True:
                    yield _batch(Batch, torch, 32, L, device)

        wm_cfg = instantiate(cfg.world_model_env)
        wm_cfg.num_batches_to_preload = args.preload
        env = WorldModelEnv(agent.denoiser, agent.rew_end_model, Contexts(), wm_cfg)
        if args.compile:  # as their trainer does with training.compile_wm: the env's two step functions
            env.predict_next_obs = torch.compile(env.predict_next_obs, mode="reduce-overhead")
            env.predict_rew_end = torch.compile(env.predict_rew_end, mode="reduce-overhead")
        agent.denoiser.eval()
        agent.rew_end_model.eval()
        ac = agent.actor_critic
        loss_cfg = instantiate(cfg.actor_critic.actor_critic_loss)
        ac.setup_training(env, loss_cfg)
        if c == "imagination_step":

            def step():
                with torch.no_grad():
                    ac.env_loop.send(1)  # actor forward, world-model env step (3 Euler + rew/end), bootstrap
        else:
            opt = configure_opt(ac, **cfg.actor_critic.optimizer)

            def step():  # a whole update (horizon 15), in the warm-up too, as in our worker
                loss, _ = ac()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(ac.parameters(), cfg.actor_critic.training.max_grad_norm)
                opt.step()
                opt.zero_grad()

        ac.train() if c == "ac_update" else ac.eval()
        with torch.no_grad():
            ac.env_loop.send(1)  # the first send resets the env (preload + reward/end burn-in): not timed
    else:
        raise ValueError(f"unknown component {c!r}")
    return {"component": c, "who": "authors", "device": str(device), "compiled": bool(args.compile), **measure(device, step, args.warmup, args.steps, args.count_flops)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--authors", required=True)
    p.add_argument("--component", choices=COMPONENTS, required=True)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--preload", type=int, default=4)
    p.add_argument("--count-flops", action="store_true")
    p.add_argument("--compile", action="store_true",
                   help="their training.compile_wm: torch.compile(mode='reduce-overhead') of the world-model env's steps")
    args = p.parse_args()
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
