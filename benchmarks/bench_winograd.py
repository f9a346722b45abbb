"""Could fewer multiplications beat oneDNN's direct convolution? Winograd F(2×2, 3×3) in PyTorch ops,
timed against ``F.conv2d`` on the model's main layer (3×3, 64→64 channels, 32×64×64), forward only.

    python benchmarks/bench_winograd.py                 # this machine's kernels
    python benchmarks/bench_winograd.py --isa avx2      # oneDNN/ATen/MKL limited to AVX2

Why ask: under AVX2 the authors' denoiser already runs at ~69 % of the matrix-product ceiling
(``bench_vs_authors.py``), so direct convolutions cannot be 1.5× faster than theirs; Winograd F(2×2, 3×3)
needs 16 multiplications per 2×2 output tile instead of 36 (2.25× fewer). It pays only if its tile
transforms (each moves ~4× the activation memory) cost less than the multiplications saved.

    y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A      per 4×4 input tile d (stride 2) and 3×3 filter g,
    summed over input channels inside the ⊙ step, which becomes 16 matrix products (K×C)·(C×tiles).
"""

from __future__ import annotations

import argparse
import os
import sys

from _record import add_record_argument, maybe_record
from _worker import ISA_ENV, best_time

B_T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
G = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
A_T = [[1, 1, 1, 0], [0, 1, -1, -1]]


def winograd_conv3x3(x, w):
    """3×3 convolution, stride 1, padding 1, by Winograd F(2×2, 3×3); H and W even."""
    import torch
    import torch.nn.functional as F

    b_t, g, a_t = (torch.tensor(m, dtype=x.dtype) for m in (B_T, G, A_T))
    n, c, h, wd = x.shape
    k = w.shape[0]
    u = (g @ w @ g.T).reshape(k, c, 16).permute(2, 0, 1)  # filter transform: (16, K, C)
    d = F.pad(x, (1, 1, 1, 1)).unfold(2, 4, 2).unfold(3, 4, 2)  # 4×4 tiles, stride 2: (N, C, H/2, W/2, 4, 4)
    th, tw = d.shape[2], d.shape[3]
    p = n * th * tw
    d = d.permute(1, 0, 2, 3, 4, 5).reshape(c * p, 16)
    v = (d @ torch.kron(b_t, b_t).T).view(c, p, 16).permute(2, 0, 1)  # vec(Bᵀ d B) = (Bᵀ⊗Bᵀ) vec(d): (16, C, P)
    m = torch.bmm(u, v)  # the 16 products over channels: (16, K, P)
    y = m.permute(1, 2, 0).reshape(k * p, 16) @ torch.kron(a_t, a_t).T  # output transform: (K·P, 4)
    return y.view(k, n, th, tw, 2, 2).permute(1, 0, 2, 4, 3, 5).reshape(n, k, h, wd)


def compare(threads: int, repeats: int) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(32, 64, 64, 64)
    w = torch.randn(64, 64, 3, 3) / 24  # ~unit-variance outputs
    ref = F.conv2d(x, w, padding=1)
    err = (winograd_conv3x3(x, w) - ref).abs().max().item()

    direct, wino = [], []
    for _ in range(2):  # alternately, so drift hits both
        direct.append(best_time(lambda: F.conv2d(x, w, padding=1), repeats))
        wino.append(best_time(lambda: winograd_conv3x3(x, w), repeats))
    flops = 2 * 32 * 64 * 64 * 64 * 64 * 9
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "max_abs_err": err,
        "ref_max_abs": ref.abs().max().item(),
        "direct_s": min(direct),
        "winograd_s": min(wino),
        "direct_gflops": flops / min(direct) / 1e9,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--isa", choices=["native", *ISA_ENV], default="native")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    add_record_argument(p)
    args = p.parse_args()
    if args.isa != "native" and not all(os.environ.get(k) == v for k, v in ISA_ENV[args.isa].items()):
        os.environ.update(ISA_ENV[args.isa])  # the kernel libraries read these at load: re-run in a fresh process
        os.execv(sys.executable, [sys.executable, *sys.argv])
    r = compare(args.threads, args.repeats)
    print(f"kernels {r['cpu_capability']}, {args.threads} threads; 3×3 conv 64→64 on 32×64×64, forward")
    print(f"  oneDNN direct         {1e3 * r['direct_s']:7.1f} ms  ({r['direct_gflops']:.0f} GFLOP/s)")
    print(f"  Winograd F(2×2,3×3)   {1e3 * r['winograd_s']:7.1f} ms  ({r['winograd_s'] / r['direct_s']:.1f}× the direct time; "
          f"max |error| {r['max_abs_err']:.1e} on outputs up to {r['ref_max_abs']:.1f})")
    winograd_record(args, r)


def winograd_record(args: argparse.Namespace, r: dict):
    """The record of one comparison (``--record DIR``): both times, the direct GFLOP/s, the error."""
    table = {"columns": ["kernel", "ms", "GFLOP/s", "× direct time"],
             "rows": [["oneDNN direct", 1e3 * r["direct_s"], r["direct_gflops"], 1.0],
                      ["Winograd F(2×2,3×3)", 1e3 * r["winograd_s"], r["direct_gflops"] * r["direct_s"] / r["winograd_s"],
                       r["winograd_s"] / r["direct_s"]]]}
    figures = {"config": {"isa": args.isa, "threads": args.threads, "repeats": args.repeats}, **r}
    return maybe_record(args, "winograd", figures, table=table,
                        title="3×3 convolution 64→64 on 32×64×64: oneDNN direct vs Winograd")


if __name__ == "__main__":
    main()
