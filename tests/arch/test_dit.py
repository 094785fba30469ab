"""imagine.arch.dit: patchify round trip (one layout shared with the ViT, arch/patches.py), adaLN-zero makes
every block the identity at initialisation (and not after its gates open), class dropout and guidance, and
flow matching + Euler/Heun sampling moving noise onto a 2D mixture of Gaussians with a tiny MLP velocity
field."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")
nn = torch.nn

from imagine.arch.dit import (DiT, DiTConfig, flow_matching_loss, guided, patchify, sample,  # noqa: E402
                              unpatchify)

TINY = DiTConfig(image_size=16, in_channels=3, patch=4, dim=32, depth=2, n_head=4, n_classes=5)


def test_patchify_round_trip_and_layout():
    x = torch.randn(2, 3, 16, 12)
    tokens = patchify(x, 4)
    assert tokens.shape == (2, 12, 48)                             # (16/4)*(12/4) patches of 4*4*3
    assert torch.equal(unpatchify(tokens, 4, (16, 12), 3), x)
    # token 1 is the patch in row 0, column 1; its first value is pixel (0, 4) of channel 0
    assert tokens[0, 1, 0] == x[0, 0, 0, 4]
    assert tokens[0, 3, 0] == x[0, 0, 4, 0]                        # 3 patches per row: token 3 starts row 1


def test_dit_shares_the_vit_patch_layout():
    from imagine.arch import patches, vit
    assert patchify is patches.patchify is vit.patchify and unpatchify is patches.unpatchify is vit.unpatchify
    torch.manual_seed(0)
    model = DiT(TINY)
    x = torch.randn(2, 3, 16, 16)
    w, b = model.patch_embed.weight.flatten(1), model.patch_embed.bias       # (E, C*P*P), (E,)
    assert torch.allclose(model.embed(x), patchify(x, 4) @ w.T + b + model.pos, atol=1e-5)


def test_adaln_zero_blocks_are_identity_at_init():
    torch.manual_seed(0)
    model = DiT(TINY).eval()
    x = torch.randn(3, 3, 16, 16)
    t, y = torch.rand(3), torch.tensor([0, 2, TINY.n_classes])
    c = model.condition(t, y)
    h = model.embed(x)                                             # (B, T, E) the input path
    for block in model.blocks:
        assert torch.equal(block(h, c), h)
    assert torch.equal(model.trunk(h, c), h)
    assert torch.equal(model(x, t, y), torch.zeros_like(x))        # zero-initialised output layer too
    # training opens the gates: step 1 reaches only the zeroed output layer (nothing flows back through
    # it yet), step 2 the gates; then the blocks are no longer the identity
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        ((model(x, t, y) - x) ** 2).mean().backward()
        opt.step()
        opt.zero_grad()
    c = model.condition(t, y)
    h = model.embed(x)
    assert not torch.allclose(model.trunk(h, c), h, atol=1e-6)


def test_labels_condition_the_output_and_dropout_uses_the_null_class():
    torch.manual_seed(0)
    model = DiT(TINY)
    with torch.no_grad():                                          # open the gates so the condition matters
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    x, t = torch.randn(2, 3, 16, 16), torch.full((2,), 0.5)
    a = model(x, t, torch.tensor([1, 1]))
    b = model(x, t, torch.tensor([3, 3]))
    assert not torch.allclose(a, b)
    y = torch.zeros(10_000, dtype=torch.long)
    dropped = model.drop_labels(y, torch.Generator().manual_seed(0))
    share = (dropped == TINY.n_classes).float().mean().item()
    assert 0.08 < share < 0.12                                     # class_dropout = 0.1
    assert set(dropped.unique().tolist()) == {0, TINY.n_classes}
    # guidance 1 is the conditional model; guidance 0 is the unconditional one
    yy = torch.tensor([1, 3])
    assert torch.allclose(guided(model, yy, 1.0)(x, t), model(x, t, yy))
    assert torch.allclose(guided(model, yy, 0.0)(x, t), model(x, t, torch.full_like(yy, TINY.n_classes)), atol=1e-6)
    v3 = guided(model, yy, 3.0)(x, t)
    cond, uncond = model(x, t, yy), model(x, t, torch.full_like(yy, TINY.n_classes))
    assert torch.allclose(v3, uncond + 3 * (cond - uncond), atol=1e-5)


def test_samplers_integrate_a_known_flow_exactly_or_to_second_order():
    # straight-line flow v = x1 - x0 is constant along each path: Euler is exact in one step
    x0 = torch.randn(5, 2)
    target = torch.tensor([3.0, -1.0])
    assert torch.allclose(sample(lambda x, t: (target - x) / (1 - t[:, None]).clamp_min(1e-6), x0, steps=1), target.expand(5, 2), atol=1e-5)
    # dx/dt = x has x(1) = e * x(0): Heun's error falls as h^2, Euler's as h
    ones = torch.ones(1, 1)
    exact = math.e
    err_euler = abs(sample(lambda x, t: x, ones, steps=10, method="euler").item() - exact)
    err_heun = abs(sample(lambda x, t: x, ones, steps=10, method="heun").item() - exact)
    assert err_heun < err_euler / 5


MEANS = torch.tensor([[2.0, 2.0], [-2.0, 2.0], [2.0, -2.0], [-2.0, -2.0]])


def mixture(n: int, gen: torch.Generator) -> torch.Tensor:
    return MEANS[torch.randint(0, 4, (n,), generator=gen)] + 0.15 * torch.randn(n, 2, generator=gen)


class TinyVelocity(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, 2))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, t[:, None]], dim=-1))


def nearest_mode_distance(x: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, MEANS).min(dim=1).values                 # (N,)


def test_flow_matching_moves_noise_onto_a_2d_mixture():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = TinyVelocity()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(1500):
        loss = flow_matching_loss(model, mixture(256, gen), generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x0 = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    before = nearest_mode_distance(x0).median().item()            # ~1.6 for standard normal noise
    for method, steps in (("euler", 50), ("heun", 20)):
        x1 = sample(model, x0, steps=steps, method=method)
        after = nearest_mode_distance(x1)
        assert after.median().item() < 0.35 < before / 3          # data itself: ~0.18
        assert (after < 0.75).float().mean().item() > 0.9
        # all four modes are populated, none with much less than its quarter
        share = torch.bincount(torch.cdist(x1, MEANS).argmin(dim=1), minlength=4).float() / len(x1)
        assert share.min().item() > 0.15


def test_sampler_arguments_are_checked():
    with pytest.raises(ValueError, match="steps"):
        sample(lambda x, t: x, torch.zeros(1, 2), steps=0)
    with pytest.raises(ValueError, match="method"):
        sample(lambda x, t: x, torch.zeros(1, 2), steps=1, method="rk4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="divisible"):
        DiTConfig(image_size=30, patch=4)
