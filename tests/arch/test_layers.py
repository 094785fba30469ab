"""imagine.arch.layers against plainer references: attention (MHA, GQA, MQA, causal, windows, cached
positions) vs a hand-written softmax, RoPE's relative-position property in 1D/2D/3D, the MoE's batched
dispatch vs its readable loop and vs a dense SwiGLU, and the load-balancing loss."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

from imagine.arch.layers import (  # noqa: E402
    MoE,
    RMSNorm,
    SwiGLU,
    apply_rope,
    attention,
    rope_angles,
    rope_grid,
)

ATOL = 1e-5



def reference_attention(q, k, v, *, causal=True, window=None, q_pos=None, k_pos=None):
    """softmax(Q K^T / sqrt(D) + mask) V, one head at a time; query head h reads key/value head
    h // (H / G). Positions default to the last T of 0..S-1 for queries and 0..S-1 for keys."""
    b, n_head, t, d = q.shape
    n_kv, s = k.shape[1], k.shape[2]
    q_pos = torch.arange(s - t, s) if q_pos is None else q_pos
    k_pos = torch.arange(s) if k_pos is None else k_pos
    mask = torch.zeros(t, s)
    for i in range(t):
        for j in range(s):
            back = int(q_pos[i]) - int(k_pos[j])
            if (causal and back < 0) or (window is not None and back >= window):
                mask[i, j] = float("-inf")
    out = torch.empty_like(q)
    for h in range(n_head):
        g = h // (n_head // n_kv)
        scores = q[:, h] @ k[:, g].transpose(-1, -2) / math.sqrt(d) + mask      # (B, T, S)
        out[:, h] = scores.softmax(dim=-1) @ v[:, g]
    return out


def qkv(b=2, h=4, g=4, t=7, s=None, d=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    s = t if s is None else s
    q = torch.randn(b, h, t, d, generator=gen) * 2
    k = torch.randn(b, g, s, d, generator=gen) * 2
    v = torch.randn(b, g, s, d, generator=gen)
    return q, k, v


# -- attention ----------------------------------------------------------------------------------------

def test_rmsnorm_matches_formula():
    torch.manual_seed(0)
    norm = RMSNorm(16)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16))
    x = torch.randn(3, 5, 16) * 4
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight
    torch.testing.assert_close(norm(x), expected, atol=ATOL, rtol=1e-5)


def test_attention_mha_equals_reference_causal_and_not():
    q, k, v = qkv(g=4)
    torch.testing.assert_close(attention(q, k, v), reference_attention(q, k, v), atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(attention(q, k, v, causal=False), reference_attention(q, k, v, causal=False),
                               atol=ATOL, rtol=1e-5)
    # the causal mask really matters here, so the comparison above has teeth
    assert not torch.allclose(reference_attention(q, k, v), reference_attention(q, k, v, causal=False), atol=1e-3)


@pytest.mark.parametrize("n_kv", [2, 1])
def test_attention_gqa_and_mqa_equal_reference_with_repeated_heads(n_kv):
    q, k, v = qkv(h=4, g=n_kv, seed=n_kv)
    out = attention(q, k, v)
    torch.testing.assert_close(out, reference_attention(q, k, v), atol=ATOL, rtol=1e-5)
    # repeating each key/value head by hand turns GQA into plain multi-head attention
    rep = 4 // n_kv
    k_mha = torch.stack([k[:, h // rep] for h in range(4)], dim=1)
    v_mha = torch.stack([v[:, h // rep] for h in range(4)], dim=1)
    torch.testing.assert_close(out, attention(q, k_mha, v_mha), atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(out, reference_attention(q, k_mha, v_mha), atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [{}, {"causal": False}, {"window": 3}])
def test_attention_in_bf16_on_cpu_matches_the_float32_reference(kwargs):
    """bf16 on CPU takes the written-out path (not SDPA's kernels): same answer to bf16 rounding, and
    gradients reach q, k and v."""
    q, k, v = qkv(h=4, g=2, t=9, d=16, seed=5)
    expected = reference_attention(q, k, v, **kwargs)
    q16, k16, v16 = (x.bfloat16().requires_grad_() for x in (q, k, v))
    out = attention(q16, k16, v16, **kwargs)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=0.05, rtol=0.05)
    out.float().pow(2).sum().backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in (q16, k16, v16))


def test_attention_rejects_uneven_head_groups():
    q, k, v = qkv(h=4, g=3)
    with pytest.raises(ValueError, match="evenly"):
        attention(q, k, v)


@pytest.mark.parametrize("window", [1, 3, 5])
def test_attention_window_equals_reference(window):
    q, k, v = qkv(t=9, seed=window)
    out = attention(q, k, v, window=window)
    torch.testing.assert_close(out, reference_attention(q, k, v, window=window), atol=ATOL, rtol=1e-5)
    assert not torch.allclose(out, attention(q, k, v), atol=1e-3)
    if window == 1:  # each token sees only itself: the output is its own value (repeated per head)
        torch.testing.assert_close(out, v, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("window", [9, 10, 100])
def test_attention_window_at_least_sequence_equals_full_causal(window):
    q, k, v = qkv(t=9, g=2, seed=3)
    torch.testing.assert_close(attention(q, k, v, window=window), attention(q, k, v), atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(attention(q, k, v, window=window), reference_attention(q, k, v),
                               atol=ATOL, rtol=1e-5)


def test_attention_with_cached_positions_equals_reference():
    # 3 new queries at positions 10..12 against 13 keys, keys given out of order (as a ring would hold them)
    q, k, v = qkv(t=3, s=13, g=2, seed=5)
    q_pos = torch.arange(10, 13)
    perm = torch.randperm(13, generator=torch.Generator().manual_seed(1))
    k_pos = perm
    for window in (None, 4):
        out = attention(q, k, v, window=window, q_pos=q_pos, k_pos=k_pos)
        ref = reference_attention(q, k, v, window=window, q_pos=q_pos, k_pos=k_pos)
        torch.testing.assert_close(out, ref, atol=ATOL, rtol=1e-5)
    # explicit positions 0..T-1 take the masked path and must agree with SDPA's own causal fast path
    q, k, v = qkv(t=6, seed=6)
    pos = torch.arange(6)
    torch.testing.assert_close(attention(q, k, v, q_pos=pos, k_pos=pos), attention(q, k, v), atol=ATOL, rtol=1e-5)
    # only the last T positions of the keys are queries by default: the tail of a full causal pass
    q, k, v = qkv(t=8, seed=7)
    torch.testing.assert_close(attention(q[:, :, 5:], k, v), attention(q, k, v)[:, :, 5:], atol=ATOL, rtol=1e-5)


# -- rotary positions ---------------------------------------------------------------------------------

def rope_score(q, k, q_angles, k_angles):
    """q (D,), k (D,) rotated at their own angles, then dotted."""
    qr = apply_rope(q[None, None, None, :], q_angles[None])[0, 0, 0]
    kr = apply_rope(k[None, None, None, :], k_angles[None])[0, 0, 0]
    return (qr * kr).sum()


def test_apply_rope_is_a_rotation():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 16)
    angles = rope_angles(torch.arange(5), 16)
    y = apply_rope(x, angles)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(y[:, :, 0], x[:, :, 0])              # position 0: no rotation
    assert not torch.allclose(y[:, :, 1:], x[:, :, 1:], atol=1e-3)
    torch.testing.assert_close(apply_rope(y, -angles), x, atol=ATOL, rtol=1e-5)


def test_rope_angles_1d_ladder():
    angles = rope_angles(torch.tensor([0, 1, 7]), 8, theta=100.0)
    inv_freq = 100.0 ** (-torch.arange(4) / 4)
    torch.testing.assert_close(angles, torch.tensor([0.0, 1.0, 7.0])[:, None] * inv_freq)
    with pytest.raises(ValueError, match="even"):
        rope_angles(torch.arange(3), 7)


@pytest.mark.parametrize("m,n,shift", [(0, 0, 5), (3, 1, 7), (2, 9, 40), (17, 4, 123)])
def test_rope_score_depends_only_on_relative_position(m, n, shift):
    gen = torch.Generator().manual_seed(m * 31 + n)
    q, k = torch.randn(32, generator=gen), torch.randn(32, generator=gen)
    pos = torch.tensor([m, n, m + shift, n + shift])
    a = rope_angles(pos, 32)
    before = rope_score(q, k, a[0], a[1])
    after = rope_score(q, k, a[2], a[3])
    torch.testing.assert_close(before, after, atol=1e-4, rtol=1e-5)
    # and it does depend on the distance
    other = rope_score(q, k, a[0], rope_angles(torch.tensor([n + 1]), 32)[0])
    assert not torch.allclose(before, other, atol=1e-3)


def test_rope_grid_order():
    grid = rope_grid(2, 3)
    assert grid.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    assert rope_grid(2, 3, 4).shape == (24, 3)
    assert rope_grid(2, 3, 4)[5].tolist() == [0, 1, 1]


@pytest.mark.parametrize("shape,shift", [((3, 4), (2, 5)), ((2, 3, 3), (1, 4, 2))])
def test_rope_grid_shift_leaves_scores_unchanged(shape, shift):
    torch.manual_seed(len(shape))
    d = 24
    pos = rope_grid(*shape)
    n = pos.shape[0]
    q = torch.randn(1, 1, n, d)
    k = torch.randn(1, 1, n, d)

    def scores(positions):
        a = rope_angles(positions, d)
        return apply_rope(q, a) @ apply_rope(k, a).transpose(-1, -2)        # (1, 1, N, N)

    base = scores(pos)
    torch.testing.assert_close(scores(pos + torch.tensor(shift)), base, atol=1e-4, rtol=1e-5)
    # shifting a single token (not the whole grid) changes its scores
    moved = pos.clone()
    moved[0] += torch.tensor(shift)
    assert not torch.allclose(scores(moved), base, atol=1e-3)


@pytest.mark.parametrize("head_dim", [16, 20])
def test_rope_angles_2d_split_pairs_between_axes(head_dim):
    pairs = head_dim // 2
    half = pairs // 2 + pairs % 2                                           # axis 0 gets the odd pair
    rows = torch.tensor([[0, 3], [5, 3], [9, 3]])                           # axis 0 varies, axis 1 fixed
    cols = torch.tensor([[4, 0], [4, 5], [4, 9]])                           # axis 1 varies, axis 0 fixed
    a_rows, a_cols = rope_angles(rows, head_dim), rope_angles(cols, head_dim)
    assert a_rows.shape == (3, pairs)
    # first chunk depends only on axis 0, second only on axis 1
    assert torch.equal(a_cols[:, :half], a_cols[:1, :half].expand(3, -1))
    assert not torch.allclose(a_rows[:, :half], a_rows[:1, :half].expand(3, -1))
    assert torch.equal(a_rows[:, half:], a_rows[:1, half:].expand(3, -1))
    assert not torch.allclose(a_cols[:, half:], a_cols[:1, half:].expand(3, -1))
    # each axis has its own full frequency ladder: each chunk is a 1D rope of its own size
    torch.testing.assert_close(a_rows[:, :half], rope_angles(rows[:, 0], 2 * half))
    torch.testing.assert_close(a_cols[:, half:], rope_angles(cols[:, 1], 2 * (pairs - half)))


def test_rope_angles_3d_splits_three_ways():
    pos = torch.tensor([[0, 0, 0], [0, 0, 7], [0, 7, 0], [7, 0, 0]])
    a = rope_angles(pos, 24)                                                # 12 pairs: 4 per axis
    assert a.shape == (4, 12)
    assert a[0].abs().max() == 0
    assert torch.count_nonzero(a[1, :8]) == 0 and torch.count_nonzero(a[1, 8:]) == 4
    assert torch.count_nonzero(a[2, :4]) == 0 and torch.count_nonzero(a[2, 8:]) == 0
    assert torch.count_nonzero(a[2, 4:8]) == 4
    assert torch.count_nonzero(a[3, 4:]) == 0 and torch.count_nonzero(a[3, :4]) == 4


# -- feed-forward and mixture of experts --------------------------------------------------------------

def test_one_expert_top1_moe_equals_dense_swiglu():
    torch.manual_seed(0)
    dense = SwiGLU(16, 40)
    moe = MoE(16, 40, n_experts=1, top_k=1)
    with torch.no_grad():
        moe.w1[0].copy_(dense.w1.weight.T)                                  # (C, F)
        moe.w3[0].copy_(dense.w3.weight.T)
        moe.w2[0].copy_(dense.w2.weight.T)                                  # (F, C)
        moe.router.weight.normal_()
    x = torch.randn(3, 5, 16)
    expected = dense(x)
    torch.testing.assert_close(moe(x), expected, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(moe.forward_loop(x), expected, atol=ATOL, rtol=1e-5)


def _biased_moe(n_experts, top_k, shared, dead_expert=None, seed=0):
    torch.manual_seed(seed)
    moe = MoE(12, 20, n_experts=n_experts, top_k=top_k, shared_expert=shared)
    with torch.no_grad():
        moe.router.weight.normal_()
        if dead_expert is not None:                                         # feature 0 of the inputs is 10,
            moe.router.weight[dead_expert, 0] = -100.0                      # so this expert never scores
    return moe


@pytest.mark.parametrize("n_experts,top_k,shared", [(2, 1, False), (4, 1, True), (4, 2, False), (4, 2, True),
                                                    (8, 2, False), (8, 3, True), (3, 3, False)])
def test_moe_batched_equals_loop(n_experts, top_k, shared):
    moe = _biased_moe(n_experts, top_k, shared, seed=n_experts * 10 + top_k)
    x = torch.randn(2, 9, 12)
    fast = moe(x)
    aux_fast = moe.aux_loss
    slow = moe.forward_loop(x)
    assert fast.shape == x.shape
    torch.testing.assert_close(fast, slow, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(aux_fast, moe.aux_loss)


@pytest.mark.parametrize("top_k", [1, 2])
def test_moe_batched_equals_loop_with_an_idle_expert(top_k):
    moe = _biased_moe(5, top_k, shared=False, dead_expert=2, seed=top_k)
    x = torch.randn(17, 12)
    x[:, 0] = 10.0
    _, experts = moe.route(x)
    assert not (experts == 2).any()                                         # expert 2 gets no tokens
    torch.testing.assert_close(moe(x), moe.forward_loop(x), atol=ATOL, rtol=1e-5)
    # a single token: every expert but k is idle
    torch.testing.assert_close(moe(x[:1]), moe.forward_loop(x[:1]), atol=ATOL, rtol=1e-5)


def test_moe_loop_matches_explicit_weighted_sum():
    moe = _biased_moe(4, 2, shared=True, seed=3)
    x = torch.randn(6, 12)
    probs = moe.router(x).softmax(-1)
    out = moe(x)
    for n in range(6):
        top = probs[n].topk(2)
        w = top.values / top.values.sum()
        expected = sum(w[i] * moe.expert(int(top.indices[i]), x[n:n + 1])[0] for i in range(2))
        assert moe.shared is not None
        expected = expected + moe.shared(x[n:n + 1])[0]
        torch.testing.assert_close(out[n], expected, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("n_experts,top_k", [(4, 1), (4, 2), (8, 2)])
def test_moe_aux_loss_uniform_is_one_and_biased_is_larger(n_experts, top_k):
    torch.manual_seed(0)
    moe = MoE(12, 20, n_experts=n_experts, top_k=top_k)
    x = torch.randn(32, 12)
    with torch.no_grad():
        moe.router.weight.zero_()
    moe(x)
    torch.testing.assert_close(moe.aux_loss, torch.tensor(1.0), atol=1e-6, rtol=0)
    with torch.no_grad():                                                   # every token leans to expert 0
        moe.router.weight.zero_()
        moe.router.weight[0] = 1.0
    x = 0.1 * x + 1.0
    moe(x)
    assert moe.aux_loss > 1.5                                               # E / k when all lean one way
    probs = moe.router(x).softmax(-1)
    assert (probs.argmax(-1) == 0).all()


def test_moe_gradients_reach_experts_and_router_in_batched_path():
    moe = _biased_moe(4, 2, shared=True, seed=4)
    x = torch.randn(2, 8, 12, requires_grad=True)
    (moe(x).pow(2).sum() + moe.aux_loss).backward()
    for name, p in moe.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0
    # the batched gradients equal the loop's
    grads = {name: p.grad.clone() for name, p in moe.named_parameters() if p.grad is not None}
    moe.zero_grad()
    (moe.forward_loop(x).pow(2).sum() + moe.aux_loss).backward()
    for name, p in moe.named_parameters():
        assert p.grad is not None
        torch.testing.assert_close(p.grad, grads[name], atol=1e-4, rtol=1e-4, msg=name)


def test_moe_rejects_bad_top_k():
    with pytest.raises(ValueError, match="top_k"):
        MoE(8, 16, n_experts=2, top_k=3)
    with pytest.raises(ValueError, match="top_k"):
        MoE(8, 16, n_experts=2, top_k=0)
