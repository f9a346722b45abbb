"""CUDA-only paths of DDP and offloading (issue 21), forced on the CPU with mocks."""

from unittest import mock

import torch

from diamond_kedro import distributed
from diamond_kedro.training.csgo_run import move_optimizer_state


def test_nccl_process_group_gets_the_rank_device(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed, "_CTX", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.atexit, "register", lambda f: None)
    with mock.patch.object(distributed.dist, "init_process_group") as init:
        ctx = distributed.setup("cuda")
    assert ctx.device == torch.device("cuda", 1)
    init.assert_called_once()
    assert init.call_args.kwargs["backend"] == "nccl"
    assert init.call_args.kwargs["device_id"] == torch.device("cuda", 1)
    monkeypatch.setattr(distributed, "_CTX", None)


def test_gloo_process_group_gets_no_device_id(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(distributed, "_CTX", None)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.atexit, "register", lambda f: None)
    with mock.patch.object(distributed.dist, "init_process_group") as init:
        distributed.setup("cpu")
    assert init.call_args.kwargs["backend"] == "gloo" and init.call_args.kwargs["device_id"] is None
    monkeypatch.setattr(distributed, "_CTX", None)


def _gpu_tensor() -> mock.MagicMock:
    t = mock.MagicMock(spec=torch.Tensor)
    t.device = torch.device("cuda", 0)
    t.to.return_value = torch.zeros(2)
    return t


def test_offload_to_host_synchronises_the_non_blocking_copies():
    """run.offload: AdamW moments leave the GPU with non_blocking copies; the host must not read them
    before they land, so the move ends with a synchronisation of the source GPU."""
    exp_avg, exp_avg_sq = _gpu_tensor(), _gpu_tensor()
    opt = mock.Mock(state={"p": {"step": torch.tensor(3.0), "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}})
    with mock.patch.object(torch.cuda, "synchronize") as sync:
        move_optimizer_state(opt, torch.device("cpu"))
    exp_avg.to.assert_called_once_with(torch.device("cpu"), non_blocking=True)
    sync.assert_called_once_with(torch.device("cuda", 0))
    assert opt.state["p"]["step"].item() == 3.0  # the step counter stays where torch keeps it


def test_move_to_the_gpu_needs_no_synchronisation():
    opt = mock.Mock(state={"p": {"step": torch.tensor(1.0), "exp_avg": torch.zeros(2)}})
    with mock.patch.object(torch.Tensor, "to", lambda self, *a, **k: self), mock.patch.object(torch.cuda, "synchronize") as sync:
        move_optimizer_state(opt, torch.device("cuda", 0))
    sync.assert_not_called()  # later kernels on the stream run after the copy
