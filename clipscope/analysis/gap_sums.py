"""The O(n d) gap metrics as sums over row ranges.

Every centroid, cone, paired and bootstrap statistic of `gap` is a sum over rows (or pairs) of
something computed from that row alone, once the two centroids are known. So the rows can be
split into any ranges (blocks in one process, shards on Ray), each range reduced to a few
float64 arrays, and the arrays added: the values are the same for every split, up to float64
summation order. Two rounds:

- round 1, per modality range (:func:`modality_round1`): row count, column sums, sum of squared
  norms, and the Poisson bootstrap's weighted sums;
- round 2, given both centroids (:class:`Centroids`): per modality range
  (:func:`modality_round2`) the sums and cross-products of each row's
  ``[<x, own centroid>, <x, gap>, ||x||^2]`` (the influence functions behind the cone's and the
  gap estimate's intervals) and the shift sweep's weighted sums; per pair range
  (:func:`pair_sums`) the pair cosines and distances, their bootstrap, and for 1:1 data the
  gap estimate's per-pair influence.

Bootstrap weights are drawn per fixed chunk of :data:`BOOT_CHUNK` global rows from a
generator keyed by (seed, stream, chunk), so a range starting mid-chunk draws exactly the
weights one process would (:func:`bootstrap_weights`). :func:`finalize` turns the combined
sums into the metrics and intervals of :func:`clipscope.analysis.geometry.gap_metrics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BOOT_CHUNK = 16384
IMAGE, TEXT, PAIRS = 0, 1, 2  # bootstrap streams
_FEATURES = 3  # <x, own centroid>, <x, gap>, ||x||^2


def _poisson1_table(bits: int = 16) -> np.ndarray:
    """Poisson(1) by inverse CDF on 2**bits equally likely cells (float32 counts).

    Drawing 16-bit integers and looking them up is ~10x faster than ``Generator.poisson``,
    which dominated the bootstrap; the cells' midpoints put every count k <= 7 within 2**-16
    of its Poisson(1) probability (mean 1 and variance 1 to within 1e-4).
    """
    cells = (np.arange(2 ** bits) + 0.5) / 2 ** bits
    cdf = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(20)])
    return np.searchsorted(cdf, cells).astype(np.float32)


_POISSON1 = _poisson1_table()


def bootstrap_weights(seed: int, stream: int, r0: int, r1: int, B: int) -> np.ndarray:
    """Poisson(1) weights (B, r1 - r0), float32, of global rows r0..r1 of one stream.

    Drawn per chunk of :data:`BOOT_CHUNK` rows from ``default_rng([seed, stream, chunk])``, so
    any partition of the rows into ranges draws the same weight for every row.
    """
    parts = []
    for c in range(r0 // BOOT_CHUNK, (r1 + BOOT_CHUNK - 1) // BOOT_CHUNK):
        rng = np.random.default_rng([seed, stream, c])
        w = _POISSON1.take(rng.integers(0, len(_POISSON1), size=(B, BOOT_CHUNK), dtype=np.uint16))
        lo, hi = max(r0, c * BOOT_CHUNK) - c * BOOT_CHUNK, min(r1, (c + 1) * BOOT_CHUNK) - c * BOOT_CHUNK
        parts.append(w[:, lo:hi])
    return np.concatenate(parts, 1) if parts else np.zeros((B, 0), np.float32)


def _aligned_blocks(n: int, r0: int):
    """(local start, local end) of the blocks of a range starting at global row r0, cut at
    the global bootstrap chunk boundaries."""
    i = 0
    while i < n:
        end = min(n, (((r0 + i) // BOOT_CHUNK) + 1) * BOOT_CHUNK - r0)
        yield i, end
        i = end


def combine(parts: list[dict]) -> dict:
    """Add partial sums (dicts of arrays with equal keys)."""
    return {k: sum(p[k] for p in parts) for k in parts[0]}


def modality_round1(X: np.ndarray, r0: int = 0, *, B: int = 0, seed: int = 0, stream: int = IMAGE) -> dict:
    """Round-1 sums of the rows ``X`` (global rows r0..r0+len(X) of one modality)."""
    d = X.shape[1]
    out = {"n": np.zeros(()), "sums": np.zeros(d), "sq": np.zeros(())}
    if B:
        out.update(boot_sums=np.zeros((B, d)), boot_w=np.zeros(B), boot_w2=np.zeros(B), boot_wq=np.zeros(B))
    for i, j in _aligned_blocks(len(X), r0):
        xb = X[i:j]
        q = np.einsum("ij,ij->i", xb, xb, dtype=np.float64)
        out["n"] += len(xb)
        out["sums"] += xb.sum(0, dtype=np.float64)
        out["sq"] += q.sum()
        if B:
            w = bootstrap_weights(seed, stream, r0 + i, r0 + j, B)
            w2 = w * w
            out["boot_sums"] += w @ xb  # a float32 GEMM per block, summed in float64
            out["boot_w"] += w.sum(1, dtype=np.float64)
            out["boot_w2"] += w2.sum(1, dtype=np.float64)
            out["boot_wq"] += w2 @ q  # sum_i w_i^2 ||x_i||^2: a row drawn w times pairs with none of its copies
    return out


def unit_direction(diff: np.ndarray) -> np.ndarray:
    """The unit gap direction as the shift sweep uses it (float32; zero when there is no gap)."""
    gap = float(np.linalg.norm(diff))
    return (diff / gap).astype(np.float32) if gap > 0 else np.zeros_like(diff, np.float32)


@dataclass
class Centroids:
    """What round 2 needs from round 1: both centroids, and the shift sweep's steps."""

    mean_i: np.ndarray
    mean_t: np.ndarray
    steps_i: np.ndarray | None = None  # shifts s of the image rows along the unit gap direction
    steps_t: np.ndarray | None = None

    @classmethod
    def of(cls, r1_i: dict, r1_t: dict, steps_of=None) -> "Centroids":
        """From the round-1 sums; ``steps_of(gap length)``: the sweep's (image, text) steps."""
        c = cls(r1_i["sums"] / r1_i["n"], r1_t["sums"] / r1_t["n"])
        if steps_of is not None:
            c.steps_i, c.steps_t = (np.asarray(s, np.float64) for s in steps_of(float(np.linalg.norm(c.gap))))
        return c

    @property
    def gap(self) -> np.ndarray:
        return self.mean_i - self.mean_t

    @property
    def unit_gap(self) -> np.ndarray:
        return unit_direction(self.gap)


def shifted_sums(xb: np.ndarray, g: np.ndarray, steps: np.ndarray, q: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(sum_i w_s,i x_i, sum_i w_s,i)`` with ``w_s,i = 1 / ||x_i + s g||`` for every step s:
    ``||x + s g||^2 = ||x||^2 + 2 s <x, g> + s^2 ||g||^2``, so no shifted copy of the rows
    (``q``: the rows' squared norms, when the caller has them)."""
    g64 = np.asarray(g, np.float64)
    p = (xb @ np.asarray(g, xb.dtype)).astype(np.float64)  # a float32 product for float32 rows
    q = np.einsum("ij,ij->i", xb, xb, dtype=np.float64) if q is None else q
    r = np.sqrt(np.maximum(q[:, None] + 2 * steps[None, :] * p[:, None] + steps[None, :] ** 2 * (g64 @ g64), 0))
    w = 1.0 / np.maximum(r, 1e-12)
    return w.T.astype(xb.dtype) @ xb, w.sum(0)  # a float32 GEMM for float32 rows


def modality_round2(X: np.ndarray, c: Centroids, *, text: bool, block: int = 65536) -> dict:
    """Round-2 sums of one modality's rows: the features' sums and cross-products and, when
    ``c`` has steps, the shift sweep's weighted sums."""
    own = c.mean_t if text else c.mean_i
    V = np.stack([own, c.gap], 1).astype(np.float32)
    steps = c.steps_t if text else c.steps_i
    out = {"f1": np.zeros(_FEATURES), "f2": np.zeros((_FEATURES, _FEATURES))}
    if steps is not None:
        out.update(shift_acc=np.zeros((len(steps), X.shape[1])), shift_w=np.zeros(len(steps)))
    g = c.unit_gap
    for i in range(0, len(X), block):
        xb = X[i:i + block]
        F = np.empty((len(xb), _FEATURES))
        F[:, :2] = xb @ V
        # the squared norms (~1) feed only intervals and the sweep's weights here: float32 products
        # suffice (round 1 keeps them in float64 for the cone's value)
        F[:, 2] = np.einsum("ij,ij->i", xb, xb)
        out["f1"] += F.sum(0)
        out["f2"] += F.T @ F
        if steps is not None:
            acc, w = shifted_sums(xb, g, steps, F[:, 2])
            out["shift_acc"] += acc
            out["shift_w"] += w
    return out


def pair_sums(Ip: np.ndarray, Tp: np.ndarray, c: Centroids | None = None, k0: int = 0, *, B: int = 0, seed: int = 0,
              identity: bool = False) -> dict:
    """Sums over pairs k0..k0+len(Ip) (row k of ``Ip`` pairs with row k of ``Tp``): cosines and
    distances and their squares (and the squared distances' squares, for alignment), their
    bootstrap, and with ``identity`` (1:1 data; needs the centroids ``c``) the gap estimate's
    per-pair influence ``2 <I_k - mean I, g> - 2 <T_k - mean T, g>``."""
    out = {k: np.zeros(()) for k in ("n", "cos", "cos2", "dist", "dist2", "dist4", "infl", "infl2")}
    if B:
        out.update({k: np.zeros(B) for k in ("boot_cos", "boot_dist", "boot_d2", "boot_w")})
    for i, j in _aligned_blocks(len(Ip), k0):
        a, b = Ip[i:j], Tp[i:j]
        cos = np.einsum("ij,ij->i", a, b, dtype=np.float64)
        # ||a - b|| from the norms; the rows' squared norms (~1) in float32 suffice for it
        qa, qb = np.einsum("ij,ij->i", a, a).astype(np.float64), np.einsum("ij,ij->i", b, b).astype(np.float64)
        dist = np.sqrt(np.maximum(0.0, qa + qb - 2.0 * cos))
        out["n"] += len(a)
        out["cos"] += cos.sum()
        out["cos2"] += cos @ cos
        out["dist"] += dist.sum()
        d2 = dist * dist
        out["dist2"] += d2.sum()
        out["dist4"] += d2 @ d2
        if identity:
            g = c.gap
            g_rows = g.astype(a.dtype)  # float32 products for float32 rows, as round 2's
            infl = 2 * ((a @ g_rows) - c.mean_i @ g) - 2 * ((b @ g_rows) - c.mean_t @ g)
            out["infl"] += infl.sum()
            out["infl2"] += infl @ infl
        if B:
            w = bootstrap_weights(seed, PAIRS, k0 + i, k0 + j, B).astype(np.float64)
            out["boot_cos"] += w @ cos
            out["boot_dist"] += w @ dist
            out["boot_d2"] += w @ (dist * dist)
            out["boot_w"] += w.sum(1)
    return out


def _var(s1: float, s2: float, n: float) -> float:
    """Sample variance (ddof 1) from the sum and the sum of squares."""
    return max(0.0, (s2 - s1 * s1 / n) / (n - 1)) if n > 1 else float("nan")


def cone_value(r1: dict) -> float:
    """``(||sum_i x_i||^2 - sum_i ||x_i||^2) / (n (n - 1))``: the mean <x_i, x_j> over i != j."""
    n = float(r1["n"])
    return float((r1["sums"] @ r1["sums"] - r1["sq"]) / (n * (n - 1)))


def cone_halfwidth(r1: dict, r2: dict, z: float) -> float | None:
    """Half-width of the cone's interval: Hoeffding's 4 Var(h1) / n with
    ``h1(x_i) = (n <x_i, mean> - ||x_i||^2) / (n - 1)``, the mean <x_i, x_j> over j != i."""
    n = float(r1["n"])
    if n < 3:
        return None
    f1, f2 = r2["f1"], r2["f2"]
    s1 = (n * f1[0] - f1[2]) / (n - 1)
    s2 = (n * n * f2[0, 0] - 2 * n * f2[0, 2] + f2[2, 2]) / (n - 1) ** 2
    return z * math.sqrt(4 * _var(s1, s2, n) / n)


def gap_estimate(r1_i: dict, r1_t: dict, r2_i: dict, r2_t: dict, p: dict | None, n_pairs: int, identity: bool,
                 z: float) -> tuple[float, list[float] | None]:
    """The bias-corrected gap and its interval (see
    :func:`clipscope.analysis.geometry.centroid_gap_estimate`) from the sums; ``n_pairs``: the
    number of distinct pairs, ``p``: the pair sums (their cosines are the paired products)."""
    n_i, n_t = float(r1_i["n"]), float(r1_t["n"])
    if min(n_i, n_t) < 3:
        return float("nan"), None
    Si, St = r1_i["sums"], r1_t["sums"]
    paired_dot = float(p["cos"]) if p is not None else 0.0
    u_it = (Si @ St - paired_dot) / (n_i * n_t - n_pairs)
    g2 = cone_value(r1_i) + cone_value(r1_t) - 2 * u_it
    if identity and p is not None:
        var = _var(float(p["infl"]), float(p["infl2"]), n_i) / n_i
    else:  # Var(infl_i) = 4 Var(<x, g>), likewise for the texts
        var = (4 * _var(r2_i["f1"][1], r2_i["f2"][1, 1], n_i) / n_i
               + 4 * _var(r2_t["f1"][1], r2_t["f2"][1, 1], n_t) / n_t)
    half = z * math.sqrt(var)
    root = lambda v: math.sqrt(max(0.0, v))  # noqa: E731
    return root(g2), [root(g2 - half), root(g2 + half)]


def mean_interval(s1: float, s2: float, n: float, z: float) -> list[float] | None:
    """The mean's normal 95% interval from the sum and the sum of squares (n >= 3)."""
    if n < 3:
        return None
    m, se = s1 / n, math.sqrt(_var(s1, s2, n) / n)
    return [float(m - z * se), float(m + z * se)]


def bootstrap_replicates(r1_i: dict, r1_t: dict, p: dict) -> dict[str, np.ndarray]:
    """Each bootstrap replicate's metrics from the weighted sums (NaN where a replicate drew
    fewer than two rows of a modality)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ci, ct = r1_i["boot_sums"] / r1_i["boot_w"][:, None], r1_t["boot_sums"] / r1_t["boot_w"][:, None]
        si, st = r1_i["boot_sums"], r1_t["boot_sums"]
        return {
            "centroid_distance": np.linalg.norm(ci - ct, axis=1),
            "centroid_cosine": (ci * ct).sum(1) / (np.linalg.norm(ci, axis=1) * np.linalg.norm(ct, axis=1)),
            # The U-statistic over distinct rows of the resample (copies of one row are not pairs).
            "cone_image": (np.einsum("bd,bd->b", si, si) - r1_i["boot_wq"]) / (r1_i["boot_w"] ** 2 - r1_i["boot_w2"]),
            "cone_text": (np.einsum("bd,bd->b", st, st) - r1_t["boot_wq"]) / (r1_t["boot_w"] ** 2 - r1_t["boot_w2"]),
            "paired_cosine": p["boot_cos"] / p["boot_w"],
            "paired_distance": p["boot_dist"] / p["boot_w"],
            "alignment": p["boot_d2"] / p["boot_w"],
        }


def shifted_centroids(r1: dict, r2: dict, g: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``mean_i (x_i + s g) / ||x_i + s g||`` for every step: ``(X^T w_s + s g sum(w_s)) / n``."""
    return (r2["shift_acc"] + steps[:, None] * r2["shift_w"][:, None] * np.asarray(g, np.float64)[None, :]) / r1["n"]


def sweep_centroids(sums) -> tuple[np.ndarray, np.ndarray]:
    """The shift sweep's centroids (image, text) at every step, from the combined sums."""
    r1_i, r1_t, r2_i, r2_t, _, c = sums
    g = c.unit_gap
    return shifted_centroids(r1_i, r2_i, g, c.steps_i), shifted_centroids(r1_t, r2_t, g, c.steps_t)


def local(I: np.ndarray, T: np.ndarray, Ip: np.ndarray | None, Tp: np.ndarray | None, *, B: int = 0, seed: int = 0,
          identity: bool = False, steps_of=None) -> tuple[dict, dict, dict, dict, dict | None, Centroids]:
    """All the sums over rows held in this process (each array one range): ``(round 1 image,
    round 1 text, round 2 image, round 2 text, pair sums or None, centroids)``.
    ``steps_of(gap)``: the shift sweep's (image steps, text steps) for the gap's length."""
    r1_i = modality_round1(I, B=B, seed=seed, stream=IMAGE)
    r1_t = modality_round1(T, B=B, seed=seed, stream=TEXT)
    c = Centroids.of(r1_i, r1_t, steps_of)
    r2_i, r2_t = modality_round2(I, c, text=False), modality_round2(T, c, text=True)
    p = None if Ip is None else pair_sums(Ip, Tp, c, B=B, seed=seed, identity=identity)
    return r1_i, r1_t, r2_i, r2_t, p, c
