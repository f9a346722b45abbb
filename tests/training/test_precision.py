"""run.amp: "auto" picks bf16 autocast only where the CPU has native bf16 kernels and a probe shows it pays."""

from __future__ import annotations

import json

import pytest
import torch

from diamond_kedro.utils import layout_probe, precision

CPU = torch.device("cpu")


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAMOND_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(precision, "_memo", {})
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    calls: list[dict] = []

    def set_times(fp32: float, bf16: float) -> None:
        def probe():
            calls.append({"fp32": fp32, "bf16": bf16})
            return {"fp32": fp32, "bf16": bf16}

        monkeypatch.setattr(precision, "probe_precision", probe)

    return tmp_path, calls, set_times


def test_explicit_settings_pass_through_and_bad_ones_are_refused():
    assert precision.resolve_amp(True, CPU) is True
    assert precision.resolve_amp(False, CPU) is False
    with pytest.raises(ValueError, match="run.amp must be true, false or 'auto', got 'fast'"):
        precision.resolve_amp("fast", CPU)


def test_margin_is_a_1_3x_speedup():
    assert precision.pick_precision({"fp32": 1.3, "bf16": 1.0}) == "bf16"
    assert precision.pick_precision({"fp32": 1.29, "bf16": 1.0}) == "fp32"
    assert precision.pick_precision({"fp32": 1.0, "bf16": 2.0}) == "fp32"


def test_no_native_bf16_means_fp32_without_probing(fresh, monkeypatch):
    _, calls, set_times = fresh
    set_times(10.0, 1.0)  # would win by far, if it were asked
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_amp("auto", CPU) is False
    assert calls == []


def test_auto_probes_once_per_machine_and_caches_the_choice_on_disk(fresh, monkeypatch):
    tmp_path, calls, set_times = fresh
    set_times(2.0, 1.0)
    assert precision.resolve_amp("auto", CPU) is True
    assert precision.resolve_amp("auto", CPU) is True  # memoised in the process
    assert len(calls) == 1
    saved = json.loads((tmp_path / "kernel_choices.json").read_text())
    assert saved["precision"][layout_probe.machine_key()] == {"choice": "bf16", "seconds": {"fp32": 2.0, "bf16": 1.0}}
    # a new process on the same machine reads the file, whatever a probe would say now
    monkeypatch.setattr(precision, "_memo", {})
    set_times(1.0, 1.0)
    assert precision.resolve_amp("auto", CPU) is True
    assert len(calls) == 1
    # another thread count is another machine key: a 1.2x gain is not enough
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        set_times(1.2, 1.0)
        assert precision.resolve_amp("auto", CPU) is False
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 2
    # a cache entry whose choice its own timings do not name is measured over
    saved = json.loads((tmp_path / "kernel_choices.json").read_text())
    saved["precision"][layout_probe.machine_key()]["choice"] = "fp8"
    (tmp_path / "kernel_choices.json").write_text(json.dumps(saved))
    monkeypatch.setattr(precision, "_memo", {})
    set_times(1.0, 3.0)
    assert precision.resolve_amp("auto", CPU) is False
    assert len(calls) == 3
    # the layout choice shares the file and survives
    assert "precision" in json.loads((tmp_path / "kernel_choices.json").read_text())


def test_meta_device_and_mps_stay_fp32(fresh):
    _, calls, set_times = fresh
    set_times(2.0, 1.0)
    assert precision.resolve_amp("auto", torch.device("meta")) is False
    assert calls == []


def test_real_probe_times_both_precisions_even_from_inference_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAMOND_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(precision, "_memo", {})
    monkeypatch.setenv("DIAMOND_CONV_LAYOUT", "contiguous")  # no layout probe inside this one
    seen: list[torch.dtype] = []
    from diamond_kedro.models.unet import probe_network as real_network

    def spying_network(batch: int = 2):
        net, fwd_bwd = real_network(batch=1)
        net.conv_in.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        return net, fwd_bwd

    monkeypatch.setattr(precision, "_probe_network", [spying_network])
    times = precision.probe_precision(repeats=1)
    assert set(times) == {"fp32", "bf16"} and all(t > 0 for t in times.values())
    assert seen.count(torch.float32) == 2 and seen.count(torch.bfloat16) == 2  # 1 warm-up + 1 timed each
    # a first use from inside inference_mode (sampling code) still probes with a backward pass
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    with torch.inference_mode():
        precision.bf16_pays_on_cpu()
    assert set(json.loads((tmp_path / "kernel_choices.json").read_text())["precision"][layout_probe.machine_key()]["seconds"]) == {"fp32", "bf16"}


def test_probes_leave_the_global_random_stream_alone(tmp_path, monkeypatch):
    """A seeded run must draw the same numbers whether this machine's kernel choices were cached or probed."""
    from diamond_kedro.models import blocks, unet

    monkeypatch.setenv("DIAMOND_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(precision, "_memo", {})
    monkeypatch.setattr(blocks, "_layout_choice", {})
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    small = unet.probe_network

    monkeypatch.setattr(unet, "probe_network", lambda batch=2: small(batch=1))
    monkeypatch.setattr(precision, "_probe_network", [unet.probe_network])
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    blocks.channels_last_pays(unet.probe_conv_layouts)  # probes (nothing cached in tmp_path)
    precision.bf16_pays_on_cpu()  # probes
    assert set(json.loads((tmp_path / "kernel_choices.json").read_text())) == {"conv_layout", "precision"}
    assert torch.equal(torch.rand(3), expected)
