"""imagine.arch.data: the synthetic corpora are a pure function of the seed, labels match what is drawn,
and a clip's motion (not any single frame) carries its direction."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install -e '.[torch]'")

from imagine.arch import data  # noqa: E402


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
