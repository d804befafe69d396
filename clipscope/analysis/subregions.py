"""Subregions are closer to captions (MacCap).

MacCap (Qiu, Ning & He 2024, AAAI) observes that a caption's CLIP embedding is often closer to
the embedding of a region of its image than to the whole image's. For each pair (image i,
caption t) with L2-normalised embeddings: ``whole = <I_i, T_t>``; ``best = max_k <C_ik, T_t>``
over the image's crops C_ik; the pair is a win when best > whole, and its gain is
best - whole.

Crops: at each scale s (a fraction of the width and height), the four windows anchored at the
image's corners (for s = 1/2, its quadrants), each moved by a seeded jitter of up to 10% of the
free margin (1 - s) along each axis, kept inside the image.
"""

from __future__ import annotations

import numpy as np

SCALES = (0.5, 0.75)


def crop_boxes(row: int, seed: int, scales=SCALES) -> np.ndarray:
    """(len(scales) * 4, 4) boxes (x0, y0, x1, y1) as fractions of the image, seeded by ``row``."""
    rng = np.random.default_rng([seed, 21, row])
    boxes = []
    for s in scales:
        margin = 1.0 - s
        for x0 in (0.0, margin):
            for y0 in (0.0, margin):
                jx, jy = rng.uniform(-0.1, 0.1, 2) * margin
                x, y = float(np.clip(x0 + jx, 0, margin)), float(np.clip(y0 + jy, 0, margin))
                boxes.append((x, y, x + s, y + s))
    return np.asarray(boxes, np.float64)


def crop(image, box):
    """The PIL crop of a box given in fractions."""
    w, h = image.size
    x0, y0, x1, y1 = box
    return image.crop((int(round(x0 * w)), int(round(y0 * h)), max(int(round(x1 * w)), int(round(x0 * w)) + 1),
                       max(int(round(y1 * h)), int(round(y0 * h)) + 1)))


def subregion_scores(whole: np.ndarray, crops: np.ndarray) -> dict:
    """``whole``: (P,) cosine of each pair's caption with its whole image; ``crops``: (P, K)
    with each of the image's K crops. Returns per-pair best crop cosine, wins and gains."""
    best = crops.max(axis=1)
    return {"best": best, "win": best > whole, "gain": best - whole, "best_crop": crops.argmax(axis=1)}
