"""Our model steps and the authors' (eloialonso/diamond), timed alternately in one sitting on this machine.

    python benchmarks/bench_vs_authors.py --authors /path/to/diamond-main            # all 5 steps, CPU (≈ 20 min)
    python benchmarks/bench_vs_authors.py --authors DIR --step denoiser_train --rounds 3
    python benchmarks/bench_vs_authors.py --authors DIR --isa avx2                 # both sides limited to AVX2
    python benchmarks/bench_vs_authors.py --authors DIR --device cuda
    python benchmarks/bench_vs_authors.py --authors DIR --json out.json            # raw figures as well
    python benchmarks/bench_vs_authors.py --authors DIR --ours-amp off              # ours in fp32 too

DIR is an export of the authors' repository kept outside this project
(``git --git-dir <bare> archive main | tar -x -C DIR``); their code needs ``pip install hydra-core torcheval``.

Paper configuration (Breakout, A=4), batch 32, 64×64, identical synthetic inputs on both sides
(``_worker.synthetic_segments``). Steps:

  denoiser_train    fwd + bwd + clip + AdamW, 4 conditioning frames, 2 prediction steps
  denoiser_sample   3 Euler steps
  rew_end_train     fwd + bwd + clip + AdamW, sequence 19
  imagination_step  actor forward + world-model env step (3 Euler + reward/end) + bootstrap, no grad
  ac_update         15-step imagined rollout with gradient, λ-returns, loss, bwd, clip, AdamW

Every measurement is a fresh process (``--rounds`` of authors-then-ours per step, so a machine that
drifts during the sitting drifts for both). The authors run with their best allocator, tcmalloc through
LD_PRELOAD (``--tcmalloc auto`` finds ``libtcmalloc_minimal.so.4``; without it their figure is the slower
glibc one and the table says so); ours runs as a training run does (glibc malloc tuned at start, and
``run.amp: auto``: bf16 autocast where this machine computes bf16 natively and a probe shows it pays,
else fp32; the table names the precision; ``--ours-amp off`` forces fp32, like for like).
``--isa avx2`` sets ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY / MKL_ENABLE_INSTRUCTIONS in both processes:
a proxy for an AVX2-only machine, not a substitute for one. Per step it prints the median wall time,
min–max, the system-time share and minor page faults of the timed steps, peak RSS, and authors/ours.

Where the hardware's ceiling is: the sitting starts by timing, in a fresh process under the same ISA
limit and threads, large matrix products (fp32, and bf16 where the hardware has it: what the machine
computes at best; on CUDA fp32 means TF32, as the timed steps run) and the model's densest layer
alone. In round 1 each side counts its step's FLOPs (torch's FLOP counter on the
first warm-up call: equal counts show both do the same arithmetic), so the table gives each side's
GFLOP/s and ``bound a/o``: the ratio ours would reach running every FLOP at the matrix-product ceiling.
A target above that bound cannot be met by removing waste, only by less arithmetic or lower precision.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _worker import ISA_ENV, run_json
from _record import add_record_argument, maybe_record

HERE = Path(__file__).resolve().parent
OUR_SCRIPT = {  # step -> the benchmark script whose worker times our version of it
    "denoiser_train": "bench_models.py",
    "denoiser_sample": "bench_models.py",
    "rew_end_train": "bench_models.py",
    "imagination_step": "bench_actor_critic.py",
    "ac_update": "bench_actor_critic.py",
}
STEPS = list(OUR_SCRIPT)
SLOW = {"ac_update"}  # ~1 min per step on 2 CPU cores: one timed step per round
TCMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/local/lib/libtcmalloc_minimal.so.4",
)


def cpu_description() -> str:
    """CPU model and the vector ISAs that matter for these kernels (from /proc/cpuinfo on Linux)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name":
                model = val.strip()
            elif key.strip() == "flags":
                flags = set(val.split())
    except OSError:
        pass
    isas = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model}, {os.cpu_count()} logical CPUs, ISA: {' '.join(isas) or 'unknown'}"


def find_tcmalloc(choice: str) -> str | None:
    if choice == "none":
        return None
    if choice != "auto":
        if not Path(choice).is_file():
            raise SystemExit(f"--tcmalloc {choice}: no such file")
        return choice
    for path in TCMALLOC_PATHS:
        if Path(path).is_file():
            return path
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "libtcmalloc_minimal.so.4" in line and "=>" in line:
                return line.split("=>")[1].strip()
    except OSError:
        pass
    return None


def worker_commands(args: argparse.Namespace, step: str, count_flops: bool) -> tuple[list[str], list[str]]:
    steps = "1" if step in SLOW else str(args.steps)
    warmup = "1" if step in SLOW else str(args.warmup)
    common = ["--component", step, "--steps", steps, "--warmup", warmup, "--device", args.device,
              "--threads", str(args.threads), *(["--count-flops"] if count_flops else [])]
    preload = ["--preload", "4"] if step in ("imagination_step", "ac_update") else []
    compiled = ["--compile"] if args.authors_compile and step in ("imagination_step", "ac_update") else []
    authors = [args.authors_python, str(HERE / "_authors_worker.py"), "--authors", str(args.authors), *common, *preload, *compiled]
    ours = [sys.executable, str(HERE / OUR_SCRIPT[step]), "--_worker", *common, *preload, "--amp", args.ours_amp]
    return authors, ours


def summarise(runs: list[dict]) -> dict:
    times = [t for r in runs for t in r["times_s"]]
    cpu = [c for r in runs for c in r["cpu_s"]]
    sys_s = [s for r in runs for s in r["step_sys_s"]]
    faults = [f for r in runs for f in r["step_minor_faults"]]
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "n": len(times),
        "sys_share": sum(sys_s) / max(sum(cpu), 1e-9),
        "minflt_per_step": statistics.median(faults),
        "peak_rss_gib": max(r["peak_rss_gib"] for r in runs),
        "cpu_capability": runs[0].get("cpu_capability", "?"),
        "precision": "bf16" if runs[0].get("amp") else "fp32",
        "flops_per_step": next((r["flops_per_step"] for r in runs if r.get("flops_per_step")), None),
    }


def flop_columns(a: dict, o: dict, peak: dict) -> str:
    """GFLOP per step (both codes count their own: equal counts say the same arithmetic is timed),
    GFLOP/s reached by each, and the most authors/ours could be if ours ran every FLOP at this machine's
    matrix-product ceiling in its precision: above it, no amount of waste removal helps."""
    fa, fo = a["flops_per_step"], o["flops_per_step"]
    if not fa or not fo:
        return ""
    ga, go = fa / a["median_s"] / 1e9, fo / o["median_s"] / 1e9
    top = peak.get("matmul_bf16" if o["precision"] == "bf16" else "matmul_fp32")
    bound = f"{a['median_s'] / (fo / 1e9 / top):9.2f}x" if top else f"{'?':>10s}"  # authors' time / ours' at the ceiling
    return f"{fa / 1e9:7.0f}/{fo / 1e9:<7.0f} {ga:6.0f}/{go:<6.0f} {bound}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--authors", type=Path, required=True, help="export of eloialonso/diamond (branch main)")
    p.add_argument("--authors-python", default=sys.executable, help="interpreter for their code (default: this one)")
    p.add_argument("--step", action="append", choices=STEPS, help="a step to time (repeatable; default all)")
    p.add_argument("--rounds", type=int, default=2, help="authors-then-ours rounds per step, each in fresh processes")
    p.add_argument("--steps", type=int, default=2, help="timed steps per process (ac_update: always 1)")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed steps first (ac_update: always 1 whole update): the heap reaches its steady size in the "
                        "first two steps, later steps fault no new memory in (an epoch has 400 of them)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
    p.add_argument("--isa", choices=["native", *ISA_ENV], default="native", help="limit both sides' kernels")
    p.add_argument("--tcmalloc", default="auto", help="auto | none | path to libtcmalloc_minimal.so.4 (authors only)")
    p.add_argument("--ours-amp", choices=["auto", "on", "off"], default="auto",
                   help="our precision: auto = what a run does by default (run.amp: auto, bf16 autocast only where "
                        "this machine has native bf16 and it pays); off = fp32 like the authors' code")
    p.add_argument("--no-flops", action="store_true",
                   help="skip counting FLOPs (it runs the first warm-up step of round 1 under torch's FLOP counter)")
    p.add_argument("--authors-compile", action="store_true",
                   help="their world-model env steps compiled as their trainer's training.compile_wm does "
                        "(torch.compile, mode='reduce-overhead': CUDA graphs); affects imagination_step and ac_update")
    p.add_argument("--json", type=Path, help="write every figure to this file")
    add_record_argument(p)
    args = p.parse_args()
    if not (args.authors / "src" / "agent.py").is_file():
        raise SystemExit(f"--authors {args.authors}: not an export of eloialonso/diamond (no src/agent.py)")

    tcmalloc = find_tcmalloc(args.tcmalloc)
    authors_env = {"LD_PRELOAD": tcmalloc} if tcmalloc else {}
    steps = args.step or STEPS
    print(f"machine : {cpu_description()}")
    print(f"setting : device={args.device} threads={args.threads} isa={args.isa} rounds={args.rounds} "
          f"steps/process={args.steps} warmup={args.warmup}; paper config, batch 32, 64x64, A=4")
    print(f"authors : {args.authors} with {'tcmalloc (' + tcmalloc + ')' if tcmalloc else 'glibc malloc (no tcmalloc found: their slower setting)'}"
          + (", world-model steps compiled (reduce-overhead)" if args.authors_compile else ", not compiled"))
    print(f"ours    : glibc malloc tuned at start (as every run does), precision --ours-amp {args.ours_amp} "
          "(the authors' code has no mixed precision: fp32)\n", flush=True)

    t_start = time.perf_counter()
    ceiling_cmd = [sys.executable, str(HERE / "_worker.py"), "--ceiling", "--device", args.device, "--threads", str(args.threads)]
    peak = run_json(ceiling_cmd, args.isa)
    bf16 = f"{peak['matmul_bf16']:.0f} bf16" if peak["matmul_bf16"] else "no native bf16"
    print(f"ceiling : {peak['matmul_fp32']:.0f} GFLOP/s fp32 and {bf16} (4096² matrix products), "
          f"{peak['conv3x3_fp32']:.0f} fp32 for the model's densest layer alone (3×3 conv 64→64, 32×64×64, fwd+bwd); "
          f"kernels {peak['cpu_capability'] if args.device == 'cpu' else args.device}\n", flush=True)

    results: dict[str, dict] = {"ceiling": peak}
    for step in steps:
        runs: dict[str, list[dict]] = {"authors": [], "ours": []}
        for r in range(args.rounds):
            cmd_a, cmd_o = worker_commands(args, step, count_flops=r == 0 and not args.no_flops)
            for who, cmd, env in (("authors", cmd_a, authors_env), ("ours", cmd_o, {})):
                load = os.getloadavg()[0]
                res = run_json(cmd, args.isa, env)
                res["load_before"] = load
                runs[who].append(res)
                print(f"  {step:16s} round {r + 1} {who:7s} " + " ".join(f"{t:.2f}" for t in res["times_s"])
                      + f" s   (load {load:.1f})", flush=True)
        results[step] = {who: summarise(rs) for who, rs in runs.items()}
        results[step]["raw"] = runs

    print(f"\n{'step':17s} {'authors (s)':>12s} {'min-max':>12s} {'ours (s)':>9s} {'min-max':>12s} "
          f"{'authors/ours':>12s}  {'sys% a/o':>9s} {'minflt/step a/o':>17s} {'peak RSS GiB a/o':>17s}  "
          f"{'kernels, precision':20s} {'GFLOP a/o':>15s} {'GFLOP/s a/o':>13s} {'bound a/o':>10s}")
    for step in steps:
        a, o = results[step]["authors"], results[step]["ours"]
        print(
            f"{step:17s} {a['median_s']:12.2f} {a['min_s']:5.2f}-{a['max_s']:<6.2f} {o['median_s']:9.2f} "
            f"{o['min_s']:5.2f}-{o['max_s']:<6.2f} {a['median_s'] / o['median_s']:11.2f}x  "
            f"{100 * a['sys_share']:4.0f}/{100 * o['sys_share']:<4.0f} {a['minflt_per_step']:8.0f}/{o['minflt_per_step']:<8.0f} "
            f"{a['peak_rss_gib']:8.1f}/{o['peak_rss_gib']:<8.1f}  {o['cpu_capability'] + ', ' + o['precision']:20s} "
            + flop_columns(a, o, peak)
        )
    print("\nbound a/o: the authors' time over the time ours would take running all its FLOPs at the matrix-product "
          "ceiling in its precision — the most any code doing this arithmetic could reach here.")
    print(f"\n(median over {args.rounds} rounds; sitting took {(time.perf_counter() - t_start) / 60:.1f} min; "
          f"load averages per run are in --json)")
    if args.json:
        meta = {"machine": cpu_description(), "args": {k: str(v) for k, v in vars(args).items()}, "tcmalloc": tcmalloc}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    maybe_record(args, "vs_authors", {"results": results, "tcmalloc": tcmalloc}, title="Seconds per step, ours vs the authors' code")


if __name__ == "__main__":
    main()
