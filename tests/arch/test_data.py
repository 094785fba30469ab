"""imagine.arch.data: the synthetic corpora are a pure function of the seed, labels match what is drawn,
and a clip's motion (not any single frame) carries its direction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

from imagine.arch import data  # noqa: E402

BAG_TOL = 0.05                                                                # log-mel units (z-scored)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = data.shapes(64, seed=3), data.shapes(64, seed=3), data.shapes(64, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.shape, b.shape) and a.captions == b.captions
    assert not torch.equal(a.images, c.images)
    assert torch.equal(data.motion_clips(16, 5).clips, data.motion_clips(16, 5).clips)
    assert torch.equal(data.tones(16, 5).waves, data.tones(16, 5).waves)
    assert data.two_shapes(8, 1).captions == data.two_shapes(8, 1).captions


def test_images_show_their_colour_and_classes_are_balanced() -> None:
    d = data.shapes(300, seed=0, size=32)
    assert d.images.shape == (300, 3, 32, 32) and d.images.dtype == torch.float32
    assert 0.0 <= float(d.images.min()) and float(d.images.max()) <= 1.0
    counts = torch.bincount(d.labels, minlength=len(data.SHAPES))
    assert int(counts.min()) > 60                                            # ~100 each of 3
    for i in range(20):                                                       # the brightest pixel is the colour
        lit = d.images[i].reshape(3, -1)[:, d.images[i].sum(0).reshape(-1).argmax()]
        assert torch.allclose(lit, torch.from_numpy(data.COLOUR_RGB[int(d.colour[i])]))
        assert d.captions[i] == f"a {data.COLOURS[int(d.colour[i])]} {data.SHAPES[int(d.shape[i])]}"


def test_two_shape_captions_name_left_then_right() -> None:
    d = data.two_shapes(20, seed=2)
    assert d.shape2 is not None and d.colour2 is not None
    for i in range(20):
        left, right = d.images[i, :, :, :16], d.images[i, :, :, 16:]
        assert left.sum() > 0 and right.sum() > 0
        assert d.captions[i].split(" left of ")[1] == f"a {data.COLOURS[int(d.colour2[i])]} {data.SHAPES[int(d.shape2[i])]}"


def test_clips_move_one_step_a_frame_in_their_direction() -> None:
    d = data.motion_clips(40, seed=1, frames=8, size=16)
    assert d.clips.shape == (40, 3, 8, 16, 16)
    ys, xs = torch.arange(16.0)[:, None], torch.arange(16.0)[None, :]
    for i in range(40):
        mass = d.clips[i].sum(0)                                              # (T, H, W)
        cy = (mass * ys).sum((1, 2)) / mass.sum((1, 2))
        cx = (mass * xs).sum((1, 2)) / mass.sum((1, 2))
        dy, dx = data._STEP[int(d.direction[i])]
        assert torch.allclose(cy[1:] - cy[:-1], torch.full((7,), float(dy)), atol=0.35)
        assert torch.allclose(cx[1:] - cx[:-1], torch.full((7,), float(dx)), atol=0.35)


def test_tones_peak_at_their_pitch() -> None:
    d = data.tones(30, seed=0, sample_rate=8000, seconds=0.5, noise_class=True)
    assert d.waves.shape == (30, 4000)
    for wave, label in zip(d.waves, d.labels):
        if int(label) == len(data.PITCHES):
            continue
        spectrum = torch.fft.rfft(wave).abs()
        peak_hz = float(spectrum.argmax()) * 8000 / 4000
        assert abs(peak_hz - data.PITCHES[int(label)]) < 0.03 * data.PITCHES[int(label)] + 2


# -- the order-in-time tasks (issue 19) -------------------------------------------------------------------

def _drift(clips: torch.Tensor) -> torch.Tensor:
    """The linear statistic that reads a horizontal drift: sum over c, t, y, x of (t - mean t) * x * clip."""
    t, w = clips.shape[2], clips.shape[4]
    weight = (torch.arange(t) - (t - 1) / 2)[:, None, None] * torch.arange(w)[None, None, :]   # (T, 1, W)
    return (clips * weight).sum((1, 2, 3, 4))


def test_mover_clips_are_seeded_balanced_and_move_one_step_a_frame() -> None:
    a, b, c = data.mover_clips(400, seed=3), data.mover_clips(400, seed=3), data.mover_clips(400, seed=4)
    assert torch.equal(a.clips, b.clips) and torch.equal(a.direction, b.direction)
    assert not torch.equal(a.clips, c.clips)
    assert a.clips.shape == (400, 3, 8, 16, 16) and a.clips.dtype == torch.float32
    assert 0.0 <= float(a.clips.min()) and float(a.clips.max()) <= 1.0
    counts = torch.bincount(a.labels, minlength=len(data.DIRECTIONS8))
    assert len(counts) == 8 and int(counts.min()) > 30                        # ~50 each of 8
    ys, xs = torch.arange(16.0)[:, None] + 0.5, torch.arange(16.0)[None, :] + 0.5
    for i in range(40):                                                       # the mover is drawn on top: exact
        mask = (a.clips[i] == a.colour[i][:, None, None, None]).all(0).float()   # (T, H, W)
        cy = (mask * ys).sum((1, 2)) / mask.sum((1, 2))
        cx = (mask * xs).sum((1, 2)) / mask.sum((1, 2))
        dy, dx = data._STEP8[int(a.direction[i])]
        assert torch.allclose(cy[1:] - cy[:-1], torch.full((7,), float(dy)), atol=1e-3)
        assert torch.allclose(cx[1:] - cx[:-1], torch.full((7,), float(dx)), atol=1e-3)
        still = a.clips[i, :, :, mask.sum(0) == 0]                             # pixels the mover never touches
        assert bool((still == still[:, :1]).all())                            # distractors and background stay put


def test_mover_contrast_sign_is_a_coin_flip_so_a_linear_drift_read_out_cancels() -> None:
    d = data.mover_clips(800, seed=0)
    lighter = ((d.colour - d.background).sum(1) > 0).float().mean()
    assert 0.4 < float(lighter) < 0.6
    horizontal = torch.tensor([data._STEP8[int(k)][1] for k in d.direction])  # dx in -1, 0, 1
    moving = horizontal != 0
    agree = (torch.sign(_drift(d.clips))[moving] == horizontal[moving]).float().mean()
    assert 0.35 < float(agree) < 0.65                                         # chance: linear reads no sense
    old = data.motion_clips(200, seed=0)                                      # bright shapes on black: it does
    sideways = old.direction < 2
    sense = 1 - 2 * old.direction[sideways].float()                           # right +1, left -1
    assert bool((torch.sign(_drift(old.clips))[sideways] == sense).all())


def test_contours_are_seeded_balanced_and_play_their_shape() -> None:
    a, b = data.contours(200, seed=3), data.contours(200, seed=3)
    assert torch.equal(a.waves, b.waves) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.waves, data.contours(200, seed=4).waves)
    assert a.waves.shape == (200, 8000) and a.waves.dtype == torch.float32
    counts = torch.bincount(a.labels, minlength=len(data.CONTOURS))
    assert len(counts) == 4 and int(counts.min()) > 30                        # ~50 each of 4
    assert bool((a.pitches[:, 0] < a.pitches[:, 1]).all() and (a.pitches[:, 1] < a.pitches[:, 2]).all())
    for label, pitches, order in zip(a.labels, a.pitches, a.order):
        p = pitches[order]                                                    # Hz in playing order
        name = data.CONTOURS[int(label)]
        assert {"rising": p[0] < p[1] < p[2], "falling": p[0] > p[1] > p[2],
                "up-down": p[1] > max(p[0], p[2]), "down-up": p[1] < min(p[0], p[2])}[name]
    assert sorted(tuple(o) for orders in data.CONTOUR_ORDERS.values() for o in orders) == sorted(
        itertools.permutations(range(3)))                                      # the six orders, once each


def test_every_order_of_the_same_notes_has_the_same_time_averaged_spectrum() -> None:
    from imagine.arch.vit import LogMel
    front = LogMel(8000, 256, 128, 64)
    pitches = (250.0, 330.0, 440.0)
    waves = torch.from_numpy(np.stack([data.melody(tuple(pitches[k] for k in order), 8000, onset=0.2)
                                       for order in itertools.permutations(range(3))])).float()
    mel = front(waves)                                                        # (6, M, F)
    bag = mel.mean(-1)                                                        # (6, M): the order-blind view
    same = float((bag - bag[:1]).abs().max())
    assert same < BAG_TOL
    assert float((mel - mel[:1]).abs().amax((1, 2))[1:].min()) > 1.0        # while the spectrograms differ
    other = front(torch.from_numpy(data.melody((262.0, 349.0, 466.0), 8000, onset=0.2))[None].float()).mean(-1)
    assert float((other - bag[:1]).abs().max()) > 5 * same                  # other notes: another average
