"""run.compile compiles what runs (issue 21): the denoiser's inner model, in place, keys unchanged."""

import torch

from diamond_kedro.models.actor_critic import ActorCriticConfig
from diamond_kedro.models.agent import Agent, AgentConfig, compile_agent, load_checkpoint, save_checkpoint
from diamond_kedro.models.denoiser import DenoiserConfig
from diamond_kedro.models.rew_end_model import RewEndModelConfig
from diamond_kedro.models.unet import InnerModelConfig
from diamond_kedro.replay.batch import Batch

torch.set_num_threads(1)
S = 16


def tiny_agent() -> Agent:
    torch.manual_seed(0)
    return Agent(AgentConfig(
        3,
        denoiser=DenoiserConfig(inner_model=InnerModelConfig(cond_channels=16, channels=[8, 8], depths=[1, 1], attn_depths=[0, 0])),
        rew_end_model=RewEndModelConfig(img_size=S, cond_channels=8, channels=[8, 8], depths=[1, 1], attn_depths=[0, 0], lstm_dim=16),
        actor_critic=ActorCriticConfig(num_actions=3, channels=(4, 4, 8, 8), lstm_dim=16, img_size=S),
    ))


def test_compiled_agent_runs_compiled_inner_model_and_keeps_checkpoint_keys(tmp_path):
    graphs: list[str] = []

    def counting_backend(gm, example_inputs):  # records each graph dynamo hands over, runs it eagerly
        graphs.append(type(gm).__name__)
        return gm.forward

    eager, compiled = tiny_agent(), tiny_agent()
    torch._dynamo.reset()
    compile_agent(compiled, backend=counting_backend)
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no "_orig_mod." anywhere

    batch = Batch.of(torch.rand(2, 6, 3, S, S) * 2 - 1, torch.randint(0, 3, (2, 6)))
    torch.manual_seed(1)
    loss_c, _ = compiled.denoiser.compute_loss(batch)
    assert graphs, "Denoiser.compute_loss did not go through a compiled module"
    torch.manual_seed(1)
    loss_e, _ = eager.denoiser.compute_loss(batch)
    torch.testing.assert_close(loss_c, loss_e)

    save_checkpoint(tmp_path / "compiled.pt", compiled, compiled.cfg)
    reloaded = load_checkpoint(tmp_path / "compiled.pt")  # strict load into a plain (eager) agent
    for k, v in eager.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[k], v)
    torch._dynamo.reset()
