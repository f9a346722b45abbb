"""Checks and measures that need a CUDA GPU, in parts (run by gpu_check.sh, each part under its own timeout).

    python benchmarks/gpu_checks.py --part checks --json out.json      # correctness, dtypes, syncs (~1 min)
    python benchmarks/gpu_checks.py --part resume --json out.json      # two ci epochs, the second reopening
    python benchmarks/gpu_checks.py --part epoch --json out.json       # paper-config epoch, scaled down
    python benchmarks/gpu_checks.py --part ... --device cpu --tiny     # the CPU dry run (tiny sizes)

Prints PASS/FAIL lines and exits 1 on a FAIL; ``--json`` merges this part's figures into the file under the
part's name (the file may hold other parts already). The test suite runs on CPU; these check that the same
code is right on CUDA and measure what the CPU cannot:

* ``checks``: each model's output on the GPU equals the CPU's on shared weights (TF32 off for the
  comparison); a training step of the denoiser and of the reward/end model lowers the loss on a fixed
  batch in fp32 and in bf16 autocast; fused AdamW (used on CUDA) takes the same steps as the default
  implementation; the recurrent states carried through an imagined rollout under bf16 autocast are fp32;
  and host-device syncs per step, counted with ``torch.cuda.set_sync_debug_mode`` (the goal: 0 per
  training step, 1 per imagined step: which rows died, since the number of new contexts depends on it).
* ``resume``: two epochs of the ci profile on the device through the library (``AtariRun``), the second
  one reopening the run from its ``state.pt``, as ``atari_epoch`` does every epoch.
* ``epoch``: the paper configuration, scaled down: a warm-up epoch, then an epoch of a few steps per
  component, each phase's time per step extrapolated to the paper's 400 / 400 / 400 steps (collection
  of 100 env steps measured as it is; evaluation not included).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

FAILS: list[str] = []
RESULTS: dict[str, Any] = {}


T0 = time.perf_counter()


def check(name: str, ok: bool, detail: str = "", **figures: Any) -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}  [{time.perf_counter() - T0:.0f} s]", flush=True)
    RESULTS.setdefault("checks", {})[name] = {"ok": bool(ok), "detail": detail, **figures}
    if not ok:
        FAILS.append(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def count_syncs(device: torch.device, fn: Callable[[], Any]) -> int | None:
    """Synchronising CUDA calls made while ``fn`` runs (None on CPU, where there is nothing to count)."""
    if device.type != "cuda":
        fn()
        return None
    sync(device)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


def sizes(tiny: bool) -> dict[str, Any]:
    """Model sizes: the paper's (default) or tiny ones for the CPU dry run."""
    from diamond_kedro.models.actor_critic import ActorCriticConfig
    from diamond_kedro.models.denoiser import DenoiserConfig
    from diamond_kedro.models.rew_end_model import RewEndModelConfig
    from diamond_kedro.models.unet import InnerModelConfig

    if not tiny:
        return {
            "size": 64, "batch": 32,
            "denoiser": lambda: DenoiserConfig(inner_model=InnerModelConfig(num_actions=4)),
            "rew_end": lambda: RewEndModelConfig(num_actions=4),
            "ac": lambda: ActorCriticConfig(num_actions=4),
        }
    return {
        "size": 16, "batch": 4,
        "denoiser": lambda: DenoiserConfig(inner_model=InnerModelConfig(num_actions=4, cond_channels=16, channels=[8, 8], depths=[1, 1], attn_depths=[0, 0])),
        "rew_end": lambda: RewEndModelConfig(num_actions=4, img_size=16, cond_channels=8, channels=[8, 8], depths=[1, 1], attn_depths=[0, 0], lstm_dim=16),
        "ac": lambda: ActorCriticConfig(num_actions=4, channels=(4, 4, 8, 8), lstm_dim=16, img_size=16),
    }


# ----------------------------------------------------------------------------------------------------------
def part_checks(dev: torch.device, tiny: bool) -> None:
    from _worker import random_batch
    from diamond_kedro.envs.world_model_env import WorldModelEnv, WorldModelEnvConfig
    from diamond_kedro.models.actor_critic import ActorCritic
    from diamond_kedro.models.denoiser import Denoiser
    from diamond_kedro.models.rew_end_model import RewEndModel
    from diamond_kedro.training.imagination import RolloutLoop, actor_critic_loss
    from diamond_kedro.training.optim import make_optimizer, optimizer_step, split_decay_params
    from diamond_kedro.training.run_common import MetricAccumulator
    from diamond_kedro.utils.precision import resolve_amp

    z = sizes(tiny)
    s, bsz = z["size"], z["batch"]
    is_cuda = dev.type == "cuda"
    # what run.amp: auto picks here (on CPU that is a probe of the paper-size network: not in the dry run)
    RESULTS["bf16_auto"] = resolve_amp("auto", dev) if is_cuda else None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)

    def randomise(m: torch.nn.Module) -> torch.nn.Module:
        with torch.no_grad():  # zero-initialised output layers would make the comparison trivial
            for p in m.parameters():
                if not p.any():
                    p.normal_(0, 0.02)
        return m

    # 1. CPU == device on shared weights
    den = randomise(Denoiser(z["denoiser"]())).eval()
    rew = randomise(RewEndModel(z["rew_end"]())).eval()
    ac = randomise(ActorCritic(z["ac"]())).eval()
    b = random_batch(4, 6, "cpu", random_rewards=True, size=s)
    noisy, c_noise = torch.randn(4, 3, s, s), torch.randn(4)
    obs = b.obs[:, :4].flatten(1, 2)

    def rel(out: torch.Tensor, ref: torch.Tensor) -> float:
        return ((out.double().cpu() - ref.double()).norm() / ref.double().norm().clamp(min=1e-30)).item()

    with torch.no_grad():
        ref = den.inner_model(noisy, c_noise, obs, b.act[:, :4])
        out = den.to(dev).inner_model(noisy.to(dev), c_noise.to(dev), obs.to(dev), b.act[:, :4].to(dev))
        err = rel(out, ref)
        check("denoiser CPU == device", err < 1e-4, f"rel. error {err:.1e}", rel_error=err)
        lr_ref, le_ref, _ = rew(b.obs[:, :-1], b.act[:, :-1], b.obs[:, 1:])
        bc = b.to(dev)
        lr_out, le_out, _ = rew.to(dev)(bc.obs[:, :-1], bc.act[:, :-1], bc.obs[:, 1:])
        err = max(rel(lr_out, lr_ref), rel(le_out, le_ref))
        check("rew_end_model CPU == device", err < 1e-4, f"rel. error {err:.1e}", rel_error=err)
        h0 = ac.zero_state(4, device="cpu")
        lg_ref, v_ref, _ = ac(b.obs[:, 0], h0)
        lg_out, v_out, _ = ac.to(dev)(bc.obs[:, 0], tuple(x.to(dev) for x in h0))
        err = max(rel(lg_out, lg_ref), rel(v_out, v_ref))
        check("actor_critic CPU == device", err < 1e-4, f"rel. error {err:.1e}", rel_error=err)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = is_cuda

    # 2. training lowers the loss on a fixed batch, fp32 and bf16 autocast; syncs per training step
    steps = 20 if not tiny else 8
    for amp in (False, True):
        for name, model, seq, clip in (("denoiser", Denoiser(z["denoiser"]()), 6, 1.0),
                                       ("rew_end_model", RewEndModel(z["rew_end"]()), 19 if not tiny else 8, 100.0)):
            model = model.to(dev).train()
            opt = make_optimizer(model, lr=1e-3)
            batch = random_batch(bsz, seq, dev, random_rewards=True, size=s)
            acc = MetricAccumulator()
            losses = []

            def step() -> None:
                torch.manual_seed(1)  # same σ and noise every step: the loss must fall
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    loss, metrics = model.compute_loss(batch)
                optimizer_step(model, opt, None, loss, clip)
                acc.add(metrics)
                losses.append(loss.detach())

            for _ in range(steps - 1):
                step()
            syncs = count_syncs(dev, step)
            first, last = float(losses[0]), float(losses[-1])
            tag = "bf16" if amp else "fp32"
            # the dry run's tiny models take 8 steps: a smaller drop proves the loop runs, not that it learns
            check(f"{name} training lowers the loss ({tag})", last < (0.99 if tiny else 0.9) * first and math.isfinite(last),
                  f"{first:.4f} -> {last:.4f}", first=first, last=last)
            RESULTS.setdefault("syncs_per_step", {})[f"{name}_train_{tag}"] = syncs

    # 3. fused AdamW (what make_optimizer picks on CUDA) against the default implementation
    if is_cuda:
        torch.manual_seed(3)
        a = Denoiser(z["denoiser"]()).to(dev)
        b2 = Denoiser(z["denoiser"]()).to(dev)
        b2.load_state_dict(a.state_dict())
        opt_a = make_optimizer(a, lr=1e-3)  # fused: every parameter is on CUDA
        decay, no_decay = split_decay_params(b2)
        named = dict(b2.named_parameters())
        opt_b = torch.optim.AdamW([{"params": [named[n] for n in decay], "weight_decay": 1e-2},
                                   {"params": [named[n] for n in no_decay], "weight_decay": 0.0}],
                                  lr=1e-3, eps=1e-8, foreach=True)
        batch = random_batch(bsz, 6, dev, size=s)
        start = [p.detach().clone() for p in a.parameters()]
        for _ in range(5):
            for m, o in ((a, opt_a), (b2, opt_b)):
                torch.manual_seed(4)
                loss, _ = m.compute_loss(batch)
                optimizer_step(m, o, None, loss, 1.0)
        # the two parameter trajectories against the size of the updates they made (rounding-level if equal)
        diff = sum((p - q).double().square().sum() for p, q in zip(a.parameters(), b2.parameters())).sqrt()
        moved = sum((p - p0).double().square().sum() for p, p0 in zip(a.parameters(), start)).sqrt()
        err = (diff / moved).item()
        check("fused AdamW == foreach AdamW (5 steps)", err < 1e-2 and opt_a.defaults.get("fused") is True,
              f"|fused - foreach| / |update| = {err:.1e}", rel_error=err)

    # 4. imagination: dtypes of carried states under autocast, syncs per imagined step, throughput
    den = randomise(Denoiser(z["denoiser"]())).to(dev).eval()
    rew = RewEndModel(z["rew_end"]()).to(dev).eval()
    ac = ActorCritic(z["ac"]()).to(dev)
    env = WorldModelEnv(den, rew, lambda n: random_batch(n, 4, dev, size=s),
                        WorldModelEnvConfig(horizon=15, num_batches_to_preload=4), num_envs=bsz)
    loop = RolloutLoop(env, ac)
    opt = make_optimizer(ac, lr=1e-4, weight_decay=0.0)
    loop.reset()
    for _ in range(2):
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss, _ = actor_critic_loss(loop.run(15 if not tiny else 3))
        optimizer_step(ac, opt, None, loss, 100.0)
    dtypes = {"actor_critic_h": loop.hx_cx[0].dtype, "actor_critic_c": loop.hx_cx[1].dtype,
              "rew_end_h": env.hx.dtype, "rew_end_c": env.cx.dtype}
    check("recurrent states carried under bf16 autocast are fp32", all(d == torch.float32 for d in dtypes.values()),
          ", ".join(f"{k} {v}" for k, v in dtypes.items()), dtypes={k: str(v) for k, v in dtypes.items()})
    with torch.no_grad():
        per_step = count_syncs(dev, lambda: loop.run(5))
    RESULTS.setdefault("syncs_per_step", {})["imagination_step"] = None if per_step is None else per_step / 5
    sync(dev)
    t0 = time.perf_counter()
    n = 3 if not tiny else 1
    for _ in range(n):
        loss, _ = actor_critic_loss(loop.run(15 if not tiny else 3))
        optimizer_step(ac, opt, None, loss, 100.0)
    sync(dev)
    dt = (time.perf_counter() - t0) / n
    RESULTS["ac_update_s"] = dt
    check("actor-critic update runs", math.isfinite(float(loss.detach())), f"{dt:.3f} s per update")
    counted = RESULTS["syncs_per_step"]
    print("syncs per step (goal: 0 per training step, 1 per imagined step): "
          + ", ".join(f"{k} {'n/a (CPU)' if v is None else v}" for k, v in counted.items()), flush=True)


# ----------------------------------------------------------------------------------------------------------
def _config(profile: str, overrides: dict[str, dict[str, Any]]):
    from diamond_kedro.config import parse_config
    from tests.profiles import profile_parameters

    params = profile_parameters(profile)
    for section, values in overrides.items():
        params.setdefault(section, {})
        for key, value in values.items():
            target = params[section]
            *path, last = key.split(".")
            for p in path:
                target = target.setdefault(p, {})
            target[last] = value
    return parse_config(params)


def part_resume(dev: torch.device, tiny: bool) -> None:
    from diamond_kedro.training.run import AtariRun

    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config("ci", {"run": {"root": tmp, "device": dev.type, "num_threads": None if dev.type == "cuda" else 1}})
        losses = []
        for epoch in (1, 2):  # each epoch opens the run afresh, as atari_epoch's nodes do
            run = AtariRun.open(cfg)
            try:
                report = run.run_epoch()
            finally:
                run.close()
            losses.append(report.metrics.get("denoiser/train/loss_denoising", float("nan")))
            check(f"ci epoch {epoch} on {dev.type} ({'fresh' if epoch == 1 else 'reopened from state.pt'})",
                  report.epoch == epoch, f"epoch {report.epoch}, denoiser loss {losses[-1]:.4f}")
        RESULTS["resume_losses"] = losses


# ----------------------------------------------------------------------------------------------------------
def part_epoch(dev: torch.device, tiny: bool) -> None:
    """A paper-config epoch, scaled down: per-step times of each phase extrapolated to the paper's steps."""
    from diamond_kedro.training.run import AtariRun

    paper = _config("base", {})
    per_epoch = {name: getattr(paper, name).training.steps_per_epoch for name in ("denoiser", "rew_end_model", "actor_critic")}
    measured = {"denoiser": 20, "rew_end_model": 20, "actor_critic": 4} if not tiny else {"denoiser": 2, "rew_end_model": 2, "actor_critic": 1}
    with tempfile.TemporaryDirectory() as tmp:
        over: dict[str, dict[str, Any]] = {
            "run": {"root": tmp, "device": dev.type, "total_env_steps": 1000},
            "collect": {"first_epoch.min_steps": 200, "first_epoch.max_steps": 200, "first_epoch.threshold_rew": 0},
            "evaluate": {"every": 1000},
        }
        for name, n in measured.items():
            over[name] = {"training.steps_first_epoch": max(1, n // 4), "training.steps_per_epoch": n}
        if tiny:  # the dry run: the ci profile's tiny models on the same mechanics
            cfg = _config("ci", {**over, "run": {**over["run"], "num_threads": 1, "total_env_steps": 300},
                                 "collect": {"first_epoch.min_steps": 200, "first_epoch.max_steps": 250}})
        else:
            cfg = _config("base", over)
        run = AtariRun.open(cfg)
        try:
            run.run_epoch()  # warm-up: allocator, cuDNN autotuning, the first context refill
            stock = run.world_model_env().contexts
            used0 = stock.num_refills * stock.obs.size(0) + stock.cursor
            report = run.run_epoch()
            used = stock.num_refills * stock.obs.size(0) + stock.cursor - used0  # contexts the measured updates took
            sync(dev)
            t0 = time.perf_counter()
            stock._refill()  # one refill of the paper's stock (256 batches burned in), timed apart: the
            sync(dev)  # scaled-down epoch takes too few contexts to need one, a paper epoch needs some
            refill_s, stock_size = time.perf_counter() - t0, stock.obs.size(0)
        finally:
            run.close()
    m = report.metrics
    out: dict[str, Any] = {"precision": report.tags.get("precision"), "measured_steps": measured, "paper_steps": per_epoch}
    total = m.get("collect/wall_time_s", 0.0)
    out["collect_s"] = total
    for name, n in measured.items():
        t = m.get(f"{name}/wall_time_s", float("nan"))
        out[f"{name}_s_per_step"] = t / n
        out[f"{name}_paper_s"] = t / n * per_epoch[name]
        total += out[f"{name}_paper_s"]
    refills = used / measured["actor_critic"] * per_epoch["actor_critic"] / stock_size
    out.update(context_refill_s=refill_s, contexts_per_update=used / measured["actor_critic"], refills_per_epoch=refills)
    out["actor_critic_paper_s"] += refills * refill_s
    total += refills * refill_s
    out["paper_epoch_s"] = total
    RESULTS["epoch"] = out
    print(f"paper-config epoch on {dev} ({out['precision']}), extrapolated from {measured} steps:")
    for name in measured:
        print(f"  {name:14s} {out[f'{name}_s_per_step'] * 1e3:8.1f} ms/step x {per_epoch[name]} = {out[f'{name}_paper_s']:7.1f} s")
    print(f"  (actor_critic includes {refills:.2f} context refills of {refill_s:.1f} s: {out['contexts_per_update']:.0f} "
          f"contexts per update, {stock_size} per refill)")
    c = paper.collect
    epochs = (paper.run.total_env_steps - c.first_epoch.min_steps) // c.steps_per_epoch + paper.run.num_final_epochs
    out["paper_epochs"] = epochs
    print(f"  collect        {out['collect_s']:7.1f} s ({c.steps_per_epoch} env steps, measured)\n  epoch          {total:7.1f} s "
          f"(+ evaluation every {paper.evaluate.every} epochs, not measured); x {epochs} epochs = {total * epochs / 3600:.1f} h "
          "(without the first epoch's long training)")
    check("paper-config epoch extrapolated", math.isfinite(total), f"{total:.1f} s per epoch")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["checks", "resume", "epoch"], default="checks")
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny models (the CPU dry run)")
    p.add_argument("--json", type=Path, help="merge this part's figures into this JSON file")
    args = p.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("FAIL  no CUDA device visible to torch")
        return 1
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU (dry run: proves nothing of CUDA)"
    print(f"part {args.part} on {name}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    RESULTS["device"] = name
    t0 = time.perf_counter()
    try:
        {"checks": part_checks, "resume": part_resume, "epoch": part_epoch}[args.part](dev, args.tiny)
    except Exception as exc:  # reported as a FAIL line and in the JSON; the traceback goes to the log
        import traceback

        traceback.print_exc()
        check(f"{args.part} ran to the end", False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    RESULTS["seconds"] = time.perf_counter() - t0
    RESULTS["failed"] = list(FAILS)
    if args.json:
        data = json.loads(args.json.read_text()) if args.json.exists() else {}
        data[args.part] = RESULTS
        args.json.write_text(json.dumps(data, indent=1, default=str))
    print(f"\npart {args.part}: {len(FAILS)} failed" + (f": {', '.join(FAILS)}" if FAILS else ""), flush=True)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
