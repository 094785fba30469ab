"""imagine.arch.vqvae: straight-through gradients reach the encoder, the EMA step moves codes toward the
mean of their assigned vectors, dead codes are re-seeded from encoder outputs, perplexity is in range, a
small VQ-VAE learns to reconstruct, and the optional VQGAN terms train a discriminator."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")
F = torch.nn.functional

from imagine.arch.vqvae import (VQVAE, PatchDiscriminator, VectorQuantizerEMA, VQVAEConfig,  # noqa: E402
                                perplexity, psnr, vqgan_losses)

TINY = VQVAEConfig(hidden=16, n_res=1, downsample=2, codebook_size=16, code_dim=8)


def test_straight_through_passes_the_gradient_unchanged():
    torch.manual_seed(0)
    vq = VectorQuantizerEMA(k=8, dim=4, beta=0.0).eval()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(z)
    g = torch.randn_like(z)
    (out.z_q * g).sum().backward()
    assert z.grad is not None
    assert torch.equal(z.grad, g)                                  # identity backward through the lookup
    # forward is the codebook entry, not z
    flat_codes = vq.embed[out.codes.reshape(-1)]                   # (N, D)
    assert torch.allclose(out.z_q.detach().permute(0, 2, 3, 1).reshape(-1, 4), flat_codes)


def test_straight_through_gradients_reach_the_encoder():
    torch.manual_seed(0)
    model = VQVAE(TINY)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    recon, q = model(x)
    F.mse_loss(recon, x).backward()                                # reconstruction only: no commitment term
    first = model.encoder[0]
    assert isinstance(first, torch.nn.Conv2d) and first.weight.grad is not None
    assert first.weight.grad.abs().sum() > 0
    # without the straight-through trick the reconstruction loss could not reach the encoder at all
    assert not q.codes.requires_grad


def test_commitment_loss_pulls_encoder_outputs_to_codes():
    vq = VectorQuantizerEMA(k=2, dim=2, beta=0.25).eval()
    vq.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    z = torch.tensor([[1.0, -1.0]]).view(1, 2, 1, 1).requires_grad_()
    out = vq(z)
    assert math.isclose(out.commit_loss.item(), 0.25 * 1.0, rel_tol=1e-6)     # beta * mean((z - e0)^2)
    out.commit_loss.backward()
    assert z.grad is not None
    assert torch.allclose(z.grad.view(2), torch.tensor([0.25, -0.25]))       # beta * 2 (z - e) / D


def test_ema_update_moves_codes_toward_their_assigned_vectors():
    gen = torch.Generator().manual_seed(0)
    vq = VectorQuantizerEMA(k=2, dim=2, decay=0.9, dead_fraction=0.0).train()
    vq.initted.fill_(True)                                         # keep the hand-set codebook
    start = torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    vq.embed.copy_(start)
    vq.embed_sum.copy_(start)
    vq.cluster_size.fill_(1.0)
    means = torch.tensor([[1.0, -1.0], [4.0, 6.0]])
    pts = torch.cat([means[0] + 0.1 * torch.randn(64, 2, generator=gen),
                     means[1] + 0.1 * torch.randn(64, 2, generator=gen)])  # (128, 2): 64 near each code
    z = pts.view(1, 128, 2, 1).permute(0, 2, 1, 3).contiguous()    # (1, D=2, 128, 1)
    before = (start - means).norm(dim=1)
    vq(z)
    after1 = (vq.embed - means).norm(dim=1)
    assert (after1 < before).all()
    for _ in range(100):
        out = vq(z)
    target = torch.stack([pts[:64].mean(0), pts[64:].mean(0)])
    assert torch.allclose(vq.embed, target, atol=1e-3)             # the fixed point is the cluster mean
    assert float(out.perplexity) == pytest.approx(2.0, rel=1e-5)


def test_dead_codes_are_restarted_from_encoder_outputs():
    torch.manual_seed(0)
    vq = VectorQuantizerEMA(k=4, dim=2, decay=0.5, dead_fraction=0.5).train()
    vq.initted.fill_(True)
    far = torch.tensor([[0.0, 0.0], [100.0, 100.0], [-100.0, 100.0], [100.0, -100.0]])
    vq.embed.copy_(far)
    vq.embed_sum.copy_(far)
    vq.cluster_size.fill_(1.0)
    pts = torch.randn(256, 2)                                      # all near code 0
    z = pts.t().reshape(1, 2, 256, 1)
    out = vq(z)
    assert out.usage == pytest.approx(0.25)                        # this batch used one code of four
    assert vq.restarts == 3
    # each re-seeded code is now one of the encoder outputs, counted as a uniform share; code 0 stays
    for k in (1, 2, 3):
        assert (pts - vq.embed[k]).norm(dim=1).min() < 1e-6
    assert vq.cluster_size[1:].tolist() == [64.0, 64.0, 64.0]
    assert vq.embed[0].norm() < 0.2
    for _ in range(5):
        out = vq(z)
    assert float(out.usage) == 1.0
    assert float(out.perplexity) > 2.0


def test_perplexity_range():
    k = 16
    assert float(perplexity(torch.zeros(100, dtype=torch.long), k)) == pytest.approx(1.0)
    assert float(perplexity(torch.arange(k).repeat(10), k)) == pytest.approx(k, rel=1e-5)
    torch.manual_seed(0)
    model = VQVAE(TINY).train()
    _, q = model(torch.rand(8, 3, 32, 32) * 2 - 1)
    assert 1.0 <= float(q.perplexity) <= TINY.codebook_size
    assert 0.0 < float(q.usage) <= 1.0


def test_small_vqvae_learns_to_reconstruct():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    # blocky images: a coloured square on black, 4 pixels aligned so that the 8x8 latent grid can hold them
    x = -torch.ones(32, 3, 32, 32)
    for i in range(32):
        c = torch.rand(3, generator=gen) * 2 - 1
        r0, c0 = (int(v) * 4 for v in torch.randint(0, 5, (2,), generator=gen))
        x[i, :, r0:r0 + 12, c0:c0 + 12] = c[:, None, None]
    model = VQVAE(TINY)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(150):
        loss, recon, q = model.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    model.eval()
    with torch.no_grad():
        recon, q = model(x)
        assert loss.item() < 0.2 * first
        assert psnr((recon.clamp(-1, 1) + 1) / 2, (x + 1) / 2).item() > 18.0
        codes = model.encode(x).codes
        assert torch.allclose(model.decode_codes(codes), recon, atol=1e-5)  # tokens alone rebuild the image


def test_vqgan_discriminator_learns_real_from_fake():
    torch.manual_seed(0)
    disc = PatchDiscriminator(hidden=16)
    real = torch.rand(8, 3, 32, 32) * 2 - 1
    fake = torch.zeros(8, 3, 32, 32)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    for _ in range(30):
        g_adv, perceptual, d_loss = vqgan_losses(disc, real, fake)
        opt.zero_grad()
        d_loss.backward()
        opt.step()
    with torch.no_grad():
        assert disc(real).mean() > disc(fake).mean()
    assert perceptual.item() > 0 and vqgan_losses(disc, real, real.clone())[1].item() == 0.0
