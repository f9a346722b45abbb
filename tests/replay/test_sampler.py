"""SegmentSampler (spec §1.7) and test traversal (spec §1.8) against hand-computed expectations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diamond_kedro.replay.sampler import (
    SegmentSampler,
    collate_windows,
    episode_probabilities,
    iter_test_batches,
    test_windows,
)
from diamond_kedro.replay.store import EpisodeChunk, ReplayStore

H, W = 4, 3


def coded_chunk(eid: int, t0: int, t: int, dead: bool) -> EpisodeChunk:
    """Steps t0..t0+t-1 of episode eid; every value encodes (eid, step) so windows can be checked.

    obs channel 0 = step, channel 1 = 10*eid, channel 2 = 7; act = step % 5 + 1 (never the pad 0);
    rew = step + 1; trunc = 0; end = 1 on the last step if dead; final_obs = 200 + eid everywhere.
    """
    steps = np.arange(t0, t0 + t)
    obs = np.zeros((t, H, W, 3), np.uint8)
    obs[..., 0] = steps[:, None, None]
    obs[..., 1] = 10 * eid
    obs[..., 2] = 7
    end = np.zeros(t, np.uint8)
    end[-1] = dead
    fo = np.full((H, W, 3), 200 + eid, np.uint8) if dead else None
    return EpisodeChunk(obs, (steps % 5 + 1).astype(np.int64), (steps + 1).astype(np.float32), end,
                        np.zeros(t, np.uint8), fo)


def build_store(root, lengths, open_last=False, split_first=False) -> ReplayStore:
    s = ReplayStore(root)
    for eid, n in enumerate(lengths):
        dead = not (open_last and eid == len(lengths) - 1)
        if split_first and eid == 0 and n >= 3:  # episode 0 in three chunks (three epochs)
            a, b = n // 3, 2 * n // 3
            s.add_chunk(coded_chunk(eid, 0, a, False), None, epoch=0)
            s.add_chunk(coded_chunk(eid, a, b - a, False), eid, epoch=1)
            s.add_chunk(coded_chunk(eid, b, n - b, dead), eid, epoch=2)
        else:
            s.add_chunk(coded_chunk(eid, 0, n, dead), None, epoch=2 if split_first else 0)
    return s


def to_u8(x: torch.Tensor) -> torch.Tensor:
    """Invert x = 2v/255 - 1 (exact up to float rounding)."""
    return torch.round((x + 1) * 255 / 2)


def check_batch(batch, store: ReplayStore, s: int) -> None:
    """Every slot is either the real step start+i of its episode, or padding with the pad values."""
    lengths = store.lengths
    for b, eid in enumerate(batch.episode_ids):
        start, n = int(batch.starts[b]), int(lengths[eid])
        for i in range(s):
            step = start + i
            real = 0 <= step < n
            assert bool(batch.mask_padding[b, i]) == real
            if real:
                px = to_u8(batch.obs[b, i])  # (3, H, W) channel-first
                assert torch.all(px[0] == step) and torch.all(px[1] == 10 * eid) and torch.all(px[2] == 7)
                assert batch.act[b, i] == step % 5 + 1 and batch.rew[b, i] == step + 1
                is_last = step == n - 1 and store.is_finished(eid)
                assert batch.end[b, i] == int(is_last)
            else:
                assert torch.all(batch.obs[b, i] == 0)  # mid-gray
                assert batch.act[b, i] == 0 and batch.rew[b, i] == 0
                assert batch.end[b, i] == 0 and batch.trunc[b, i] == 0
        if store.is_finished(eid):
            assert batch.has_final_obs[b]
            assert torch.all(to_u8(batch.final_obs[b]) == 200 + eid)
        else:
            assert not batch.has_final_obs[b] and torch.all(batch.final_obs[b] == 0)


def test_episode_probabilities_closed_form():
    w = (0.1, 0.1, 0.1, 0.7)
    # N = 10: groups of 2, 2, 2, 2 + 10 mod 4 = 4  ->  0.1/2 = 0.05 each, then 0.7/4 = 0.175 each
    ids, p = episode_probabilities(np.ones(10), w)
    np.testing.assert_array_equal(ids, np.arange(10))
    np.testing.assert_allclose(p, [0.05] * 6 + [0.175] * 4)
    # N = 7: groups 1, 1, 1, 4 (recency groups ignore lengths)
    _, p = episode_probabilities(np.array([1, 100, 5, 3, 3, 3, 3]), w)
    np.testing.assert_allclose(p, [0.1, 0.1, 0.1, 0.175, 0.175, 0.175, 0.175])
    # N = 3 < 4 weights -> length-proportional: 2/10, 3/10, 5/10
    _, p = episode_probabilities(np.array([2, 3, 5]), w)
    np.testing.assert_allclose(p, [0.2, 0.3, 0.5])
    _, p = episode_probabilities(np.array([2, 3, 5, 10]), None)
    np.testing.assert_allclose(p, [0.1, 0.15, 0.25, 0.5])
    # rank 1 of 2 on N = 10: ids 1,3,5,7,9 with 0.05,0.05,0.05,0.175,0.175 renormalised by 0.5
    ids, p = episode_probabilities(np.ones(10), w, rank=1, world_size=2)
    np.testing.assert_array_equal(ids, [1, 3, 5, 7, 9])
    np.testing.assert_allclose(p, [0.1, 0.1, 0.1, 0.35, 0.35])


@pytest.mark.parametrize("weights", [(0.5, 0.6), (0.2, 0.2, 0.2, 0.3), (-0.1, 1.1), ()])
def test_bad_weights_are_rejected(weights):
    with pytest.raises(ValueError, match="weights"):
        episode_probabilities(np.ones(8), weights)


def test_weights_summing_to_one_within_tolerance_are_accepted():
    _, p = episode_probabilities(np.ones(4), (0.1, 0.1, 0.1, 0.7000000001))
    assert abs(p.sum() - 1) < 1e-12


def test_recency_share_of_newest_group(tmp_path):
    # N = 9 -> groups 2, 2, 2, 3: the newest 3 episodes should get 70 % of the segments, 0.7/3 each.
    lengths = [30, 5, 12, 40, 8, 20, 3, 50, 9]
    store = build_store(tmp_path, lengths)
    sampler = SegmentSampler(store, batch_size=20000, seq_len=4, seed=0)
    ids, _ = sampler.draw_windows()
    # binomial std for 20000 draws at p=0.7 is 0.0032; tolerance 0.015 is > 4 std
    assert abs(np.mean(ids >= 6) - 0.7) < 0.015
    for e in (6, 7, 8):
        assert abs(np.mean(ids == e) - 0.7 / 3) < 0.015
    assert abs(np.mean(ids == 0) - 0.05) < 0.01  # 0.1 / 2, despite episode 0 being long


def test_length_proportional_without_weights(tmp_path):
    lengths = [10, 30, 60]
    store = build_store(tmp_path, lengths)
    ids, _ = SegmentSampler(store, batch_size=20000, seq_len=4, weights=None, seed=1).draw_windows()
    for e, n in enumerate(lengths):
        assert abs(np.mean(ids == e) - n / 100) < 0.015


def test_window_start_distribution_left_and_both(tmp_path):
    # One episode of length 3, S = 2. Hand enumeration over pivot t in {0,1,2}, u in {0,1}:
    # left:  stop = min(3, t+1+u) -> 1,2,2,3,3,3 -> start = stop-2 in {-1: 1/6, 0: 2/6, 1: 3/6}
    # both:  start = t-u          -> 0,-1,1,0,2,1 -> {-1: 1/6, 0: 2/6, 1: 2/6, 2: 1/6}
    store = build_store(tmp_path, [3])
    n = 24000
    _, left = SegmentSampler(store, n, 2, padding="left", weights=None, seed=2).draw_windows()
    _, both = SegmentSampler(store, n, 2, padding="both", weights=None, seed=3).draw_windows()
    for starts, expected in ((left, {-1: 1 / 6, 0: 2 / 6, 1: 3 / 6}), (both, {-1: 1 / 6, 0: 2 / 6, 1: 2 / 6, 2: 1 / 6})):
        assert set(np.unique(starts)) == set(expected)
        for k, prob in expected.items():
            assert abs(np.mean(starts == k) - prob) < 0.015


def test_left_windows_never_pass_episode_end_and_masks_are_exact(tmp_path):
    store = build_store(tmp_path, [9, 2, 14, 5, 1, 7], open_last=True, split_first=True)
    sampler = SegmentSampler(store, batch_size=64, seq_len=6, padding="left", seed=4)
    lengths = store.lengths
    for _ in range(5):
        batch = sampler.sample()
        assert batch.obs.shape == (64, 6, 3, H, W) and batch.obs.dtype == torch.float32
        assert batch.act.dtype == torch.int64 and batch.end.dtype == torch.uint8
        stops = batch.starts + 6
        assert torch.all(stops <= torch.as_tensor(lengths[batch.episode_ids]))  # never past the end
        assert torch.all(stops >= 1)  # at least the pivot is real
        assert torch.all(batch.mask_padding[:, -1])  # left padding only: the last slot is real
        check_batch(batch, store, 6)


def test_both_sided_windows_and_values(tmp_path):
    store = build_store(tmp_path, [9, 2, 14, 5, 1, 7], open_last=True, split_first=True)
    sampler = SegmentSampler(store, batch_size=64, seq_len=19, padding="both", seed=5)
    saw_right_pad = False
    for _ in range(5):
        batch = sampler.sample()
        assert batch.mask_padding.any(dim=1).all()  # the pivot is always inside the window
        saw_right_pad |= bool((~batch.mask_padding[:, -1]).any())
        check_batch(batch, store, 19)
    assert saw_right_pad


def test_multi_hot_actions_are_float(tmp_path):
    s = ReplayStore(tmp_path)
    c = coded_chunk(0, 0, 4, True)
    act = np.eye(4, 3, dtype=np.uint8)
    s.add_chunk(EpisodeChunk(c.obs, act, c.rew, c.end, c.trunc, c.final_obs))
    batch = collate_windows(s, [0], [-1], 3)
    assert batch.act.dtype == torch.float32 and batch.act.shape == (1, 3, 3)
    expected = np.zeros((3, 3), np.float32)
    expected[1:] = act[:2]  # slot 0 is left padding
    np.testing.assert_array_equal(batch.act[0].numpy(), expected)


def test_sampler_sees_appended_episodes(tmp_path):
    store = build_store(tmp_path, [5, 5, 5, 5])
    sampler = SegmentSampler(store, batch_size=4000, seq_len=2, seed=6)
    assert sampler.draw_windows()[0].max() == 3
    store.add_chunk(coded_chunk(4, 0, 5, True))  # N = 5: groups 1, 1, 1, 2 -> ids 3, 4 share 0.7
    ids, _ = sampler.draw_windows()
    assert abs(np.mean(ids == 4) - 0.35) < 0.03
    check_batch(sampler.sample(), store, 2)


def test_empty_store_errors(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        SegmentSampler(ReplayStore(tmp_path), 2, 3).sample()


def test_test_traversal_windows_by_hand(tmp_path):
    # lengths 5, 1, 7, 4 with S = 3:
    # ep0: [0,3) 3 real, [3,6) 2 real -> both kept; ep1: [0,3) 1 real -> dropped;
    # ep2: [0,3), [3,6), [6,9) 1 real -> dropped; ep3: [0,3), [3,6) 1 real -> dropped
    expected = [(0, 0), (0, 3), (2, 0), (2, 3), (3, 0)]
    assert test_windows([5, 1, 7, 4], 3) == expected
    store = build_store(tmp_path, [5, 1, 7, 4])
    batches = list(iter_test_batches(store, batch_size=4, seq_len=3))
    assert [b.batch_size for b in batches] == [4, 1]
    got = [(e, int(s)) for b in batches for e, s in zip(b.episode_ids, b.starts)]
    assert got == expected
    assert batches[0].mask_padding.tolist() == [[True] * 3, [True, True, False], [True] * 3, [True] * 3]
    for b in batches:
        check_batch(b, store, 3)


def test_prefetch_yields_the_same_batches_as_sampling_in_turn(tmp_path):
    """Background prefetch (issue 21) changes when batches are made, not which: same seed, same batches."""
    from diamond_kedro.replay.sampler import prefetch

    store = build_store(tmp_path / "s", [5, 9, 2, 14], open_last=True)
    plain = SegmentSampler(store, batch_size=6, seq_len=4, padding="both", seed=7)
    ahead = SegmentSampler(store, batch_size=6, seq_len=4, padding="both", seed=7)
    expected = [plain.sample() for _ in range(5)]
    got = list(ahead.prefetch(5, depth=2))
    assert len(got) == 5
    for a, b in zip(expected, got):
        assert a.episode_ids == b.episode_ids
        for f in ("obs", "act", "rew", "end", "trunc", "mask_padding", "final_obs", "has_final_obs", "starts"):
            assert torch.equal(getattr(a, f), getattr(b, f)), f
        check_batch(b, store, 4)
    # exactly n drawn: the generators continue in step
    assert plain.sample().episode_ids == ahead.sample().episode_ids

    calls = []

    def failing():
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("torn chunk")
        return plain.sample()

    it = prefetch(failing, 4)
    next(it)
    with pytest.raises(ValueError, match="torn chunk"):
        next(it)
    early = prefetch(plain.sample, 100, depth=1)
    next(early)
    early.close()  # stops the thread (joins it) although 99 batches were never taken
    assert len(calls) == 2
