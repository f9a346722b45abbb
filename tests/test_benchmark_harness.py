"""The arithmetic of the speed harness (benchmarks/): FLOP counts and the ceiling bound it prints.

No timing is asserted here (benchmarks print figures; tests don't time): only that the FLOPs a step is
charged with are the closed-form count, and that the printed bound is the hand-computed ratio.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _worker import measure  # noqa: E402
from bench_vs_authors import flop_columns  # noqa: E402
from bench_winograd import winograd_conv3x3  # noqa: E402


def test_measure_counts_the_closed_form_flops_of_a_conv_step_and_runs_it_the_asked_number_of_times():
    calls = []
    x = torch.randn(2, 3, 8, 8)
    w = torch.randn(5, 3, 3, 3, requires_grad=True)

    def step():
        calls.append(1)
        F.conv2d(x, w, padding=1).sum().backward()

    res = measure(torch.device("cpu"), step, warmup=2, steps=3, count_flops=True)
    # forward: 2 FLOPs per multiply-add, N·C_out·H·W outputs each of C_in·k² terms = 2·2·5·8·8·3·9;
    # backward: grad of the weight only (x needs none), the same count again
    forward = 2 * 2 * 5 * 8 * 8 * 3 * 9
    assert res["flops_per_step"] == 2 * forward
    # the counted call is the first warm-up call: 2 warm-up + 3 timed calls, 3 timings
    assert len(calls) == 5 and len(res["times_s"]) == 3


def test_measure_without_counting_reports_no_flops_and_no_extra_call():
    calls = []
    res = measure(torch.device("cpu"), lambda: calls.append(1), warmup=1, steps=2)
    assert res["flops_per_step"] is None and len(calls) == 3


def test_flop_columns_bound_is_the_authors_time_over_ours_at_the_ceiling():
    # authors: 120 GFLOP in 2.0 s = 60 GFLOP/s; ours 120 GFLOP in 1.5 s = 80 GFLOP/s; fp32 ceiling 150 GFLOP/s:
    # all of ours at the ceiling would take 0.8 s, so the authors/ours ratio can be at most 2.0 / 0.8 = 2.50
    a = {"flops_per_step": 120e9, "median_s": 2.0, "precision": "fp32"}
    o = {"flops_per_step": 120e9, "median_s": 1.5, "precision": "fp32"}
    cols = flop_columns(a, o, {"matmul_fp32": 150.0, "matmul_bf16": 600.0}).split()
    assert cols == ["120/120", "60/80", "2.50x"]
    # ours in bf16 is bounded by the bf16 ceiling: 600 / 60 = 10.00
    assert flop_columns(a, {**o, "precision": "bf16"}, {"matmul_fp32": 150.0, "matmul_bf16": 600.0}).split()[-1] == "10.00x"
    # no count on one side (--no-flops): no columns rather than made-up ones
    assert flop_columns({**a, "flops_per_step": None}, o, {"matmul_fp32": 150.0}) == ""


def test_winograd_conv_equals_the_direct_convolution():
    # the prototype bench_winograd.py times must compute the same convolution, or its time says nothing
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 6, generator=g)
    w = torch.randn(5, 3, 3, 3, generator=g)
    torch.testing.assert_close(winograd_conv3x3(x, w), F.conv2d(x, w, padding=1), atol=1e-5, rtol=1e-5)
