"""Pair benchmarks: the MMVP-VLM folder layout and the built-in probe pairs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from clipscope.errors import ClipscopeError

IMAGE_FOLDERS = ("MLLM_VLM Images", "MLLM_VLM_Images", "MMVP_VLM_Images")
PREFIX = "a photo of "


def load_mmvp(root: str | Path) -> list[dict]:
    """Statement pairs of an MMVP-VLM folder: ``Questions.csv`` (id, type, statement; consecutive
    rows form a pair) and one image folder per type holding ``{id}.jpg``.

    Each pair: pattern (the first row's type), image paths (of both ids, in the first row's type
    folder, as the reference script reads them), statements, and targets (image 1 for odd ids).
    """
    root = Path(root)
    csv_path = root / "Questions.csv"
    if not csv_path.is_file():
        raise ClipscopeError(f"--benchmark mmvp:{root}: no Questions.csv there; point it at the MMVP-VLM folder")
    image_dir = next((root / f for f in IMAGE_FOLDERS if (root / f).is_dir()), None)
    if image_dir is None:
        raise ClipscopeError(f"--benchmark mmvp:{root}: no image folder ({', '.join(IMAGE_FOLDERS)})")
    try:
        with csv_path.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh)][1:]
    except UnicodeDecodeError:
        raise ClipscopeError(f"{csv_path} is not UTF-8 text; save it as UTF-8 CSV") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) % 2:
        raise ClipscopeError(f"{csv_path}: {len(rows)} statement rows, an odd number; consecutive rows form a pair, "
                             "so the last one has no partner (restore the full Questions.csv)")
    short = next((k for k, r in enumerate(rows) if len(r) < 3), None)
    if short is not None:
        raise ClipscopeError(f"{csv_path}: row {short + 2} has {len(rows[short])} column(s); each row is id, type, "
                             "statement")
    pairs = []
    for k in range(0, len(rows) - 1, 2):
        (q1, t1, s1), (q2, _, s2) = rows[k][:3], rows[k + 1][:3]
        try:
            q1, q2 = int(q1), int(q2)
        except ValueError:
            raise ClipscopeError(f"{csv_path}: question ids must be integers (row {k + 2})") from None
        paths = (image_dir / t1 / f"{q1}.jpg", image_dir / t1 / f"{q2}.jpg")
        for p in paths:
            if not p.is_file():
                raise ClipscopeError(f"MMVP image {p} is missing; the folder layout is <images>/<type>/<id>.jpg")
        pairs.append({"pattern": t1, "images": paths, "statements": (PREFIX + s1, PREFIX + s2),
                      "ids": (str(q1), str(q2)), "targets": (0 if q1 % 2 == 1 else 1, 0 if q2 % 2 == 1 else 1)})
    if not pairs:
        raise ClipscopeError(f"{csv_path} holds no statement pairs")
    return pairs


def probe_pairs(n_pairs: int = 70, seed: int = 0) -> list[dict]:
    from clipscope.data.probes import pair_probes

    out = []
    for p in pair_probes(n_pairs, seed):
        out.append({"pattern": p["pattern"], "images": p["images"],
                    "statements": tuple(PREFIX + s for s in p["statements"]), "ids": p["ids"], "targets": (0, 1)})
    return out


def open_benchmark(spec: str) -> list[dict]:
    kind, _, arg = spec.partition(":")
    if kind == "mmvp":
        if not arg:
            raise ClipscopeError("--benchmark mmvp:DIR needs the MMVP-VLM folder")
        return load_mmvp(arg)
    if kind == "probes":
        try:
            n = int(arg) if arg else 70
        except ValueError:
            raise ClipscopeError("--benchmark probes[:N]: N must be an integer") from None
        if n < 1:
            raise ClipscopeError(f"--benchmark {spec}: N is the number of probe pairs, at least 1")
        return probe_pairs(n)
    raise ClipscopeError(f"unknown --benchmark {spec!r}; use mmvp:DIR or probes[:N]")


def targets_of(pairs: list[dict]) -> np.ndarray:
    return np.array([p["targets"] for p in pairs], np.int64)
