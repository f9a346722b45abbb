import pytest
import torch

from diamond_kedro.models.actor_critic import ActorCriticConfig
from diamond_kedro.models.agent import Agent, AgentConfig, load_authors_checkpoint, load_checkpoint, save_checkpoint
from diamond_kedro.models.denoiser import DenoiserConfig
from diamond_kedro.models.rew_end_model import RewEndModelConfig
from diamond_kedro.models.unet import InnerModelConfig

torch.set_num_threads(1)


def published_layout(A: int) -> dict[str, tuple[int, ...]]:
    """Key → shape of the authors' flat Atari agent file, written out from spec §2.5 / Appendix B."""
    keys: dict[str, tuple[int, ...]] = {}

    def resblock(prefix, c_in, c_out, cond, attn):
        if c_in != c_out:
            keys[f"{prefix}.proj.weight"], keys[f"{prefix}.proj.bias"] = (c_out, c_in, 1, 1), (c_out,)
        keys[f"{prefix}.norm1.linear.weight"], keys[f"{prefix}.norm1.linear.bias"] = (2 * c_in, cond), (2 * c_in,)
        keys[f"{prefix}.conv1.weight"], keys[f"{prefix}.conv1.bias"] = (c_out, c_in, 3, 3), (c_out,)
        keys[f"{prefix}.norm2.linear.weight"], keys[f"{prefix}.norm2.linear.bias"] = (2 * c_out, cond), (2 * c_out,)
        keys[f"{prefix}.conv2.weight"], keys[f"{prefix}.conv2.bias"] = (c_out, c_out, 3, 3), (c_out,)
        if attn:
            keys[f"{prefix}.attn.norm.norm.weight"] = keys[f"{prefix}.attn.norm.norm.bias"] = (c_out,)
            keys[f"{prefix}.attn.qkv_proj.weight"], keys[f"{prefix}.attn.qkv_proj.bias"] = (3 * c_out, c_out, 1, 1), (3 * c_out,)
            keys[f"{prefix}.attn.out_proj.weight"], keys[f"{prefix}.attn.out_proj.bias"] = (c_out, c_out, 1, 1), (c_out,)

    def conv(prefix, c_out, c_in, k):
        keys[f"{prefix}.weight"], keys[f"{prefix}.bias"] = (c_out, c_in, k, k), (c_out,)

    d = "denoiser.inner_model"
    keys[f"{d}.noise_emb.weight"] = (1, 128)
    keys[f"{d}.act_emb.0.weight"] = (A, 64)
    for i in (0, 2):
        keys[f"{d}.cond_proj.{i}.weight"], keys[f"{d}.cond_proj.{i}.bias"] = (256, 256), (256,)
    conv(f"{d}.conv_in", 64, 15, 3)
    for i in range(4):
        for j in range(2):
            resblock(f"{d}.unet.d_blocks.{i}.resblocks.{j}", 64, 64, 256, False)
        for j in range(3):  # decoder inputs are skip concatenations: 128 → 64
            resblock(f"{d}.unet.u_blocks.{i}.resblocks.{j}", 128, 64, 256, False)
    for j in range(2):
        resblock(f"{d}.unet.mid_blocks.resblocks.{j}", 64, 64, 256, True)
    for i in (1, 2, 3):
        conv(f"{d}.unet.downsamples.{i}.conv", 64, 64, 3)
        conv(f"{d}.unet.upsamples.{i}.conv", 64, 64, 3)
    keys[f"{d}.norm_out.norm.weight"] = keys[f"{d}.norm_out.norm.bias"] = (64,)
    conv(f"{d}.conv_out", 3, 64, 3)

    r = "rew_end_model"
    conv(f"{r}.encoder.conv_in", 32, 6, 3)
    for i in range(5):
        for j in range(2):
            resblock(f"{r}.encoder.blocks.{i}.resblocks.{j}", 32, 32, 128, i == 4)
    for i in (1, 2, 3):
        conv(f"{r}.encoder.downsamples.{i}.conv", 32, 32, 3)
    keys[f"{r}.act_emb.weight"] = (A, 128)
    keys[f"{r}.lstm.weight_ih_l0"], keys[f"{r}.lstm.weight_hh_l0"] = (2048, 2048), (2048, 512)
    keys[f"{r}.lstm.bias_ih_l0"] = keys[f"{r}.lstm.bias_hh_l0"] = (2048,)
    keys[f"{r}.head.0.weight"], keys[f"{r}.head.0.bias"], keys[f"{r}.head.2.weight"] = (512, 512), (512,), (5, 512)

    a = "actor_critic"
    conv(f"{a}.encoder.encoder.0", 32, 3, 3)
    for idx, (c_in, c_out) in zip((1, 3, 5, 7), ((32, 32), (32, 32), (32, 64), (64, 64))):
        keys[f"{a}.encoder.encoder.{idx}.f.0.norm.weight"] = keys[f"{a}.encoder.encoder.{idx}.f.0.norm.bias"] = (c_in,)
        conv(f"{a}.encoder.encoder.{idx}.f.2", c_out, c_in, 3)
    conv(f"{a}.encoder.encoder.5.skip_projection", 64, 32, 1)
    keys[f"{a}.lstm.weight_ih"], keys[f"{a}.lstm.weight_hh"] = (2048, 1024), (2048, 512)
    keys[f"{a}.lstm.bias_ih"] = keys[f"{a}.lstm.bias_hh"] = (2048,)
    keys[f"{a}.critic_linear.weight"], keys[f"{a}.critic_linear.bias"] = (1, 512), (1,)
    keys[f"{a}.actor_linear.weight"], keys[f"{a}.actor_linear.bias"] = (A, 512), (A,)
    return keys


def test_published_layout_has_372_entries_and_matches_agent():
    layout = published_layout(4)
    assert len(layout) == 372
    sd = Agent(AgentConfig(num_actions=4)).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == layout


def test_import_authors_state_dict_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    flat = {k: torch.randn(shape, generator=g) for k, shape in published_layout(6).items()}
    agent = load_authors_checkpoint(flat)  # num_actions inferred from actor_linear
    assert agent.num_actions == 6
    for k, v in agent.state_dict().items():
        assert torch.equal(v, flat[k]), k
    path = tmp_path / "Pong.pt"
    torch.save(flat, path)
    agent2 = load_authors_checkpoint(path, num_actions=6)
    assert torch.equal(agent2.denoiser.inner_model.noise_emb.weight, flat["denoiser.inner_model.noise_emb.weight"])


def test_import_errors_name_the_problem():
    flat = {k: torch.zeros(shape) for k, shape in published_layout(4).items()}
    broken = dict(flat)
    del broken["rew_end_model.head.2.weight"]
    broken["denoiser.extra"] = torch.zeros(1)
    broken["denoiser.inner_model.conv_in.weight"] = torch.zeros(64, 12, 3, 3)
    with pytest.raises(ValueError) as e:
        load_authors_checkpoint(broken, num_actions=4)
    msg = str(e.value)
    assert "rew_end_model.head.2.weight" in msg and "denoiser.extra" in msg and "(64, 12, 3, 3)" in msg
    with pytest.raises(ValueError, match="actor_linear"):
        load_authors_checkpoint(flat, num_actions=5)
    with pytest.raises(FileNotFoundError):
        load_authors_checkpoint("/nonexistent/agent.pt", num_actions=4)


def tiny_agent_config(A=3) -> AgentConfig:
    return AgentConfig(
        num_actions=A,
        denoiser=DenoiserConfig(inner_model=InnerModelConfig(cond_channels=16, channels=[8, 8], depths=[1, 1], attn_depths=[0, 0])),
        rew_end_model=RewEndModelConfig(img_size=16, cond_channels=8, channels=[8, 8], depths=[1, 1], attn_depths=[0, 0], lstm_dim=16),
        actor_critic=ActorCriticConfig(num_actions=A, channels=(8, 8), down=(1, 1), lstm_dim=16, img_size=16),
    )


def test_save_and_load_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_agent_config()
    agent = Agent(cfg)
    path = tmp_path / "ckpt" / "agent.pt"
    save_checkpoint(path, agent, cfg)
    assert [p.name for p in path.parent.iterdir()] == ["agent.pt"]  # no temp file left behind
    loaded = load_checkpoint(path)
    assert isinstance(loaded, Agent) and loaded.cfg == cfg
    for (k, v), (k2, v2) in zip(agent.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    # a component alone round-trips too
    save_checkpoint(tmp_path / "den.pt", agent.denoiser, cfg.denoiser)
    den = load_checkpoint(tmp_path / "den.pt")
    assert torch.equal(den.inner_model.noise_emb.weight, agent.denoiser.inner_model.noise_emb.weight)


def test_load_checkpoint_rejects_mismatch(tmp_path):
    cfg = tiny_agent_config()
    agent = Agent(cfg)
    other = tiny_agent_config(A=4)
    save_checkpoint(tmp_path / "a.pt", agent, other)  # weights for A=3 under a config for A=4
    with pytest.raises(ValueError, match="shape mismatches"):
        load_checkpoint(tmp_path / "a.pt")
    torch.save({"x": torch.zeros(1)}, tmp_path / "b.pt")
    with pytest.raises(ValueError, match="not a"):
        load_checkpoint(tmp_path / "b.pt")


def test_agent_config_rejects_conflicting_num_actions():
    with pytest.raises(ValueError, match="disagrees"):
        AgentConfig(num_actions=4, rew_end_model=RewEndModelConfig(num_actions=5))
