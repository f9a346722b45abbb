import math

import torch
import torch.nn.functional as F

from diamond_kedro.models.blocks import (
    AdaGroupNorm,
    Downsample,
    FourierFeatures,
    GroupNorm,
    ResBlock,
    SelfAttention2d,
    Upsample,
)

torch.set_num_threads(1)


def manual_group_norm(x, groups, eps=1e-5):
    b, c, h, w = x.shape
    g = x.reshape(b, groups, -1)
    mean = g.mean(-1, keepdim=True)
    var = g.var(-1, unbiased=False, keepdim=True)
    return ((g - mean) / torch.sqrt(var + eps)).reshape(b, c, h, w)


def test_group_norm_group_counts():
    for c, g in [(3, 1), (32, 1), (64, 2), (128, 4), (256, 8), (512, 16), (1024, 32)]:
        assert GroupNorm(c).norm.num_groups == g


def test_ada_group_norm_matches_formula():
    torch.manual_seed(0)
    m = AdaGroupNorm(64, 16)
    x, cond = torch.randn(2, 64, 5, 7), torch.randn(2, 16)
    s_b = cond @ m.linear.weight.T + m.linear.bias
    scale, shift = s_b[:, :64, None, None], s_b[:, 64:, None, None]
    expected = manual_group_norm(x, 2) * (1 + scale) + shift
    torch.testing.assert_close(m(x, cond), expected, atol=1e-5, rtol=1e-5)


def test_self_attention_matches_manual_and_is_group_norm_at_init():
    torch.manual_seed(0)
    m = SelfAttention2d(16)  # 2 heads of dim 8
    x = torch.randn(2, 16, 3, 4)
    n = manual_group_norm(x, 1) * m.norm.norm.weight[:, None, None] + m.norm.norm.bias[:, None, None]
    torch.testing.assert_close(m(x), n, atol=1e-5, rtol=1e-5)  # zero out_proj: output = GN(x) (quirk)

    torch.nn.init.normal_(m.out_proj.weight)
    torch.nn.init.normal_(m.out_proj.bias)
    qkv = F.conv2d(n, m.qkv_proj.weight, m.qkv_proj.bias).reshape(2, 48, 12)
    heads = []
    for h in range(2):
        q = qkv[:, h * 8 : (h + 1) * 8]  # (b, 8, tokens)
        k = qkv[:, 16 + h * 8 : 16 + (h + 1) * 8]
        v = qkv[:, 32 + h * 8 : 32 + (h + 1) * 8]
        att = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(8), dim=-1)  # (b, tokens, tokens)
        heads.append((att @ v.transpose(1, 2)).transpose(1, 2))  # (b, 8, tokens)
    y = torch.cat(heads, 1).reshape(2, 16, 3, 4)
    expected = n + F.conv2d(y, m.out_proj.weight, m.out_proj.bias)
    torch.testing.assert_close(m(x), expected, atol=1e-4, rtol=1e-4)


def test_resblock_is_its_skip_path_at_init():
    torch.manual_seed(0)
    x, cond = torch.randn(2, 8, 6, 6), torch.randn(2, 4)
    same = ResBlock(8, 8, 4, attn=False)
    # conv2's weight is zero-initialised (its bias keeps PyTorch's default): h = bias + skip(x)
    torch.testing.assert_close(same(x, cond), x + same.conv2.bias[:, None, None])
    proj = ResBlock(8, 16, 4, attn=False)
    expected = F.conv2d(x, proj.proj.weight, proj.proj.bias) + proj.conv2.bias[:, None, None]
    torch.testing.assert_close(proj(x, cond), expected, atol=1e-6, rtol=1e-6)
    assert torch.all(proj.conv2.weight == 0)


def test_fourier_features_buffer_and_formula():
    torch.manual_seed(0)
    m = FourierFeatures(8)
    assert "weight" in m.state_dict() and len(list(m.parameters())) == 0
    t = torch.tensor([0.0, 0.3])
    w = m.weight[0]
    expected = torch.cat([torch.cos(2 * math.pi * t[:, None] * w), torch.sin(2 * math.pi * t[:, None] * w)], 1)
    torch.testing.assert_close(m(t), expected)
    assert torch.all(m(torch.zeros(1))[0, :4] == 1) and torch.all(m(torch.zeros(1))[0, 4:] == 0)


def test_downsample_orthogonal_and_shapes():
    torch.manual_seed(0)
    d = Downsample(8)
    w = d.conv.weight.reshape(8, -1)
    torch.testing.assert_close(w @ w.T, torch.eye(8), atol=1e-5, rtol=1e-5)  # orthonormal rows
    assert d(torch.randn(1, 8, 15, 28)).shape == (1, 8, 8, 14)  # ceil halving
    assert Upsample(8)(torch.randn(1, 8, 4, 7)).shape == (1, 8, 8, 14)
