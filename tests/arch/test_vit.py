"""imagine.arch.vit against plainer references: patchify/unpatchify invert each other and the Conv2d patch
embedding is a Linear on patchify's vectors; the factorised space-time block equals an einsum written out
by hand; the mel filterbank and log-mel front end put a tone in its band; shapes of all three models; a
checkpoint round trip; and a few seconds of training that clearly beats chance on the shapes task."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

from imagine.arch import data  # noqa: E402
from imagine.arch import vit as V  # noqa: E402

ATOL = 1e-5


@pytest.mark.parametrize("patch", [4, (2, 8)])
def test_patchify_unpatchify_round_trip(patch: int | tuple[int, int]) -> None:
    x = torch.randn(2, 3, 16, 32)
    tokens = V.patchify(x, patch)
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    assert tokens.shape == (2, (16 // ph) * (32 // pw), 3 * ph * pw)
    assert torch.equal(V.unpatchify(tokens, patch, (16, 32), 3), x)
    # the second patch of the first row is the pixel block [0:ph, pw:2pw], laid out (C, ph, pw)
    assert torch.equal(tokens[0, 1], x[0, :, :ph, pw:2 * pw].reshape(-1))
    with pytest.raises(ValueError, match="divide"):
        V.patchify(torch.randn(1, 3, 15, 16), 4)


def test_conv_patch_embedding_is_a_linear_map_of_patchify() -> None:
    torch.manual_seed(0)
    model = V.ViT(V.ViTConfig(image_size=(16, 16), patch_size=(4, 4), n_embd=32, n_head=4))
    x = torch.randn(3, 3, 16, 16)
    conv = model.patch_embed(x).flatten(2).transpose(1, 2)                    # (B, N, E)
    w, b = model.patch_embed.weight.flatten(1), model.patch_embed.bias       # (E, C*p*p), (E,)
    assert torch.allclose(conv, V.patchify(x, 4) @ w.T + b, atol=ATOL)


def _mha_reference(x, attn: V.SelfAttention):
    """softmax(q k^T / sqrt(D)) v per head, written with einsum; x (S, L, E) for S independent sequences."""
    s, length, e = x.shape
    h = attn.n_head
    d = e // h
    qkv = torch.einsum("sle,fe->slf", x, attn.qkv.weight) + attn.qkv.bias    # (S, L, 3E)
    q, k, v = (qkv[..., i * e:(i + 1) * e].reshape(s, length, h, d) for i in range(3))
    scores = torch.einsum("sihd,sjhd->shij", q, k) / math.sqrt(d)             # (S, h, L, L)
    y = torch.einsum("shij,sjhd->sihd", scores.softmax(-1), v).reshape(s, length, e)
    return torch.einsum("sle,fe->slf", y, attn.proj.weight) + attn.proj.bias


def test_factorised_block_matches_einsum_reference() -> None:
    torch.manual_seed(0)
    cfg = V.VideoViTConfig(image_size=(8, 8), patch_size=(4, 4), frames=6, tubelet=1, n_embd=16, n_head=2)
    block = V.FactorisedBlock(cfg).eval()
    b, t, n, e = 2, 6, 4, 16
    x = torch.randn(b, t, n, e)
    ref = x.clone()
    # spatial: each (clip, frame) is one sequence over its n patches
    ref = ref + _mha_reference(block.norm_s(ref).reshape(b * t, n, e), block.spatial).reshape(b, t, n, e)
    # temporal: each (clip, patch position) is one sequence over the t frames
    across = block.norm_t(ref).permute(0, 2, 1, 3).reshape(b * n, t, e)
    ref = ref + _mha_reference(across, block.temporal).reshape(b, n, t, e).permute(0, 2, 1, 3)
    ref = ref + block.mlp(block.norm_m(ref))
    assert torch.allclose(block(x), ref, atol=ATOL)
    # one block reaches every token in two hops: the poked frame (space), then each of its positions' frames (time)
    y = x.clone()
    y[:, 3, 1] += torch.randn(e)                                              # poke frame 3, patch 1
    moved = (block(y) - block(x)).abs().sum(-1) > 1e-6                       # (B, T, N)
    assert moved.all()


def test_mel_filterbank_and_log_mel_find_the_tone() -> None:
    fb = V.mel_filterbank(16, 256, 8000)
    assert fb.shape == (16, 129) and float(fb.max()) <= 1.0 + 1e-6
    centres = fb.argmax(dim=1)
    assert bool((centres[1:] > centres[:-1]).all())                          # bands rise in pitch
    sr = 8000
    tone = torch.sin(2 * math.pi * 1000.0 * torch.arange(4000) / sr)[None]  # (1, L)
    logmel = V.LogMel(sr, 256, 64, 16)(tone)                                  # (1, M, F)
    assert logmel.shape == (1, 16, 4000 // 64 + 1)
    band = int(logmel[0].mean(-1).argmax())
    assert float(fb[band, round(1000 / (sr / 256))]) > 0.5                    # the loudest band covers 1 kHz


def test_model_shapes_and_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    for pool in ("cls", "mean"):
        vit = V.ViT(V.ViTConfig(image_size=(16, 16), patch_size=(4, 4), n_layer=1, n_embd=16, n_head=2,
                                n_classes=5, pool=pool, mlp="swiglu", norm="rms"))
        assert vit(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    video = V.VideoViT(V.VideoViTConfig(image_size=(16, 16), patch_size=(4, 4), frames=8, tubelet=2,
                                        n_layer=1, n_embd=16, n_head=2, n_classes=4))
    assert video.tokens(torch.randn(2, 3, 8, 16, 16)).shape == (2, 4, 16, 16)
    assert video(torch.randn(2, 3, 8, 16, 16)).shape == (2, 4)
    audio = V.AudioViT(V.AudioViTConfig(n_samples=4000, n_layer=1, n_embd=16, n_head=2, n_classes=6))
    assert audio.cfg.image_size == (32, 64)                                   # 63 frames padded to 8 | 64
    wave = torch.randn(2, 4000)
    assert audio(wave).shape == (2, 6)
    V.save(audio, tmp_path / "a", meta={"labels": ["x"] * 6})
    again, meta = V.load(tmp_path / "a")
    assert meta == {"labels": ["x"] * 6} and torch.allclose(again(wave), audio.eval()(wave), atol=ATOL)
    with pytest.raises(ValueError, match="tubelet"):
        V.VideoViTConfig(frames=8, tubelet=3)


def test_short_training_beats_chance_on_shapes() -> None:
    torch.manual_seed(0)
    train, held_out = data.shapes(2000, seed=0, size=32), data.shapes(300, seed=1, size=32)
    model = V.ViT(V.ViTConfig(image_size=(32, 32), patch_size=(8, 8), n_layer=2, n_head=2, n_embd=32,
                              pool="mean"))
    losses = V.train_classifier(model, train.images, train.labels, steps=250, batch=32, lr=3e-3, seed=0)
    assert sum(losses[-20:]) / 20 < 0.8 * math.log(3)                         # chance loss is ln 3
    assert V.accuracy(model, held_out.images, held_out.labels) >= 0.6         # chance is 1/3


def test_audio_vit_with_whole_spectrum_tokens_for_the_contours_task() -> None:
    """bench/lab_vit.py's contour model: each token is 2 frames x all 64 mel bands, so attention runs over time."""
    torch.manual_seed(0)
    cfg = V.AudioViTConfig(n_samples=8000, n_classes=len(data.CONTOURS), n_layer=1, n_head=2, n_embd=16,
                           hop=128, n_mels=64, patch_size=(64, 2))
    assert cfg.image_size == (64, 64) and cfg.grid == (1, 32)                # 63 frames padded to 64: 32 tokens
    model = V.AudioViT(cfg)
    assert model(data.contours(3, seed=0).waves).shape == (3, 4)
