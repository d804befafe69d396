"""Simulated embedding populations on the three data layouts, for coverage and gate tests.

Each layout draws ``n`` sampling units (images) from a fixed population in d dimensions with a
gap between the modality means and correlated pairs:

- ``pairs``: one caption per image (1:1);
- ``captions``: three captions per image, correlated with each other through their image;
- ``classes``: ``C`` fixed class prompts; each image belongs to a class and is paired with its
  prompt (the prompts are the same in every draw: they are not a sample).

``draw(layout, n, seed, shift=..., widen=...)`` returns (I, T, pairs); ``shift`` adds noise to the
texts (a planted drop of the paired cosine), ``widen`` moves the images away from the texts
along the gap direction (a planted rise of the centroid distance). ``reports(...)`` turns a draw
into the gap and uniformity reports a run would write, for the gate's simulations.
"""

from __future__ import annotations

import numpy as np

D = 64
CLASSES = 10
CAPTIONS = 3


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


_rng0 = np.random.default_rng(123)
_A = np.zeros(D)
_A[0] = 1.0
_B = np.zeros(D)
_B[1] = 1.0
_CLASS_CENTRES = _rng0.normal(size=(CLASSES, D)) * 0.35
_PROMPTS = _unit(_B + 0.8 * _CLASS_CENTRES + 0.3 * _rng0.normal(size=(CLASSES, D)))


def draw(layout: str, n: int, seed: int, *, text_noise: float = 0.3, shift: float = 0.0, widen: float = 0.0):
    """``n`` units of ``layout``: (image rows, text rows, pairs)."""
    rng = np.random.default_rng(seed)
    away = widen * (_A - _B) / np.linalg.norm(_A - _B)
    if layout == "classes":
        labels = rng.integers(0, CLASSES, n)
        I = _unit(_A + away + _CLASS_CENTRES[labels] + 0.35 * rng.normal(size=(n, D)))
        return I, _PROMPTS.copy(), np.stack([np.arange(n), labels], 1)
    z = rng.normal(size=(n, D))
    I = _unit(_A + away + 0.35 * z)
    if layout == "pairs":
        T = _unit(_B + 0.25 * z + text_noise * rng.normal(size=(n, D)) + shift * rng.normal(size=(n, D)))
        return I, T, np.stack([np.arange(n)] * 2, 1)
    own = np.repeat(z, CAPTIONS, axis=0)
    shared = np.repeat(0.2 * rng.normal(size=(n, D)), CAPTIONS, axis=0)  # what an image's captions share
    m = n * CAPTIONS
    T = _unit(_B + 0.25 * own + shared + text_noise * rng.normal(size=(m, D)) + shift * rng.normal(size=(m, D)))
    return I, T, np.stack([np.repeat(np.arange(n), CAPTIONS), np.arange(m)], 1)


def reports(I, T, pairs, seed: int = 0) -> list[dict]:
    """The gap and uniformity reports of one draw, as the commands write them."""
    import hashlib

    from clipscope.analysis import geometry as g
    from clipscope.report import build_report

    data = {"spec": "simulated", "fingerprint": hashlib.sha256(I.tobytes() + T.tobytes()).hexdigest()[:16],
            "counts": {"images": len(I), "texts": len(T), "pairs": len(pairs)}}
    model = {"name": "simulated", "pretrained": "none"}
    out = []
    for command, metrics, config in (("gap", g.gap_metrics(I, T, pairs, seed=seed), {}),
                                     ("uniformity", g.uniformity_metrics(I, T, pairs, seed=seed), {"t": 2.0})):
        clean = {k: {kk: vv for kk, vv in v.items() if kk != "why_undefined"} for k, v in metrics.items()}
        out.append(build_report(command, model=model, data=data, seed=seed, config=config, metrics=clean))
    return out


def gate(base: list[dict], new: list[dict], **kw):
    """Rows and summary of comparing two draws' reports as one `compare` of two run folders."""
    from clipscope.report.compare import compare_reports, decide

    rows = [r for b, n in zip(base, new) for r in compare_reports(b, n, label=b["command"])]
    summary = decide(rows, **kw)
    return rows, summary
