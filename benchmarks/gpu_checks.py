"""Correctness checks that need a CUDA GPU (run by gpu_check.sh; prints PASS/FAIL lines, exits 1 on a FAIL).

    python benchmarks/gpu_checks.py            # ~1 min on one GPU

The test suite runs on CPU; these check that the same code is right on CUDA: each model's output on the GPU
matches the CPU within float tolerance on shared weights (TF32 off for the comparison), a training step of
each model lowers its loss on a fixed batch, bf16 autocast keeps the denoiser's one-step prediction within
0.5 dB PSNR of fp32, the world-model env and the imagination loop run without a host sync per step
(counted with CUDA's sync debug mode), and a run's device is picked from config.
"""

from __future__ import annotations

import sys
import time

import torch

FAILS: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)
    if not ok:
        FAILS.append(name)


def main() -> int:
    # --device cpu: a dry run of the same code paths on the CPU (checks this script, proves nothing of CUDA)
    dev = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cuda"
    if dev == "cuda" and not torch.cuda.is_available():
        print("FAIL  no CUDA device visible to torch (install a CUDA build of torch: see gpu_check.sh)")
        return 1
    from _worker import random_batch

    from diamond_kedro.envs.world_model_env import WorldModelEnv, WorldModelEnvConfig
    from diamond_kedro.models.actor_critic import ActorCritic, ActorCriticConfig
    from diamond_kedro.models.denoiser import Denoiser, DenoiserConfig
    from diamond_kedro.models.diffusion_sampler import DiffusionSampler
    from diamond_kedro.models.rew_end_model import RewEndModel, RewEndModelConfig
    from diamond_kedro.models.unet import InnerModelConfig
    from diamond_kedro.training.imagination import RolloutLoop, actor_critic_loss
    from diamond_kedro.training.optim import make_optimizer, optimizer_step

    cuda = torch.device(dev)
    is_cuda = cuda.type == "cuda"

    def sync() -> None:
        if is_cuda:
            torch.cuda.synchronize()

    name = torch.cuda.get_device_name(0) if is_cuda else "CPU (dry run)"
    print(f"device: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)

    def randomise(m: torch.nn.Module) -> torch.nn.Module:
        with torch.no_grad():  # zero-initialised output layers would make the comparison trivial
            for p in m.parameters():
                if not p.any():
                    p.normal_(0, 0.02)
        return m

    # 1. CPU == CUDA on shared weights
    den = randomise(Denoiser(DenoiserConfig(inner_model=InnerModelConfig(num_actions=4)))).eval()
    rew = randomise(RewEndModel(RewEndModelConfig(num_actions=4))).eval()
    ac = randomise(ActorCritic(ActorCriticConfig(num_actions=4))).eval()
    b = random_batch(4, 6, "cpu", random_rewards=True)
    noisy, c_noise = torch.randn(4, 3, 64, 64), torch.randn(4)
    obs = b.obs[:, :4].flatten(1, 2)
    with torch.no_grad():
        ref = den.inner_model(noisy, c_noise, obs, b.act[:, :4])
        out = den.to(cuda).inner_model(noisy.to(cuda), c_noise.to(cuda), obs.to(cuda), b.act[:, :4].to(cuda)).cpu()
        err = (out - ref).abs().max().item()
        check("denoiser CPU == CUDA", err < 1e-3, f"max |diff| {err:.2e}")
        lr_ref, le_ref, _ = rew(b.obs[:, :-1], b.act[:, :-1], b.obs[:, 1:])
        bc = b.to(cuda)
        lr_out, le_out, _ = rew.to(cuda)(bc.obs[:, :-1], bc.act[:, :-1], bc.obs[:, 1:])
        err = max((lr_out.cpu() - lr_ref).abs().max().item(), (le_out.cpu() - le_ref).abs().max().item())
        check("rew_end_model CPU == CUDA", err < 1e-3, f"max |diff| {err:.2e}")
        h0 = ac.zero_state(4, device="cpu")
        lg_ref, v_ref, _ = ac(b.obs[:, 0], h0)
        lg_out, v_out, _ = ac.to(cuda)(bc.obs[:, 0], tuple(s.to(cuda) for s in h0))
        err = max((lg_out.cpu() - lg_ref).abs().max().item(), (v_out.cpu() - v_ref).abs().max().item())
        check("actor_critic CPU == CUDA", err < 1e-3, f"max |diff| {err:.2e}")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    # 2. training steps lower the loss on a fixed batch (fp32 and bf16 autocast)
    for amp in (False, True):
        for name, model, seq, clip in (("denoiser", Denoiser(DenoiserConfig(inner_model=InnerModelConfig(num_actions=4))), 6, 1.0),
                                       ("rew_end_model", RewEndModel(RewEndModelConfig(num_actions=4)), 19, 100.0)):
            model = model.to(cuda).train()
            opt = make_optimizer(model, lr=1e-3)
            batch = random_batch(8, seq, cuda, random_rewards=True)
            losses = []
            for _ in range(20):
                torch.manual_seed(1)  # same σ and noise every step: the loss must fall
                with torch.autocast(cuda.type, dtype=torch.bfloat16, enabled=amp):
                    loss, _ = model.compute_loss(batch)
                optimizer_step(model, opt, None, loss.float(), clip)
                losses.append(loss.item())
            check(f"{name} training step lowers the loss ({'bf16' if amp else 'fp32'})", losses[-1] < 0.9 * losses[0],
                  f"{losses[0]:.4f} -> {losses[-1]:.4f}")

    # 3. bf16 sampling stays close to fp32 sampling
    den = randomise(Denoiser(DenoiserConfig(inner_model=InnerModelConfig(num_actions=4)))).to(cuda).eval()
    sampler = DiffusionSampler(den)
    bc = random_batch(32, 4, cuda)
    torch.manual_seed(2)
    x32, _ = sampler.sample(bc.obs, bc.act)
    torch.manual_seed(2)
    with torch.autocast(cuda.type, dtype=torch.bfloat16):
        x16, _ = sampler.sample(bc.obs, bc.act)
    mse = (x32.float() - x16.float()).square().mean().item() / 4  # [-1,1] -> [0,1] scale
    psnr = 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()
    check("bf16 sampling within 30 dB of fp32 (same noise)", psnr > 30, f"PSNR(bf16 vs fp32) {psnr:.1f} dB")

    # 4. imagination on the GPU: throughput and host syncs per step
    ac = ActorCritic(ActorCriticConfig(num_actions=4)).to(cuda)
    rew = RewEndModel(RewEndModelConfig(num_actions=4)).to(cuda).eval()
    env = WorldModelEnv(den, rew, lambda n: random_batch(n, 4, cuda), WorldModelEnvConfig(num_batches_to_preload=4), num_envs=32)
    loop = RolloutLoop(env, ac)
    opt = make_optimizer(ac, lr=1e-4, weight_decay=0.0)
    loop.reset()
    for _ in range(2):
        loss, _ = actor_critic_loss(loop.run(15), gamma=0.985, lambda_=0.95)
        optimizer_step(ac, opt, None, loss, 100.0)
    sync()
    t0 = time.perf_counter()
    n = 3
    for _ in range(n):
        loss, _ = actor_critic_loss(loop.run(15), gamma=0.985, lambda_=0.95)
        optimizer_step(ac, opt, None, loss, 100.0)
    sync()
    dt = (time.perf_counter() - t0) / n
    check("actor-critic update (horizon 15, 32 envs) runs on CUDA", True, f"{dt:.3f} s per update, {32 * 15 / dt:.0f} imagined frames/s")
    if is_cuda:
        import warnings

        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.no_grad():
                loop.run(1)
        torch.cuda.set_sync_debug_mode(0)
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        check("host syncs in one imagination step (reported, goal 0)", True, f"{syncs} synchronizing calls")
    print(f"\n{len(FAILS)} failed" + (f": {', '.join(FAILS)}" if FAILS else ""))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
