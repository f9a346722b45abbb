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

from _record import add_record_argument, maybe_record
from diamond_kedro.csgo.config import CsgoConfig, parse_csgo_config
from diamond_kedro.models.agent import Agent, AgentConfig
from diamond_kedro.models.diffusion_sampler import DiffusionSamplerConfig
from diamond_kedro.play.atari import AtariPlay
from diamond_kedro.play.csgo import CsgoContext, CsgoPlay
from diamond_kedro.play.keymaps import csgo_script_action
from diamond_kedro.play.loading import AtariSource, CsgoSource
from diamond_kedro.builders import build_models
from diamond_kedro.utils.device import resolve_device


def timed(step, steps: int, warmup: int, device: torch.device) -> dict[str, float | None]:
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
    return {"steps_per_s": steps / wall, "cpu_s_per_step": cpu / steps if device.type == "cpu" else None}


def rate_text(rate: dict[str, float | None]) -> str:
    text = f"{rate['steps_per_s']:7.2f} steps/s"
    if rate["cpu_s_per_step"] is not None:
        text += f"  ({1 / rate['cpu_s_per_step']:6.2f} per CPU second, {rate['cpu_s_per_step']:6.2f} CPU s/step)"
    return text


def play_record(args, rows: list[dict]):
    """The record of one run: a row per model and sampler setting (``--record DIR``)."""
    table = {"columns": ["model", "size", "sampler", "upsampler", "steps/s", "CPU s/step"],
             "rows": [[r["model"], r["size"], r["sampler"], r["upsampler"], r["steps_per_s"], r["cpu_s_per_step"]]
                      for r in rows]}
    config = {"device": args.device, "steps": args.steps, "warmup": args.warmup, "threads": torch.get_num_threads()}
    return maybe_record(args, "play_speed", {"config": config, "rows": rows}, table=table,
                        title="World-model steps/s when playing")


def bench_atari(device: torch.device, steps: int, warmup: int) -> list[dict]:
    torch.manual_seed(0)
    src = AtariSource(Agent(AgentConfig(num_actions=4)), "Breakout", "paper-size agent, random weights")
    rows = []
    for n, order in ((3, 1), (1, 1), (3, 2)):
        play = AtariPlay(src, device=device, sampler=DiffusionSamplerConfig(num_steps_denoising=n, order=order),
                         contexts="env", policy="agent", horizon=10_000)
        rate = timed(play.step, steps, warmup, device)
        play.close()
        sampler = f"{n} {'Euler' if order == 1 else 'Heun '} steps"
        print(f"atari  paper size  {sampler}  {rate_text(rate)}", flush=True)
        rows.append({"model": "atari", "size": "paper", "sampler": sampler.replace("  ", " "), "upsampler": None, **rate})
    return rows


def csgo_config(size: str) -> CsgoConfig:
    if size == "paper":
        return CsgoConfig()
    from pathlib import Path

    import yaml

    conf = Path(__file__).resolve().parents[1] / "conf" / size / "parameters_csgo.yml"
    return parse_csgo_config(yaml.safe_load(conf.read_text())["csgo"])


def bench_csgo(device: torch.device, steps: int, warmup: int, sizes: list[str], presets: list[str]) -> list[dict]:
    rows = []
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
                print(f"csgo   {size:5s} size  {preset:14s} upsampler {'on ' if upsample else 'off'}  {rate_text(rate)}",
                      flush=True)
                rows.append({"model": "csgo", "size": size, "sampler": preset, "upsampler": upsample, **rate})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--only", choices=("atari", "csgo"), default=None)
    p.add_argument("--sizes", default="quick,paper", help="CS:GO model sizes: quick, paper (comma-separated)")
    p.add_argument("--presets", default="fast,higher_quality", help="CS:GO sampler presets (comma-separated)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    add_record_argument(p)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    rows = []
    if args.only in (None, "atari"):
        rows += bench_atari(device, args.steps, args.warmup)
    if args.only in (None, "csgo"):
        rows += bench_csgo(device, args.steps, args.warmup, args.sizes.split(","), args.presets.split(","))
    play_record(args, rows)


if __name__ == "__main__":
    main()
