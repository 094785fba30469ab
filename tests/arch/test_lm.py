"""imagine.arch.lm, kv_cache and tokenizer: KV-cache decoding equals one full forward (MHA, GQA, MQA,
QK-norm, learned positions, MoE, sliding windows with a ring cache), sampling, generation, safetensors
checkpoints, config validation, losses and the char/byte tokenizers."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")
F = torch.nn.functional

from imagine.arch.kv_cache import KVCache, RingKVCache, make_cache  # noqa: E402
from imagine.arch.layers import MoE  # noqa: E402
from imagine.arch.lm import LM, LMConfig, preset, sample_next  # noqa: E402
from imagine.arch.tokenizer import ByteTokenizer, CharTokenizer, tokenizer_from_dict  # noqa: E402

ATOL = 1e-5
VOCAB = 37



def randomize(model: Any, seed: int = 0, scale: float = 1.5) -> Any:
    """Replace GPT-2's tiny init (which makes attention almost uniform, hiding mask bugs) by weights that
    give unit-scale activations and peaked attention: std scale/sqrt(fan_in) for matrices (fan_in is dim 1
    for nn.Linear (out, in) and for MoE's stacked (E, in, out)), small noise on biases and norm gains."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.dim() >= 2:
                p.copy_(noise * scale / math.sqrt(p.shape[1]))
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(1 + 0.1 * noise)
    return model


def make_lm(seed: int = 0, **overrides: Any) -> LM:
    base: dict[str, Any] = dict(vocab_size=VOCAB, block_size=64, n_layer=2, n_head=4, n_embd=32)
    torch.manual_seed(seed)
    model = randomize(LM(LMConfig(**{**base, **overrides})), seed).eval()
    with torch.no_grad():  # logits of order 1, so that atol 1e-5 is ~10 fp32 ulps rather than ~1
        for p in model.norm.parameters():
            p.mul_(0.3)
    return model


def tokens(batch: int, length: int, seed: int = 1) -> Any:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def decode(model: LM, seq: Any, prefill: int, max_len: int | None = None, chunk: int = 1) -> tuple[Any, list]:
    """Logits of seq computed with caches: a prefill of `prefill` tokens, then `chunk` tokens at a time."""
    caches = model.new_caches(seq.shape[0], max_len or seq.shape[1])
    parts = [model(seq[:, :prefill], caches=caches)[0]] if prefill else []
    for start in range(prefill, seq.shape[1], chunk):
        parts.append(model(seq[:, start:start + chunk], caches=caches)[0])
    return torch.cat(parts, dim=1), caches


# -- KV-cache decoding == one full forward --------------------------------------------------------------

DECODE_CONFIGS = {
    "mha": dict(),
    "gqa": dict(n_kv_head=2),
    "mqa": dict(n_kv_head=1),
    "qk_norm": dict(qk_norm=True, n_kv_head=2),
    "nanogpt": dict(norm="layer", pos="learned", mlp="gelu", bias=True),
    "nanogpt-untied": dict(norm="layer", pos="learned", mlp="gelu", bias=True, tie_embeddings=False),
    "moe": dict(n_experts=4, top_k=2),
    "moe-shared-top1": dict(n_experts=3, top_k=1, shared_expert=True, n_kv_head=1),
    "everything": dict(n_kv_head=2, qk_norm=True, window=6, global_every=2, n_experts=4, top_k=2,
                       shared_expert=True),
}


@pytest.mark.parametrize("name", list(DECODE_CONFIGS))
def test_kv_cache_decoding_equals_full_forward(name):
    model = make_lm(**DECODE_CONFIGS[name])
    seq = tokens(2, 20)
    with torch.no_grad():
        full, _ = model(seq)
        for prefill in (7, 1):
            cached, caches = decode(model, seq, prefill)
            assert all(c.length == 20 for c in caches)
            torch.testing.assert_close(cached, full, atol=ATOL, rtol=0)
        chunked, _ = decode(model, seq, 3, chunk=4)                      # several tokens per step
        torch.testing.assert_close(chunked, full, atol=ATOL, rtol=0)
    # causal: the logits of a prefix don't depend on what follows
    torch.testing.assert_close(model(seq[:, :9])[0], full[:, :9], atol=ATOL, rtol=0)


def test_kv_cache_gqa_stores_only_kv_heads():
    model = make_lm(n_kv_head=2)
    caches = model.new_caches(3, 10)
    assert all(isinstance(c, KVCache) for c in caches)
    assert caches[0].k.shape == (3, 2, 10, 8)


def test_n_kv_head_equal_to_n_head_is_plain_multi_head():
    mha = make_lm()
    same = LM(LMConfig(**{**asdict(mha.cfg), "n_kv_head": 4})).eval()
    same.load_state_dict(mha.state_dict())
    seq = tokens(2, 12)
    with torch.no_grad():
        assert torch.equal(same(seq)[0], mha(seq)[0])


def test_kv_cache_refuses_overflow():
    cache = KVCache(1, 2, 4, max_len=5)
    cache.update(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match="holds 5"):
        cache.update(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))


def test_learned_positions_stop_at_block_size():
    model = make_lm(pos="learned", block_size=8)
    with pytest.raises(ValueError, match="block_size"):
        model(tokens(1, 9))
    caches = model.new_caches(1, 12)
    model(tokens(1, 8), caches=caches)
    with pytest.raises(ValueError, match="block_size"):
        model(tokens(1, 1), caches=caches)


# -- sliding windows --------------------------------------------------------------------------------------

@pytest.mark.parametrize("window", [20, 21, 64])
def test_lm_window_at_least_sequence_equals_full_causal(window):
    plain = make_lm(n_kv_head=2)
    windowed = LM(LMConfig(**{**asdict(plain.cfg), "window": window})).eval()
    windowed.load_state_dict(plain.state_dict())
    seq = tokens(2, 20)
    with torch.no_grad():
        torch.testing.assert_close(windowed(seq)[0], plain(seq)[0], atol=ATOL, rtol=0)


def test_lm_short_window_changes_only_positions_past_it():
    plain = make_lm()
    windowed = LM(LMConfig(**{**asdict(plain.cfg), "window": 8})).eval()
    windowed.load_state_dict(plain.state_dict())
    seq = tokens(2, 20)
    with torch.no_grad():
        a, b = plain(seq)[0], windowed(seq)[0]
    torch.testing.assert_close(b[:, :8], a[:, :8], atol=ATOL, rtol=0)   # the window covers all of them
    assert (b[:, 8:] - a[:, 8:]).abs().amax(dim=-1).min() > 1e-3        # every later position sees less


@pytest.mark.parametrize("global_every", [0, 2])
def test_ring_cache_decoding_equals_windowed_full_forward(global_every):
    model = make_lm(window=8, global_every=global_every, n_kv_head=2)
    seq = tokens(2, 40, seed=global_every)
    caches = model.new_caches(2, 40)
    kinds = [type(c) for c in caches]
    if global_every:
        assert kinds == [RingKVCache, KVCache]                          # layer 2 attends globally
    else:
        assert kinds == [RingKVCache, RingKVCache]
    assert caches[0].k.shape[2] == 8                                    # the ring holds the window only
    with torch.no_grad():
        full, _ = model(seq)
        for prefill, chunk in [(1, 1), (13, 1), (20, 1), (3, 5), (0, 11)]:  # prefills longer than the window
            cached, caches = decode(model, seq, prefill, max_len=40, chunk=chunk)
            assert type(caches[0]) is RingKVCache
            torch.testing.assert_close(cached, full, atol=ATOL, rtol=0, msg=f"prefill {prefill} chunk {chunk}")
            ring = caches[0]
            assert sorted(ring.pos.tolist()) == list(range(32, 40))     # exactly the newest window
            assert ring.length == 40


def test_ring_cache_beats_a_truncating_reference():
    """A ring that forgot the positions before the current call would still agree for one-token decoding
    from position 0; a prefill longer than the window must see its own early tokens through the mask."""
    ring = RingKVCache(1, 1, 2, window=3)
    k = torch.arange(5.0).view(1, 1, 5, 1).expand(1, 1, 5, 2)
    keys, values, pos = ring.update(k, k.clone())
    assert pos.tolist() == [0, 1, 2, 3, 4] and keys[0, 0, :, 0].tolist() == [0, 1, 2, 3, 4]
    keys, values, pos = ring.update(k[:, :, :1] + 10, k[:, :, :1] + 10)
    assert sorted(zip(pos.tolist(), keys[0, 0, :, 0].tolist())) == [(2, 2.0), (3, 3.0), (4, 4.0), (5, 10.0)]
    assert sorted(ring.pos.tolist()) == [3, 4, 5]


def test_make_cache_picks_a_ring_only_for_short_windows():
    assert type(make_cache(1, 1, 2, max_len=10, window=None)) is KVCache
    assert type(make_cache(1, 1, 2, max_len=10, window=10)) is KVCache
    assert type(make_cache(1, 1, 2, max_len=10, window=4)) is RingKVCache


# -- sampling and generation ------------------------------------------------------------------------------

def test_sample_next_greedy_and_filters():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50, generator=gen)
    best = logits.argmax(dim=-1)
    assert torch.equal(sample_next(logits, temperature=0), best)
    assert torch.equal(sample_next(logits, temperature=-1.0), best)
    for temperature in (0.5, 1.0, 5.0, 100.0):
        for _ in range(5):
            assert torch.equal(sample_next(logits, temperature=temperature, top_k=1, generator=gen), best)
            assert torch.equal(sample_next(logits, temperature=temperature, top_p=1e-6, generator=gen), best)
    # top_k=3 at a high temperature only ever picks among the three best
    top3 = logits.topk(3, dim=-1).indices
    seen = torch.stack([sample_next(logits, temperature=50.0, top_k=3, generator=gen) for _ in range(200)])
    assert (seen[..., None] == top3).any(-1).all()
    assert all(len(set(seen[:, row].tolist())) == 3 for row in range(4))
    # top_p keeps the smallest set reaching p: here the top two tokens hold 0.5 + 0.3
    probs = torch.tensor([[0.5, 0.3, 0.1, 0.1]])
    picks = {int(sample_next(probs.log(), top_p=0.7, generator=gen)) for _ in range(300)}
    assert picks == {0, 1}
    picks = {int(sample_next(probs.log(), top_p=0.45, generator=gen)) for _ in range(100)}
    assert picks == {0}


def test_sample_next_unfiltered_follows_the_distribution():
    gen = torch.Generator().manual_seed(1)
    probs = torch.tensor([[0.7, 0.2, 0.1]])
    draws = torch.stack([sample_next(probs.log(), generator=gen) for _ in range(2000)])
    freq = torch.bincount(draws.flatten(), minlength=3).float() / 2000
    torch.testing.assert_close(freq, probs[0], atol=0.04, rtol=0)


def test_generation_is_reproducible_with_a_seeded_generator():
    model = make_lm(n_kv_head=2)
    prompt = tokens(2, 5)

    def run(seed: int) -> Any:
        return model.generate(prompt, 12, temperature=1.0, top_k=20, generator=torch.Generator().manual_seed(seed))

    a = run(7)
    assert a.shape == (2, 17) and torch.equal(a[:, :5], prompt)
    assert torch.equal(a, run(7))
    assert not torch.equal(a, run(8))
    assert torch.equal(model.generate(prompt, 0), prompt)


@pytest.mark.parametrize("overrides", [dict(pos="learned", norm="layer", mlp="gelu", bias=True),
                                       dict(n_kv_head=1, window=6)])
def test_greedy_generation_past_block_size_equals_uncached_argmax(overrides):
    """stream() decodes with caches and, at block_size, restarts from the newest half block; the same
    policy without any cache (a full forward per token) must pick the same tokens."""
    model = make_lm(block_size=16, **overrides)
    prompt = tokens(2, 5, seed=3)
    got = model.generate(prompt, 30, temperature=0)
    limit = model.cfg.block_size
    context, expected = prompt[:, -limit:], [prompt]
    with torch.no_grad():
        for _ in range(30):
            nxt = model(context)[0][:, -1].argmax(dim=-1)
            expected.append(nxt[:, None])
            context = torch.cat([context, nxt[:, None]], dim=1)
            if context.shape[1] - 1 >= limit:
                context = context[:, -(limit // 2):]
    assert torch.equal(got, torch.cat(expected, dim=1))
    assert got.shape == (2, 35)


def test_stream_yields_one_token_per_step():
    model = make_lm()
    steps = list(model.stream(tokens(3, 4), 6, temperature=0))
    assert len(steps) == 6 and all(s.shape == (3,) for s in steps)


# -- checkpoints ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [dict(), dict(tie_embeddings=False, pos="learned", norm="layer", bias=True),
                                       dict(n_experts=4, shared_expert=True, n_kv_head=2, window=4)])
def test_save_load_round_trip(tmp_path: Path, overrides):
    model = make_lm(**overrides)
    seq = tokens(2, 10)
    folder = model.save(tmp_path / "ckpt", meta={"tokenizer": {"kind": "byte"}, "steps": 3})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert not any(p.suffix in {".pt", ".pth", ".pkl", ".bin"} for p in tmp_path.rglob("*"))
    assert not (folder / "model.safetensors").read_bytes().startswith(b"\x80")  # not a pickle
    info = json.loads((folder / "config.json").read_text())
    assert info["arch"] == "lm" and info["config"] == asdict(model.cfg)
    loaded, meta = LM.load(folder)
    assert meta == {"arch": "lm", "tokenizer": {"kind": "byte"}, "steps": 3}
    assert loaded.cfg == model.cfg and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(seq)[0], model(seq)[0])
    if model.cfg.tie_embeddings:
        assert loaded.head.weight.data_ptr() == loaded.tok_emb.weight.data_ptr()
    else:
        assert loaded.head.weight.data_ptr() != loaded.tok_emb.weight.data_ptr()


def test_load_needs_a_checkpoint_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        LM.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"arch": "lm", "config": {}}))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        LM.load(tmp_path)
    model = make_lm()
    folder = model.save(tmp_path / "other")
    info = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**info, "arch": "vit"}))
    with pytest.raises(ValueError, match="vit"):
        LM.load(folder)


def test_tied_embeddings_share_storage():
    tied, untied = make_lm(), make_lm(tie_embeddings=False)
    assert tied.head.weight is tied.tok_emb.weight
    assert tied.head.weight.data_ptr() == tied.tok_emb.weight.data_ptr()
    with torch.no_grad():
        tied.tok_emb.weight[0, 0] = 123.0
    assert tied.head.weight[0, 0] == 123.0
    assert untied.head.weight.data_ptr() != untied.tok_emb.weight.data_ptr()
    assert untied.num_params() == tied.num_params() + VOCAB * 32


# -- config -----------------------------------------------------------------------------------------------

def test_config_validation():
    with pytest.raises(ValueError, match="n_embd .30. must be divisible by n_head .4."):
        LMConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="n_head .4. must be divisible by n_kv_head .3."):
        LMConfig(n_embd=32, n_head=4, n_kv_head=3)
    with pytest.raises(ValueError, match="n_kv_head"):
        LMConfig(n_embd=32, n_head=4, n_kv_head=8)
    with pytest.raises(ValueError, match="unknown LMConfig fields .'n_heads'."):
        LMConfig.from_dict({"n_heads": 4})
    cfg = LMConfig(n_embd=48, n_head=6, n_kv_head=2, window=16, global_every=3)
    assert LMConfig.from_dict(json.loads(json.dumps(asdict(cfg)))) == cfg
    assert (cfg.kv_heads, cfg.head_dim) == (2, 8)
    assert [cfg.layer_window(i) for i in range(4)] == [16, 16, None, 16]
    assert LMConfig().kv_heads == LMConfig().n_head


def test_presets():
    cfg = preset("moe-tiny", n_layer=1)
    assert cfg.n_layer == 1 and cfg.n_experts == 4 and cfg.window == 64
    with pytest.raises(ValueError, match="nope"):
        preset("nope")


# -- losses -----------------------------------------------------------------------------------------------

def test_plain_loss_is_cross_entropy_and_skips_ignored_targets():
    model = make_lm().train()
    seq, targets = tokens(2, 12), tokens(2, 12, seed=9)
    logits, loss = model(seq, targets)
    expected = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
    torch.testing.assert_close(loss, expected)
    masked = targets.clone()
    masked[:, :6] = -1
    _, loss_masked = model(seq, masked)
    torch.testing.assert_close(loss_masked, F.cross_entropy(logits[:, 6:].reshape(-1, VOCAB),
                                                            targets[:, 6:].reshape(-1)))


def test_z_loss_raises_the_loss_by_its_term():
    model = make_lm().train()
    z_model = LM(LMConfig(**{**asdict(model.cfg), "z_loss": 0.1})).train()
    z_model.load_state_dict(model.state_dict())
    seq, targets = tokens(2, 12), tokens(2, 12, seed=9)
    logits, loss = model(seq, targets)
    z_logits, z_loss = z_model(seq, targets)
    assert torch.equal(logits, z_logits)
    assert loss is not None and z_loss is not None
    assert z_loss > loss
    term = 0.1 * logits.reshape(-1, VOCAB).logsumexp(-1).pow(2).mean()
    torch.testing.assert_close(z_loss - loss, term)


def test_moe_aux_loss_is_added_and_trains_the_router():
    model = make_lm(n_experts=4, top_k=2).train()
    seq, targets = tokens(2, 12), tokens(2, 12, seed=9)
    logits, loss = model(seq, targets)
    assert loss is not None
    ce = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
    aux = [blk.mlp.aux_loss for blk in model.blocks if isinstance(blk.mlp, MoE)]
    assert len(aux) == 2 and all(a >= 1.0 - 1e-6 for a in aux)         # Switch loss is at least 1
    assert loss > ce
    torch.testing.assert_close(loss, ce + model.cfg.aux_loss_weight * sum(aux))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# -- tokenizers -------------------------------------------------------------------------------------------

def test_char_tokenizer_round_trip_and_unknown_chars():
    tok = CharTokenizer.from_text("hello, world\n")
    assert tok.chars == "\n ,dehlorw" and tok.vocab_size == 10
    ids = tok.encode("hello world")
    assert ids == [tok.chars.index(c) for c in "hello world"]
    assert tok.decode(ids) == "hello world"
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("hello z")
    with pytest.raises(ValueError, match="'!Q'"):
        tok.encode("Q! hello")
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert isinstance(again, CharTokenizer) and again.chars == tok.chars
    assert again.encode("world") == tok.encode("world")


def test_byte_tokenizer_round_trip():
    tok = ByteTokenizer.from_text("ignored")
    text = "héllo ✓ 🙂\n"
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8")) and max(ids) < tok.vocab_size == 256
    assert tok.decode(ids) == text
    assert tok.decode(tok.encode("✓")[:2]) == "\ufffd"                   # a cut character is replaced
    assert isinstance(tokenizer_from_dict(tok.to_dict()), ByteTokenizer)
    with pytest.raises(ValueError, match="unknown tokenizer kind 'bpe'"):
        tokenizer_from_dict({"kind": "bpe"})


def test_fused_qkv_computes_what_the_split_projections_compute() -> None:
    """nanoGPT's one c_attn matmul and the lab's q + kv projections are the same layer, laid out twice."""
    import torch

    from imagine.arch.lm import LM, LMConfig

    torch.manual_seed(0)
    for kv in (None, 2):  # multi-head and grouped-query
        split = LM(LMConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_kv_head=kv, n_embd=32))
        fused = LM(LMConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_kv_head=kv, n_embd=32,
                            fused_qkv=True))
        state = split.state_dict()
        for i in range(2):
            p = f"blocks.{i}.attn."
            state[p + "qkv_proj.weight"] = torch.cat([state.pop(p + "q_proj.weight"), state.pop(p + "kv_proj.weight")])
        fused.load_state_dict(state)
        ids = torch.randint(0, 50, (3, 16))
        assert torch.allclose(split(ids)[0], fused(ids)[0], atol=1e-5)
        assert sum(p.numel() for p in fused.parameters()) == sum(p.numel() for p in split.parameters())
