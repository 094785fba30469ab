"""Reproducible synthetic datasets for the model lab: coloured shapes with captions, moving-shape clips, tones.

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
    "ShapesData", "ClipsData", "TonesData",
    "draw_shape", "shapes", "two_shapes", "motion_clips", "tones", "caption",
]

SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue", "yellow")
COLOUR_RGB = np.array([[1.0, 0.15, 0.15], [0.15, 0.9, 0.2], [0.2, 0.35, 1.0], [1.0, 0.9, 0.1]], np.float32)
DIRECTIONS = ("right", "left", "down", "up")
_STEP = {0: (0, 1), 1: (0, -1), 2: (1, 0), 3: (-1, 0)}                       # direction -> (dy, dx) per frame
PITCHES = (262.0, 330.0, 392.0, 523.0, 659.0)                                 # C4 E4 G4 C5 E5 in Hz


def draw_shape(canvas: np.ndarray, shape: int, colour: int, cy: float, cx: float, r: float) -> None:
    """Paint one shape in place on canvas (H, W, 3): centre (cy, cx), half-size r pixels.

    Masks come from a coordinate grid (no Pillow), so the drawing is exact and identical on every machine."""
    h, w = canvas.shape[:2]
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
    canvas[mask] = COLOUR_RGB[colour]


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
