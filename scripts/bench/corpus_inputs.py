"""Realistic synthetic inputs for the corpus's trained models, with numpy only (no new dependencies).

* ``speech_like``: 16 kHz audio of phrases and pauses: syllables of voiced harmonics (a gliding, vibrating
  fundamental of 95-230 Hz whose harmonics are weighted by three formant bumps) with fricative noise bursts,
  separated by pauses of faint noise. silero-vad calls it speech (probability ~1) in the phrases and not
  in the pauses, which is what its outputs are to be compared on.
* ``text_line`` / ``document``: dark glyphs of a 5x7 bitmap font (A-Z, 0-9; ``FONT`` below, written
  here as data) on light paper, scaled, blurred, slightly rotated, with sensor noise: text-line crops for
  the PP-OCR recognizer and direction classifier (half of the classifier's crops upside down), pages of
  text lines for the detector. Pixel values 0-255 as [3, H, W] float arrays; the models' own
  normalisations are ``ppocr_det_norm`` and ``ppocr_line_norm``.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000

# 5x7 glyphs: 7 rows of 5 bits (most significant bit = leftmost column)
FONT: dict[str, tuple[int, ...]] = {
    "A": (0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11), "B": (0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E),
    "C": (0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E), "D": (0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E),
    "E": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F), "F": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10),
    "G": (0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F), "H": (0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11),
    "I": (0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E), "J": (0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C),
    "K": (0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11), "L": (0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F),
    "M": (0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11), "N": (0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11),
    "O": (0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E), "P": (0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10),
    "Q": (0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D), "R": (0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11),
    "S": (0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E), "T": (0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04),
    "U": (0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E), "V": (0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04),
    "W": (0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A), "X": (0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11),
    "Y": (0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04), "Z": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F),
    "0": (0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E), "1": (0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E),
    "2": (0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F), "3": (0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E),
    "4": (0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02), "5": (0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E),
    "6": (0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E), "7": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08),
    "8": (0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E), "9": (0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C),
}
_CHARS = "".join(FONT)


# ---------------------------------------------------------------- audio

def speech_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples at 16 kHz (float32, peaks ~0.1-0.5): phrases of 0.6-1.6 s after pauses of 0.25-0.8 s."""
    out = np.zeros(n)
    t0 = 0
    while t0 < n:
        t0 += int(rng.uniform(0.25, 0.8) * SAMPLE_RATE)
        seg = min(int(rng.uniform(0.6, 1.6) * SAMPLE_RATE), n - t0)
        if seg <= 0:
            break
        t = np.arange(seg) / SAMPLE_RATE
        f0 = rng.uniform(95, 230) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(2, 5) * t) - 0.15 * t / max(t[-1], 1e-3))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        formants = rng.uniform([300, 900, 2200], [850, 2200, 3200])
        rate = rng.uniform(3.5, 6.0)  # syllables per second
        env = np.clip(np.sin(np.pi * rate * t) ** 2, 0, 1) ** 0.6
        voiced = np.zeros(seg)
        for h in range(1, 40):
            fh = h * f0
            amp = sum(w * np.exp(-0.5 * ((fh - f) / (80 + 0.05 * f)) ** 2)
                      for f, w in zip(formants, (1.0, 0.6, 0.3), strict=True)) + 0.02 / h
            voiced += amp * np.sin(h * phase)
        voiced /= np.max(np.abs(voiced)) + 1e-9
        fric = np.diff(rng.normal(0, 1, seg + 1)) * (np.sin(np.pi * rate * t + 1.3) > 0.85) * 0.25
        out[t0:t0 + seg] += rng.uniform(0.1, 0.5) * env * (voiced + fric)
        t0 += seg
    out += rng.normal(0, 0.003, n)
    return out.astype(np.float32)


# ---------------------------------------------------------------- text images

def _glyphs(text: str, scale: int) -> np.ndarray:
    """Ink coverage (0/1) of ``text`` in the bitmap font, one blank column between glyphs, ``scale`` x."""
    cols = []
    for ch in text:
        rows = FONT.get(ch)
        g = np.zeros((7, 5)) if rows is None else np.array([[(r >> (4 - c)) & 1 for c in range(5)] for r in rows])
        cols += [g, np.zeros((7, 1))]
    ink = np.concatenate(cols, axis=1) if cols else np.zeros((7, 1))
    return np.kron(ink, np.ones((scale, scale)))


def _word_text(rng: np.random.Generator, n: int) -> str:
    words = []
    while sum(len(w) + 1 for w in words) < n:
        words.append("".join(rng.choice(list(_CHARS), int(rng.integers(2, 8)))))
    return " ".join(words)[:n]


def _blur(a: np.ndarray) -> np.ndarray:
    """A 3x3 box blur (edges replicated): the soft edges of printed and scanned strokes."""
    p = np.pad(a, 1, mode="edge")
    h, w = a.shape
    return sum(p[i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0


def _rotate(a: np.ndarray, degrees: float, fill: float) -> np.ndarray:
    """``a`` rotated about its centre (nearest sample; uncovered corners ``fill``)."""
    h, w = a.shape
    th = np.deg2rad(degrees)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    sy = np.rint(cy + (yy - cy) * np.cos(th) - (xx - cx) * np.sin(th)).astype(int)
    sx = np.rint(cx + (yy - cy) * np.sin(th) + (xx - cx) * np.cos(th)).astype(int)
    ok = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
    out = np.full_like(a, fill)
    out[ok] = a[sy[ok], sx[ok]]
    return out


def _paint(ink: np.ndarray, rng: np.random.Generator, degrees: float) -> np.ndarray:
    """Ink coverage [H, W] -> an RGB page [3, H, W] in 0-255: light paper, dark ink, blur, noise."""
    h, w = ink.shape
    paper = rng.uniform(190, 250) + np.linspace(0, rng.uniform(-15, 15), w)[None, :]
    colour = rng.uniform(0, 70, 3)
    cover = _rotate(_blur(ink), degrees, 0.0)
    tint = rng.uniform(-6, 6, 3)
    img = np.stack([paper + tint[c] + (colour[c] - paper - tint[c]) * cover for c in range(3)])
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.float32)


def text_line(h: int, w: int, rng: np.random.Generator, upside_down: bool = False) -> np.ndarray:
    """A text-line crop [3, h, w] (0-255): one line of glyphs 55-75 % of the height, left-aligned."""
    scale = max(1, int(round(h * rng.uniform(0.55, 0.75) / 7)))
    ink = _glyphs(_word_text(rng, max(1, w // (6 * scale))), scale)[:, :w - 2]
    canvas = np.zeros((h, w))
    y = int(rng.integers(0, h - ink.shape[0] + 1))
    x = int(rng.integers(1, max(2, w - ink.shape[1])))
    canvas[y:y + ink.shape[0], x:x + ink.shape[1]] = ink[:, :w - x]
    img = _paint(canvas, rng, rng.uniform(-2, 2))
    return img[:, ::-1, ::-1].copy() if upside_down else img


def document(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A page [3, h, w] (0-255) with lines of text (glyph scale 1-2), margins and a slight rotation."""
    canvas = np.zeros((h, w))
    y = int(rng.integers(2, 8))
    while True:
        scale = int(rng.integers(1, 3))
        if y + 7 * scale > h - 2:
            break
        x = int(rng.integers(2, 10))
        ink = _glyphs(_word_text(rng, max(1, (w - x - 2) // (6 * scale) - int(rng.integers(0, 4)))), scale)
        ink = ink[:, :w - x - 2]
        canvas[y:y + ink.shape[0], x:x + ink.shape[1]] = ink
        y += 7 * scale + int(rng.integers(3, 4 + 5 * scale))
    return _paint(canvas, rng, rng.uniform(-3, 3))


def ppocr_det_norm(img: np.ndarray) -> np.ndarray:
    """PP-OCR detection's input normalisation (ImageNet mean and std on 0-1 pixels)."""
    mean = np.array([0.485, 0.456, 0.406]).reshape(3, 1, 1)
    std = np.array([0.229, 0.224, 0.225]).reshape(3, 1, 1)
    return ((img / 255.0 - mean) / std).astype(np.float32)


def ppocr_line_norm(img: np.ndarray) -> np.ndarray:
    """PP-OCR recognition's and direction classification's normalisation (to [-1, 1])."""
    return (img / 127.5 - 1.0).astype(np.float32)
