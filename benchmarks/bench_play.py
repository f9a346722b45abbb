"""World-model steps/s when playing (``diamond-kedro play``), without the window: the model work per frame.

    .venv/bin/python benchmarks/bench_play.py                         # Atari paper size, CS:GO quick + paper size
    .venv/bin/python benchmarks/bench_play.py --device cuda --steps 50
    .venv/bin/python benchmarks/bench_play.py --only csgo --sizes paper

Weights are random (the speed does not depend on them): Atari = the paper's agent (4 actions, 64x64,
actor-critic + denoiser + reward/end model per step), contexts from real Breakout resets; CS:GO = the
dynamics model + upsampler at the ``quick`` profile's size and at the paper's (381 M parameters), both
presets, upsampler on and off. The paper's figure (spec §7.6): "3 denoising steps for dynamics, 10 for the
upsampler, stochastic sampling, 10 Hz on an RTX 3090", i.e. the ``higher_quality`` preset.
"""

from __future__ import annotations

import argparse
import time

import torch

from diamond_kedro.csgo.config import CsgoConfig, parse_csgo_config
from diamond_kedro.models.agent import Agent, AgentConfig
from diamond_kedro.models.diffusion_sampler import DiffusionSamplerConfig
from diamond_kedro.play.atari import AtariPlay
from diamond_kedro.play.csgo import CsgoContext, CsgoPlay
from diamond_kedro.play.keymaps import csgo_script_action
from diamond_kedro.play.loading import AtariSource, CsgoSource
from diamond_kedro.builders import build_models
from diamond_kedro.utils.device import resolve_device


def timed(step, steps: int, warmup: int, device: torch.device) -> str:
    """Wall-clock steps/s, and on CPU also steps per second of this process's CPU time: on a shared
    machine the second is what an idle machine would give with one thread (``--threads 1``)."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    text = f"{steps / wall:7.2f} steps/s"
    if device.type == "cpu":
        text += f"  ({steps / cpu:6.2f} per CPU second, {cpu / steps:6.2f} CPU s/step)"
    return text


def bench_atari(device: torch.device, steps: int, warmup: int) -> None:
    torch.manual_seed(0)
    src = AtariSource(Agent(AgentConfig(num_actions=4)), "Breakout", "paper-size agent, random weights")
    for n, order in ((3, 1), (1, 1), (3, 2)):
        play = AtariPlay(src, device=device, sampler=DiffusionSamplerConfig(num_steps_denoising=n, order=order),
                         contexts="env", policy="agent", horizon=10_000)
        rate = timed(play.step, steps, warmup, device)
        play.close()
        print(f"atari  paper size  {n} {'Euler' if order == 1 else 'Heun '} steps  {rate}", flush=True)


def csgo_config(size: str) -> CsgoConfig:
    if size == "paper":
        return CsgoConfig()
    from pathlib import Path

    import yaml

    conf = Path(__file__).resolve().parents[1] / "conf" / size / "parameters_csgo.yml"
    return parse_csgo_config(yaml.safe_load(conf.read_text())["csgo"])


def bench_csgo(device: torch.device, steps: int, warmup: int, sizes: list[str], presets: list[str]) -> None:
    for size in sizes:
        torch.manual_seed(0)
        models = build_models(csgo_config(size))
        src = CsgoSource(models["denoiser"], models["upsampler"], f"{size} size, random weights")
        ctx = CsgoContext(low=torch.rand(4, 3, 30, 56) * 2 - 1, full_last=torch.rand(3, 150, 280) * 2 - 1,
                          act=torch.zeros(4, 51), next_act=torch.zeros(0, 51), name="random")
        action = csgo_script_action(["w", "mx=10"])
        for preset in presets:
            for upsample in (True, False):
                play = CsgoPlay(src, [ctx], device=device, preset=preset, upsample=upsample)
                rate = timed(lambda: play.step(action), steps, warmup, device)
                print(f"csgo   {size:5s} size  {preset:14s} upsampler {'on ' if upsample else 'off'}  {rate}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--only", choices=("atari", "csgo"), default=None)
    p.add_argument("--sizes", default="quick,paper", help="CS:GO model sizes: quick, paper (comma-separated)")
    p.add_argument("--presets", default="fast,higher_quality", help="CS:GO sampler presets (comma-separated)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    if args.only in (None, "atari"):
        bench_atari(device, args.steps, args.warmup)
    if args.only in (None, "csgo"):
        bench_csgo(device, args.steps, args.warmup, args.sizes.split(","), args.presets.split(","))


if __name__ == "__main__":
    main()
