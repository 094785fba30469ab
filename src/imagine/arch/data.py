"""Reproducible synthetic datasets for the model lab: coloured shapes with captions, moving-shape clips, tones.

Two of them are built so that only *order in time* tells the classes apart (issue 19): `mover_clips` (one
shape moving in 8 directions among static distractors, its contrast to the background random in sign, so a
linear read-out of the motion cancels and the time-averaged frame cannot tell a clip from its reverse) and
`contours` (three notes in one of four melodic shapes; every class uses the same pitches for the same time,
so the time-averaged spectrum is the same for every class).

Everything is drawn with numpy from one `seed`, so a test or a bench regenerates exactly the same corpus
instead of keeping files in git; a held-out split is simply another seed. Shapes: N examples, C=3 colour
channels, H/W pixels, T frames, L audio samples. Pixels are float32 in [0, 1] on a black background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SHAPES", "COLOURS", "COLOUR_RGB", "DIRECTIONS", "PITCHES",
    "DIRECTIONS8", "CONTOURS", "CONTOUR_ORDERS",
    "ShapesData", "ClipsData", "TonesData", "MoverClipsData", "ContourData",
    "shape_mask", "draw_shape", "shapes", "two_shapes", "motion_clips", "tones", "caption",
    "mover_clips", "melody", "contours",
]

SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue", "yellow")
COLOUR_RGB = np.array([[1.0, 0.15, 0.15], [0.15, 0.9, 0.2], [0.2, 0.35, 1.0], [1.0, 0.9, 0.1]], np.float32)
DIRECTIONS = ("right", "left", "down", "up")
_STEP = {0: (0, 1), 1: (0, -1), 2: (1, 0), 3: (-1, 0)}                       # direction -> (dy, dx) per frame
PITCHES = (262.0, 330.0, 392.0, 523.0, 659.0)                                 # C4 E4 G4 C5 E5 in Hz
DIRECTIONS8 = ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")
_STEP8 = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1), 4: (0, -1), 5: (-1, -1), 6: (-1, 0), 7: (-1, 1)}
CONTOURS = ("rising", "falling", "up-down", "down-up")
# contour -> the orders of (low, mid, high) = (0, 1, 2) it may play; all six orders are used once
CONTOUR_ORDERS: dict[int, tuple[tuple[int, int, int], ...]] = {
    0: ((0, 1, 2),), 1: ((2, 1, 0),), 2: ((0, 2, 1), (1, 2, 0)), 3: ((2, 0, 1), (1, 0, 2))}


def shape_mask(shape: int, cy: float, cx: float, r: float, h: int, w: int) -> np.ndarray:
    """Boolean (H, W) mask of one shape: centre (cy, cx), half-size r pixels.

    Masks come from a coordinate grid (no Pillow), so the drawing is exact and identical on every machine."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5                     # pixel centres (H, W)
    dy, dx = yy - cy, xx - cx
    if SHAPES[shape] == "circle":
        mask = dy * dy + dx * dx <= r * r
    elif SHAPES[shape] == "square":
        side = r * 0.85                                                        # same area-ish as the circle
        mask = (np.abs(dy) <= side) & (np.abs(dx) <= side)
    elif SHAPES[shape] == "triangle":
        # apex up: the half-width grows linearly from 0 at the top (dy=-r) to r at the base (dy=+r)
        mask = (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    else:
        raise ValueError(f"shape must be in 0..{len(SHAPES) - 1}, got {shape}")
    return mask


def draw_shape(canvas: np.ndarray, shape: int, colour: int, cy: float, cx: float, r: float) -> None:
    """Paint one shape in place on canvas (H, W, 3) in COLOUR_RGB[colour]; see `shape_mask`."""
    canvas[shape_mask(shape, cy, cx, r, *canvas.shape[:2])] = COLOUR_RGB[colour]


def caption(shape: int, colour: int) -> str:
    return f"a {COLOURS[colour]} {SHAPES[shape]}"


@dataclass
class ShapesData:
    """images (N, 3, H, W) in [0, 1]; shape and colour (N,) int64 ids; one caption per image.

    For two-shape images `shape`/`colour` describe the left shape and `shape2`/`colour2` the right one."""
    images: Tensor
    shape: Tensor
    colour: Tensor
    captions: list[str]
    shape2: Tensor | None = None
    colour2: Tensor | None = None

    @property
    def labels(self) -> Tensor:
        """The classification target of the shapes task: which shape (3 classes)."""
        return self.shape

    @property
    def class_id(self) -> Tensor:
        """shape x colour as one id in 0..len(SHAPES)*len(COLOURS)-1, for class-conditional generation."""
        return self.shape * len(COLOURS) + self.colour

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _noise(rng: np.random.Generator, img: np.ndarray, noise: float) -> np.ndarray:
    if noise > 0:
        img = img + rng.normal(0.0, noise, img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def shapes(n: int, seed: int, size: int = 32, noise: float = 0.0) -> ShapesData:
    """n images with one shape each, random shape, colour, size and position (fully inside the frame)."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, size, size, 3), np.float32)                          # (N, H, W, 3) while drawing
    shape = rng.integers(0, len(SHAPES), n)
    colour = rng.integers(0, len(COLOURS), n)
    for i in range(n):
        r = rng.uniform(0.15, 0.3) * size
        cy, cx = rng.uniform(r + 0.5, size - r - 0.5, 2)
        draw_shape(imgs[i], int(shape[i]), int(colour[i]), cy, cx, r)
        imgs[i] = _noise(rng, imgs[i], noise)
    return ShapesData(torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(),      # (N, 3, H, W)
                      torch.from_numpy(shape).long(), torch.from_numpy(colour).long(),
                      [caption(int(s), int(c)) for s, c in zip(shape, colour)])


def two_shapes(n: int, seed: int, size: int = 32, noise: float = 0.0) -> ShapesData:
    """n images with two shapes side by side, captioned "a red circle left of a blue square".

    The two always differ in shape or colour, so the caption names them unambiguously."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, size, size, 3), np.float32)
    s1, c1, s2, c2 = (np.empty(n, np.int64) for _ in range(4))
    for i in range(n):
        s1[i], c1[i] = rng.integers(0, len(SHAPES)), rng.integers(0, len(COLOURS))
        while True:
            s2[i], c2[i] = rng.integers(0, len(SHAPES)), rng.integers(0, len(COLOURS))
            if (s2[i], c2[i]) != (s1[i], c1[i]):
                break
        r = rng.uniform(0.12, 0.2) * size
        half = size / 2
        cx1 = rng.uniform(r + 0.5, half - r)                                  # left half
        cx2 = rng.uniform(half + r, size - r - 0.5)                            # right half
        cy1, cy2 = rng.uniform(r + 0.5, size - r - 0.5, 2)
        draw_shape(imgs[i], int(s1[i]), int(c1[i]), cy1, cx1, r)
        draw_shape(imgs[i], int(s2[i]), int(c2[i]), cy2, cx2, r)
        imgs[i] = _noise(rng, imgs[i], noise)
    caps = [f"{caption(int(a), int(b))} left of {caption(int(c), int(d))}" for a, b, c, d in zip(s1, c1, s2, c2)]
    t = torch.from_numpy
    return ShapesData(t(imgs).permute(0, 3, 1, 2).contiguous(), t(s1), t(c1), caps, t(s2), t(c2))


@dataclass
class ClipsData:
    """clips (N, 3, T, H, W) in [0, 1] (Conv3d's layout); direction (N,) int64 in DIRECTIONS order."""
    clips: Tensor
    direction: Tensor
    shape: Tensor
    colour: Tensor

    @property
    def labels(self) -> Tensor:
        return self.direction

    def __len__(self) -> int:
        return int(self.clips.shape[0])


def motion_clips(n: int, seed: int, frames: int = 8, size: int = 16, speed: float = 1.0,
                 noise: float = 0.0) -> ClipsData:
    """n clips of one shape moving `speed` pixels a frame right, left, down or up, staying inside the frame.

    Shape, colour, size and start are random, so only the motion tells the direction apart: a single frame
    carries no information about the label (a model must compare frames)."""
    rng = np.random.default_rng(seed)
    clips = np.zeros((n, frames, size, size, 3), np.float32)                 # (N, T, H, W, 3) while drawing
    direction = rng.integers(0, len(DIRECTIONS), n)
    shape = rng.integers(0, len(SHAPES), n)
    colour = rng.integers(0, len(COLOURS), n)
    travel = speed * (frames - 1)
    for i in range(n):
        r = rng.uniform(0.15, 0.22) * size
        dy, dx = _STEP[int(direction[i])]
        lo, hi = r + 0.5, size - r - 0.5
        # start so that the whole path stays inside [lo, hi] on the moving axis
        y0 = rng.uniform(lo - min(dy, 0) * travel, hi - max(dy, 0) * travel)
        x0 = rng.uniform(lo - min(dx, 0) * travel, hi - max(dx, 0) * travel)
        for f in range(frames):
            draw_shape(clips[i, f], int(shape[i]), int(colour[i]), y0 + dy * speed * f, x0 + dx * speed * f, r)
            clips[i, f] = _noise(rng, clips[i, f], noise)
    t = torch.from_numpy
    return ClipsData(t(clips).permute(0, 4, 1, 2, 3).contiguous(), t(direction), t(shape), t(colour))


@dataclass
class TonesData:
    """waves (N, L) float32 in about [-1, 1] at `sample_rate`; labels (N,) int64: pitch index, and with
    `noise_class` the last label (len(PITCHES)) is noise alone."""
    waves: Tensor
    labels: Tensor
    sample_rate: int

    def __len__(self) -> int:
        return int(self.waves.shape[0])


def tones(n: int, seed: int, sample_rate: int = 8000, seconds: float = 0.5, noise: float = 0.05,
          noise_class: bool = False, detune: float = 0.02) -> TonesData:
    """n clips of one of PITCHES (with two weaker harmonics, a random onset, loudness and phase, and
    up to `detune` relative detuning), over white noise of std `noise`.

    Harmonics and detuning make the classes overlap a little in raw samples but stay apart on a mel scale,
    which is what the spectrogram front end is for."""
    rng = np.random.default_rng(seed)
    length = int(round(sample_rate * seconds))
    n_classes = len(PITCHES) + int(noise_class)
    labels = rng.integers(0, n_classes, n)
    t = np.arange(length, dtype=np.float64) / sample_rate                    # (L,) seconds
    waves = np.zeros((n, length), np.float32)
    for i in range(n):
        wave = np.zeros(length)
        if labels[i] < len(PITCHES):
            f0 = PITCHES[int(labels[i])] * (1 + rng.uniform(-detune, detune))
            for k, amp in ((1, 1.0), (2, 0.35), (3, 0.15)):
                wave += amp * np.sin(2 * math.pi * k * f0 * t + rng.uniform(0, 2 * math.pi))
            onset = int(rng.uniform(0, 0.25) * length)                        # silence before the note
            wave[:onset] = 0.0
            wave *= rng.uniform(0.3, 0.8) / 1.5
        wave += rng.normal(0.0, noise if labels[i] < len(PITCHES) else max(noise, 0.1), length)
        waves[i] = wave.astype(np.float32)
    return TonesData(torch.from_numpy(waves), torch.from_numpy(labels).long(), sample_rate)


# -- tasks where only order in time tells the classes apart (issue 19) -----------------------------------

def _contrasting(rng: np.random.Generator, background: np.ndarray, least: float = 0.35) -> np.ndarray:
    """A random RGB colour that differs from `background` by at least `least` in some channel.

    The rule is symmetric under c -> 1 - c with background -> 1 - background, so a shape is as often darker as
    lighter than the background: the sign of its contrast, and of any linear read-out of it, is a coin flip."""
    while True:
        colour = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        if np.abs(colour - background).max() >= least:
            return colour


@dataclass
class MoverClipsData:
    """clips (N, 3, T, H, W) in [0, 1]; direction (N,) int64 in DIRECTIONS8 order; the mover's shape id,
    RGB colour (N, 3) and start centre (N, 2) as (y, x); the background RGB (N, 3)."""
    clips: Tensor
    direction: Tensor
    shape: Tensor
    colour: Tensor
    start: Tensor
    background: Tensor

    @property
    def labels(self) -> Tensor:
        return self.direction

    def __len__(self) -> int:
        return int(self.clips.shape[0])


def mover_clips(n: int, seed: int, frames: int = 8, size: int = 16, distractors: int = 2,
                noise: float = 0.0) -> MoverClipsData:
    """n clips of one shape moving one pixel a frame along each of its axes in one of 8 directions
    (DIRECTIONS8), among `distractors` static shapes, on a random background colour.

    Shapes, sizes, positions and colours are random and each shape is as often darker as lighter than the
    background, which is what makes the task need order *and* a non-linear model: the linear statistic that
    reads a drift (sum over t, x of (t - c) x I) has the sign of the contrast times the velocity, so over the
    corpus it says nothing about the direction; the mean frame of a clip is that of its time reversal (the
    opposite direction), so a bag of frames can at best tell the axis (50 %), never the sense."""
    rng = np.random.default_rng(seed)
    clips = np.zeros((n, frames, size, size, 3), np.float32)                 # (N, T, H, W, 3) while drawing
    direction = rng.integers(0, len(DIRECTIONS8), n)
    shape = rng.integers(0, len(SHAPES), n)
    colour, start, background = (np.zeros((n, k), np.float32) for k in (3, 2, 3))
    travel = frames - 1
    for i in range(n):
        background[i] = rng.uniform(0.2, 0.8, 3)
        still = np.empty((size, size, 3), np.float32)
        still[:] = background[i]
        for _ in range(distractors):                                        # static shapes, drawn under the mover
            r = rng.uniform(0.12, 0.2) * size
            cy, cx = rng.uniform(r + 0.5, size - r - 0.5, 2)
            still[shape_mask(int(rng.integers(0, len(SHAPES))), cy, cx, r, size, size)] = _contrasting(
                rng, background[i])
        colour[i] = _contrasting(rng, background[i])
        r = rng.uniform(0.15, 0.22) * size
        dy, dx = _STEP8[int(direction[i])]
        lo, hi = r + 0.5, size - r - 0.5
        # start so that the whole path stays inside [lo, hi]; reversed paths are exactly as likely
        start[i] = (rng.uniform(lo - min(dy, 0) * travel, hi - max(dy, 0) * travel),
                    rng.uniform(lo - min(dx, 0) * travel, hi - max(dx, 0) * travel))
        for f in range(frames):
            clips[i, f] = still
            cy, cx = start[i, 0] + dy * f, start[i, 1] + dx * f
            clips[i, f][shape_mask(int(shape[i]), cy, cx, r, size, size)] = colour[i]
            clips[i, f] = _noise(rng, clips[i, f], noise)
    t = torch.from_numpy
    return MoverClipsData(t(clips).permute(0, 4, 1, 2, 3).contiguous(), t(direction), t(shape), t(colour),
                          t(start), t(background))


def melody(pitches: tuple[float, float, float] | np.ndarray, length: int, sample_rate: int = 8000, *,
           onset: float = 0.0, note: float = 0.1, gap: float = 0.05, loudness: float = 0.5,
           phases: np.ndarray | None = None, ramp: float = 0.01) -> np.ndarray:
    """Three notes (Hz, in playing order) of `note` seconds each, `gap` seconds apart, from `onset` seconds:
    a float64 (L,) wave with two weaker harmonics and raised-cosine `ramp`s at each note's ends.

    Every note gets the same length, loudness and envelope, so reordering the pitches moves energy in time
    but not in frequency; the gaps (longer than a 256-sample STFT window at 8 kHz) keep any spectrogram frame
    from hearing two notes at once, so even the pairs of neighbouring notes do not show in a time average."""
    t = np.arange(length, dtype=np.float64) / sample_rate
    phases = np.zeros((3, 3)) if phases is None else phases                  # (note, harmonic)
    wave = np.zeros(length)
    n_note, n_ramp = int(round(note * sample_rate)), max(1, int(round(ramp * sample_rate)))
    env = np.ones(n_note)
    edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(n_ramp) / n_ramp)           # 0 -> 1
    env[:n_ramp], env[-n_ramp:] = edge, edge[::-1]
    for k, f0 in enumerate(pitches):
        a = int(round((onset + k * (note + gap)) * sample_rate))
        seg = slice(a, min(a + n_note, length))
        tone = sum(amp * np.sin(2 * math.pi * h * float(f0) * t[seg] + phases[k, h - 1])
                   for h, amp in ((1, 1.0), (2, 0.35), (3, 0.15)))
        wave[seg] += loudness * env[:seg.stop - seg.start] * tone
    return wave


@dataclass
class ContourData:
    """waves (N, L) float32; labels (N,) int64 in CONTOURS order; pitches (N, 3) the (low, mid, high) Hz each
    clip plays in its own order `order` (N, 3) of indices into pitches; onset (N,) seconds."""
    waves: Tensor
    labels: Tensor
    pitches: Tensor
    order: Tensor
    onset: Tensor
    sample_rate: int

    def __len__(self) -> int:
        return int(self.waves.shape[0])


def contours(n: int, seed: int, sample_rate: int = 8000, seconds: float = 1.0, noise: float = 0.05,
             low: tuple[float, float] = (200.0, 600.0), note: tuple[float, float] = (0.08, 0.14),
             gap: tuple[float, float] = (0.04, 0.07)) -> ContourData:
    """n clips of three notes in one of CONTOURS (rising, falling, up-down, down-up) over white noise.

    The low note is log-uniform in `low` (200-600 Hz), the middle 4-6 and the high 9-12 semitones above it; notes
    are 80-140 ms with 40-70 ms gaps (the same within a clip), placed anywhere in the clip; loudness and phases are
    random. Pitches are drawn independently of the class and every order plays each note equally long, so the
    time-averaged spectrum carries nothing about the class; the onset spread (about the melody's own length)
    blurs where in the clip a fixed linear template could look for the notes."""
    rng = np.random.default_rng(seed)
    length = int(round(sample_rate * seconds))
    labels = rng.integers(0, len(CONTOURS), n)
    pitches, order = np.zeros((n, 3)), np.zeros((n, 3), np.int64)
    onset = np.zeros(n)
    waves = np.zeros((n, length), np.float32)
    for i in range(n):
        f0 = low[0] * (low[1] / low[0]) ** rng.uniform(0.0, 1.0)
        pitches[i] = f0, f0 * 2 ** (rng.uniform(4, 6) / 12), f0 * 2 ** (rng.uniform(9, 12) / 12)
        orders = CONTOUR_ORDERS[int(labels[i])]
        order[i] = orders[int(rng.integers(0, len(orders)))]
        d, g = rng.uniform(*note), rng.uniform(*gap)
        onset[i] = rng.uniform(0.02, seconds - 3 * d - 2 * g - 0.02)
        wave = melody(pitches[i][order[i]], length, sample_rate, onset=onset[i], note=d, gap=g,
                      loudness=rng.uniform(0.2, 0.5), phases=rng.uniform(0, 2 * math.pi, (3, 3)))
        waves[i] = (wave + rng.normal(0.0, noise, length)).astype(np.float32)
    t = torch.from_numpy
    return ContourData(t(waves), t(labels), t(pitches).float(), t(order), t(onset).float(), sample_rate)
