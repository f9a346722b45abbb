"""``diamond-kedro play atari|csgo ...``: play a world model by hand, watch the agent, or record headless.

See ``diamond-kedro play atari --help`` / ``play csgo --help`` and README section "Play". Bad input (a
missing or mismatched checkpoint, an unknown game, no display without ``--headless``, a checkpoint of the
other game family, a bad ``--keys`` script) ends with one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from diamond_kedro.play.loading import PlayError

PROG = "diamond-kedro play"

ATARI_CONTROLS_HELP = (
    "keys: W/A/S/D or arrows move, space fires; m cycles human/agent/random; Enter resets; "
    ". pauses, e steps while paused; Esc quits"
)
CSGO_CONTROLS_HELP = (
    "keys: W/A/S/D move, space jump, left ctrl crouch, left shift walk, 1/2/3 weapons, R reload, mouse to look "
    "(arrows override it), mouse buttons fire/aim; u upsampler on/off; p fast/higher_quality; m cycles "
    "human/replay/random; Enter resets; . pauses, e steps while paused; Esc quits"
)


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("display and recording")
    g.add_argument("--headless", action="store_true", help="no window (SDL dummy driver); needs --steps")
    g.add_argument("--steps", type=int, default=None, help="stop after N steps (required with --headless)")
    g.add_argument("--keys", default=None,
                   help="scripted input, one step per comma, controls joined by '+', e.g. 'fire,right,right+fire' "
                        "(Atari) or 'w,w+mx=100,space' (CS:GO); after the script: no input")
    g.add_argument("--record", default=None, metavar="OUT.mp4", help="write what the screen shows to an mp4")
    g.add_argument("--screenshot", default=None, metavar="OUT.png", help="save the last frame as a PNG")
    g.add_argument("--log-mlflow", nargs="?", const="diamond-play", default=None, metavar="EXPERIMENT",
                   help="log the video, screenshot and steps/s to a new MLflow run (experiment diamond-play)")
    g.add_argument("--fps", type=float, default=15.0, help="window frame-rate cap and video frame rate (15)")
    g.add_argument("--height", type=int, default=512, help="panel height in pixels (frames upscaled by an integer factor)")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda[:N]")
    g.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Play DIAMOND's world models (Atari, CS:GO).")
    sub = parser.add_subparsers(dest="family", required=True)

    a = sub.add_parser("atari", help="an Atari world model (and the agent)", epilog=ATARI_CONTROLS_HELP)
    src = a.add_argument_group("what to play (exactly one)")
    src.add_argument("--run", help="run folder data/runs/<Game>_seed<seed>_<name> (its newest agent)")
    src.add_argument("--agent", help="an agent checkpoint of ours (agent_epoch_*.pt)")
    src.add_argument("--authors", help="the authors' agent file atari_100k/models/<Game>.pt (needs --game)")
    src.add_argument("--mlflow", metavar="URI", help="runs:/<run id>/<path> or models:/diamond-<Game>/<version|latest>")
    a.add_argument("--game", help="the game (inferred from the run folder or the registered model when possible)")
    a.add_argument("--policy", choices=("human", "agent", "random"), default="human")
    a.add_argument("--side-by-side", action="store_true", help="drive the real emulator with the same actions beside the world model")
    a.add_argument("--contexts", choices=("auto", "replay", "env"), default="auto",
                   help="initial frames: the run's test replay (auto when present) or fresh real-env resets")
    a.add_argument("--denoising-steps", type=int, default=3, help="sampler steps per frame (paper: 3)")
    a.add_argument("--sampler", choices=("euler", "heun"), default="euler")
    a.add_argument("--horizon", type=int, default=50, help="world-model episode length before a reset (authors' play: 50)")
    _common(a)

    # `play static` is the same command: every run of the static family (CS:GO or static_world_model)
    c = sub.add_parser("csgo", aliases=["static"], epilog=CSGO_CONTROLS_HELP,
                       help="the CS:GO world model, or a static_world_model run on your own gameplay")
    src = c.add_argument_group("what to play (exactly one)")
    src.add_argument("--run", help="run folder of a CS:GO run (data/runs/csgo_<name>) or of a static_world_model "
                                   "run (data/runs/<dataset>_<name>)")
    src.add_argument("--checkpoint", help="the authors' csgo/model/csgo.pt")
    c.add_argument("--data", help="ingested dataset whose test split gives the contexts (default: the run's dataset)")
    c.add_argument("--spawn", help="the authors' spawn folder(s) (csgo/spawn) instead of --data")
    c.add_argument("--preset", choices=("fast", "higher_quality"), default="fast")
    c.add_argument("--no-upsampler", action="store_true", help="show the bicubic upsampling of the low-res frame")
    c.add_argument("--policy", choices=("human", "replay", "random"), default="human")
    c.add_argument("--mouse-multiplier", type=float, default=10.0)
    c.add_argument("--horizon", type=int, default=1000)
    _common(c)
    return parser


def _device(spec: str) -> Any:
    from diamond_kedro.utils.device import resolve_device

    try:
        return resolve_device(spec)
    except (ValueError, RuntimeError) as exc:
        raise PlayError(f"--device {spec}: {exc}") from None


def _check_common(args: argparse.Namespace) -> None:
    """Everything checkable before the models load (a typo must not cost a long load)."""
    parse_keys(args.keys, args.family)
    if args.headless and args.steps is None:
        raise PlayError("--headless needs --steps N (how many steps to play)")
    if args.steps is not None and args.steps < 1:
        raise PlayError(f"--steps must be >= 1, got {args.steps}")
    if args.height < 16:
        raise PlayError(f"--height must be >= 16, got {args.height}")
    if args.screenshot and Path(args.screenshot).suffix.lower() != ".png":
        raise PlayError(f"--screenshot writes a .png file, got {args.screenshot}")
    if args.record and Path(args.record).suffix.lower() != ".mp4":
        raise PlayError(f"--record writes an .mp4 file, got {args.record}")
    for flag, out in (("--record", args.record), ("--screenshot", args.screenshot)):
        if out and not Path(out).resolve().parent.is_dir():
            raise PlayError(f"folder {Path(out).parent} of {flag} {out} does not exist")
    if not args.headless:
        from diamond_kedro.play.display import display_available

        if os.environ.get("SDL_VIDEODRIVER") != "dummy" and not display_available():
            raise PlayError("no display found (DISPLAY/WAYLAND_DISPLAY unset): run with --headless --steps N --record out.mp4")


def parse_keys(script: str | None, kind: str) -> list[Any]:
    """The ``--keys`` script as per-step Atari controls or CS:GO vectors (PlayError naming a bad token)."""
    from diamond_kedro.play.keymaps import atari_script_controls, csgo_script_action, parse_script

    try:
        return [atari_script_controls(s) if kind == "atari" else csgo_script_action(s) for s in parse_script(script)]
    except ValueError as exc:
        raise PlayError(str(exc)) from None


def _save_png(path: str, frame: np.ndarray) -> Path:
    import imageio.v3 as iio

    out = Path(path)
    if not out.parent.is_dir():
        raise PlayError(f"folder {out.parent} of --screenshot {out} does not exist")
    from diamond_kedro.utils.atomic import atomic_write_to

    return atomic_write_to(out, lambda tmp: iio.imwrite(tmp, frame, plugin="pillow", extension=".png"))


def play_loop(session: Any, screen: Any, args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """Events -> input -> one world-model step -> draw (-> record), until --steps, Esc or the window closes."""
    from diamond_kedro.play.keymaps import ATARI_KEYS, CsgoInput
    from diamond_kedro.play.recorder import Mp4Recorder

    pg = screen.pg
    scripted = parse_keys(args.keys, kind)
    csgo_input = CsgoInput(getattr(args, "mouse_multiplier", 10.0))
    if kind == "csgo" and not args.headless:
        pg.mouse.set_visible(False)
        pg.event.set_grab(True)
    recorder = Mp4Recorder(args.record, args.fps) if args.record else None
    clock = pg.time.Clock()
    n, model_time, frame, paused, step_once = 0, 0.0, None, False, False
    rate = 0.0
    start = time.perf_counter()
    try:
        while args.steps is None or n < args.steps:
            stop = False
            for ev in screen.events():
                if ev.type == pg.QUIT:
                    stop = True
                elif ev.type in (pg.KEYDOWN, pg.KEYUP):
                    name = pg.key.name(ev.key)
                    if ev.type == pg.KEYUP:
                        csgo_input.release(name)
                        continue
                    if name == "escape":
                        stop = True
                    elif name == "return":
                        session.reset()
                    elif name == ".":
                        paused = not paused
                    elif name == "e":
                        step_once = True
                    elif name == "m":
                        session.cycle_policy()
                    elif kind == "csgo" and name == "u":
                        session.upsample = not session.upsample
                    elif kind == "csgo" and name == "p":
                        session.set_preset("higher_quality" if session.preset == "fast" else "fast")
                    else:
                        csgo_input.press(name)
                elif ev.type == pg.MOUSEMOTION:
                    csgo_input.move_mouse(*ev.rel)
                elif ev.type in (pg.MOUSEBUTTONDOWN, pg.MOUSEBUTTONUP):
                    down = ev.type == pg.MOUSEBUTTONDOWN
                    if ev.button == 1:
                        csgo_input.left_click = down
                    elif ev.button == 3:
                        csgo_input.right_click = down
            if stop:
                break
            if paused and not step_once:
                frame = screen.draw(session.panels(), session.hud() + ["PAUSED (. resumes, e steps)"])
                clock.tick(args.fps)
                continue
            step_once = False
            t0 = time.perf_counter()
            if kind == "atari":
                controls = scripted[n] if n < len(scripted) else {ATARI_KEYS[k] for k in screen.held if k in ATARI_KEYS}
                session.step(controls)
            else:
                session.step(scripted[n] if n < len(scripted) else csgo_input.action())
                csgo_input.end_frame()
            dt = time.perf_counter() - t0
            model_time += dt
            rate = 1.0 / dt if rate == 0 else 0.9 * rate + 0.1 / dt  # smoothed world-model steps/s
            frame = screen.draw(session.panels(), session.hud(), footer=f"{rate:.1f} steps/s")
            if recorder is not None:
                recorder.add(frame)
            n += 1
            if not args.headless:
                clock.tick(args.fps)
    except BaseException:
        if recorder is not None:
            recorder.abort()
        raise
    video = recorder.close() if recorder is not None else None
    elapsed = time.perf_counter() - start
    if frame is None:
        frame = screen.draw(session.panels(), session.hud())
    shot = _save_png(args.screenshot, frame) if args.screenshot else None
    return {
        "steps": n,
        "seconds": elapsed,
        "steps_per_s": n / elapsed if elapsed > 0 else 0.0,
        "model_steps_per_s": n / model_time if model_time > 0 else 0.0,
        "video": video,
        "screenshot": shot,
    }


def _mlflow_failure(uri: str, exc: BaseException, after: str = "") -> PlayError:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return PlayError(f"--log-mlflow: cannot log to the MLflow store {uri}: {type(exc).__name__}: "
                     f"{lines[0] if lines else ''}{after}")


def _mlflow_experiment(experiment: str) -> tuple[Any, str]:
    """(client, experiment id) of ``--log-mlflow``, made before playing: a store that cannot be written (a
    folder that does not exist, no permission, a server that does not answer) ends in one line at once."""
    from diamond_kedro.play.loading import tracking_uri

    uri = tracking_uri()
    try:
        from diamond_kedro.reporting import tracked_experiment

        return tracked_experiment(uri, experiment)
    except Exception as exc:  # mlflow, sqlalchemy, OSError...: whatever the store raises, one line
        raise _mlflow_failure(uri, exc) from None


def _log_mlflow(experiment: str, params: dict[str, Any], stats: dict[str, Any]) -> str:
    from diamond_kedro.play.loading import tracking_uri

    client, exp_id = _mlflow_experiment(experiment)
    try:
        return _log_play_run(client, exp_id, params, stats)
    except Exception as exc:
        kept = [str(stats[k]) for k in ("video", "screenshot") if stats.get(k)]
        raise _mlflow_failure(tracking_uri(), exc, f" (kept: {', '.join(kept)})" if kept else "") from None


def _log_play_run(client: Any, exp_id: str, params: dict[str, Any], stats: dict[str, Any]) -> str:
    run = client.create_run(exp_id, run_name=f"play-{params['family']}", tags={"diamond.play": "1"})
    rid = run.info.run_id
    for k, v in params.items():
        client.log_param(rid, k, str(v)[:6000])
    for k in ("steps", "steps_per_s", "model_steps_per_s"):
        client.log_metric(rid, k, float(stats[k]))
    for key in ("video", "screenshot"):
        if stats.get(key):
            client.log_artifact(rid, str(stats[key]), artifact_path="play")
    client.set_terminated(rid)
    return rid


def run_atari(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from diamond_kedro.models.diffusion_sampler import DiffusionSamplerConfig
    from diamond_kedro.play.atari import AtariPlay
    from diamond_kedro.play.display import Screen
    from diamond_kedro.play.loading import load_atari_source

    _check_common(args)
    if args.denoising_steps < 1:
        raise PlayError(f"--denoising-steps must be >= 1, got {args.denoising_steps}")
    device = _device(args.device)
    src = load_atari_source(run=args.run, agent=args.agent, authors=args.authors, mlflow_uri=args.mlflow, game=args.game)
    torch.manual_seed(args.seed)
    sampler = DiffusionSamplerConfig(num_steps_denoising=args.denoising_steps, order=1 if args.sampler == "euler" else 2)
    session = AtariPlay(src, device=device, sampler=sampler, horizon=args.horizon, contexts=args.contexts,
                        side_by_side=args.side_by_side, policy=args.policy, seed=args.seed)
    try:
        size = session.size
        screen = Screen(f"DIAMOND {session.game}: {src.source}", (size, size), 2 if args.side_by_side else 1,
                        headless=args.headless, height=args.height, header_lines=5)
        try:
            stats = play_loop(session, screen, args, "atari")
        finally:
            screen.close()
    finally:
        session.close()
    stats["params"] = {"family": "atari", "game": session.game, "source": src.source, "policy": args.policy,
                       "side_by_side": args.side_by_side, "denoising_steps": args.denoising_steps,
                       "sampler": args.sampler, "contexts": session.contexts, "device": str(device)}
    return stats


def run_csgo(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from diamond_kedro.builders import CSGO_ACTION
    from diamond_kedro.play.csgo import CsgoPlay, dataset_contexts, spawn_contexts
    from diamond_kedro.play.display import Screen
    from diamond_kedro.play.loading import load_csgo_source

    _check_common(args)
    device = _device(args.device)
    src = load_csgo_source(run=args.run, checkpoint=args.checkpoint)
    L = src.denoiser.num_steps_conditioning
    if src.action is not None and src.action.to_dict() != CSGO_ACTION.to_dict():
        other = f"{src.action.kind} actions of width {src.action.dim}"
        if args.keys:
            raise PlayError(f"--keys scripts CS:GO actions; {args.run} has {other}: use --policy replay or random")
        if args.spawn:
            raise PlayError(f"--spawn holds CS:GO spawn points; {args.run} has {other}: use --data or its own dataset")
    if args.spawn:
        contexts = spawn_contexts(args.spawn, L)
    else:
        data = args.data or src.data_root
        if data is None:
            raise PlayError("the authors' model needs --spawn <csgo/spawn> or --data <ingested dataset> for its first frames")
        contexts = dataset_contexts(data, L, seed=args.seed)
    torch.manual_seed(args.seed)
    session = CsgoPlay(src, contexts, device=device, preset=args.preset, upsample=not args.no_upsampler,
                       horizon=args.horizon, policy=args.policy, seed=args.seed)
    h, w = session.frame().shape[:2]
    title = "CS:GO" if src.family == "csgo" else "static world model"
    screen = Screen(f"DIAMOND {title}: {src.source}", (h, w), 1, headless=args.headless, height=args.height, header_lines=3)
    try:
        stats = play_loop(session, screen, args, "csgo")
    finally:
        screen.close()
    stats["params"] = {"family": src.family, "source": src.source, "policy": session.policy, "preset": args.preset,
                       "upsampler": session.upsampler is not None and not args.no_upsampler, "device": str(device)}
    return stats


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed its usage line and error
        return int(exc.code or 0)
    try:
        if args.log_mlflow:
            _mlflow_experiment(args.log_mlflow)  # the store is usable before anything is played
        stats = run_atari(args) if args.family == "atari" else run_csgo(args)
        if args.log_mlflow:
            stats["mlflow_run_id"] = _log_mlflow(args.log_mlflow, stats["params"], stats)
    except PlayError as exc:
        print(f"{PROG} {args.family}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in stats.items() if k != "params"}
    summary["steps_per_s"] = round(summary["steps_per_s"], 3)
    summary["model_steps_per_s"] = round(summary["model_steps_per_s"], 3)
    print(json.dumps(summary))
    return 0
