"""The O(n d) gap statistics as sums over row ranges, kept per sampling unit.

Every centroid, cone and paired statistic of `gap`, and the influence of each sampling unit on
it (:mod:`clipscope.analysis.units`), is a sum over rows (or pairs) of something computed from
that row alone once a few vectors are known. So the rows can be split into any ranges (blocks
in one process, shards on Ray, blocks streamed from disk), each range reduced to a few float64
arrays, and the arrays added: the values are the same for every split, up to float64 summation
order. Per-unit quantities are arrays over all units (bincounts), which add the same way.

- round 1, per modality range (:func:`modality_round1`): row count, column sums and squared
  norms, fixed (class-prompt) texts apart;
- :class:`Centroids` from round 1: both centroids, the gap, the direction of the centroid
  cosine's gradient, and the shift sweep's steps;
- round 2, per modality range (:func:`modality_round2`): per unit, its rows' squared norms
  and products with those vectors (the units' row counts come from the units); and the shift
  sweep's weighted sums;
- per pair range (:func:`pair_sums`): per unit, the pair cosines, distances, squared
  distances and angles;
- within units (:func:`within_units`): for units holding several texts (COCO), the products of
  a unit's texts with each other.

:func:`finalize` turns the combined sums into the metrics and their intervals, dropping each
per-unit array once used (with millions of units they are most of a streamed run's memory).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from clipscope.analysis.units import (
    FIXED,
    Z95,
    Units,
    add_per_unit,
    interval,
    mean_influence,
    pair_mean_influence,
    per_unit,
    unit_counts,
)
from clipscope.linalg import contiguous_run, row_blocks, squared_norms, zipped_rows


def combine(parts: list[dict]) -> dict:
    """Add partial sums (dicts of arrays with equal keys)."""
    return {k: sum(p[k] for p in parts) for k in parts[0]}


def modality_round1(X, units: np.ndarray, r0: int = 0, *, alone_from: int | None = None, block: int = 65536,
                    out: dict | None = None, norms_out: np.ndarray | None = None) -> dict:
    """Round-1 sums of the rows ``X`` (global rows r0..r0+len(X) of one modality; ``units``:
    the unit of every global row of the modality, FIXED for fixed texts). ``alone_from``: units
    from this id on hold no image (texts without one, a second, independent sample): their rows'
    sum is kept apart too. Added into ``out`` when given; ``norms_out`` (one float64 per global
    row), when given, receives the rows' squared norms for round 2."""
    d = X.shape[1]
    if out is None:
        out = {"n": np.zeros(()), "sums": np.zeros(d), "sq": np.zeros(()), "fixed_n": np.zeros(()),
               "fixed_sums": np.zeros(d), "fixed_sq": np.zeros(()), "alone_sums": np.zeros(d)}
    for i, xb in row_blocks(X, block):
        q = squared_norms(xb)
        if norms_out is not None:
            norms_out[r0 + i:r0 + i + len(xb)] = q
        u = units[r0 + i:r0 + i + len(xb)]
        fixed = u == FIXED
        out["n"] += len(xb)
        out["sums"] += xb.sum(0, dtype=np.float64)
        out["sq"] += q.sum()
        if fixed.any():
            out["fixed_n"] += fixed.sum()
            out["fixed_sums"] += xb[fixed].sum(0, dtype=np.float64)
            out["fixed_sq"] += q[fixed].sum()
        if alone_from is not None and (u >= alone_from).any():
            out["alone_sums"] += xb[u >= alone_from].sum(0, dtype=np.float64)
    return out


def unit_direction(diff: np.ndarray) -> np.ndarray:
    """The unit gap direction as the shift sweep uses it (float32; zero when there is no gap)."""
    gap = float(np.linalg.norm(diff))
    return (diff / gap).astype(np.float32) if gap > 0 else np.zeros_like(diff, np.float32)


@dataclass
class Centroids:
    """What round 2 needs from round 1."""

    sum_i: np.ndarray
    sum_t: np.ndarray
    n_i: float
    n_t: float
    fixed_sum_t: np.ndarray
    steps_i: np.ndarray | None = None  # shifts s of the image rows along the unit gap direction
    steps_t: np.ndarray | None = None

    @classmethod
    def of(cls, r1_i: dict, r1_t: dict, steps_of=None) -> Centroids:
        """From the round-1 sums; ``steps_of(gap length)``: the sweep's (image, text) steps."""
        c = cls(r1_i["sums"], r1_t["sums"], float(r1_i["n"]), float(r1_t["n"]), r1_t["fixed_sums"])
        if steps_of is not None:
            c.steps_i, c.steps_t = (np.asarray(s, np.float64) for s in steps_of(float(np.linalg.norm(c.gap))))
        return c

    @property
    def mean_i(self) -> np.ndarray:
        return self.sum_i / self.n_i

    @property
    def mean_t(self) -> np.ndarray:
        return self.sum_t / self.n_t

    @property
    def gap(self) -> np.ndarray:
        return self.mean_i - self.mean_t

    @property
    def unit_gap(self) -> np.ndarray:
        return unit_direction(self.gap)

    def cosine_gradients(self) -> tuple[np.ndarray, np.ndarray]:
        """d cos(mean_i, mean_t) / d mean_i and / d mean_t."""
        a, b = self.mean_i, self.mean_t
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na == 0 or nb == 0:
            return np.zeros_like(a), np.zeros_like(b)
        cos = a @ b / (na * nb)
        return b / (na * nb) - cos * a / na ** 2, a / (na * nb) - cos * b / nb ** 2

    def vectors(self, text: bool) -> np.ndarray:
        """(d, 4) float32: the vectors every row of the modality is multiplied with in round 2: its
        modality's sum, the gap, the centroid cosine's gradient and the fixed texts' mean; (d, 3)
        without fixed texts (the mean is zero: a per-unit column less to hold)."""
        grad_i, grad_t = self.cosine_gradients()
        own = self.sum_t if text else self.sum_i
        vectors = [own, self.gap, grad_t if text else grad_i]
        if self.fixed_sum_t.any():
            vectors.append(self.fixed_sum_t / self.n_t)
        return np.stack(vectors, 1).astype(np.float32)


def shifted_sums(xb: np.ndarray, g: np.ndarray, steps: np.ndarray, q: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(sum_i w_s,i x_i, sum_i w_s,i)`` with ``w_s,i = 1 / ||x_i + s g||`` for every step s:
    ``||x + s g||^2 = ||x||^2 + 2 s <x, g> + s^2 ||g||^2``, so no shifted copy of the rows
    (``q``: the rows' squared norms, when the caller has them)."""
    g64 = np.asarray(g, np.float64)
    p = (xb @ np.asarray(g, xb.dtype)).astype(np.float64)  # a float32 product for float32 rows
    q = squared_norms(xb) if q is None else q
    w = np.multiply.outer(p, 2 * steps)  # built in place: this runs on every row of every step
    w += q[:, None]
    w += steps[None, :] ** 2 * (g64 @ g64)
    np.maximum(w, 1e-24, out=w)
    np.sqrt(w, out=w)
    np.reciprocal(w, out=w)  # 1 / ||x + s g||, and 1e12 where that vanishes
    return w.T.astype(xb.dtype) @ xb, w.sum(0)  # a float32 GEMM for float32 rows


# round 2's per-unit sums: squared norms, and products with the modality's sum, the gap, the centroid
# cosine's gradient and (with fixed texts only) the fixed texts' mean
ROUND2_PER_UNIT = ("sq_u", "dot_own", "dot_gap", "dot_grad", "dot_fixed")


def modality_round2(X, c: Centroids, units: np.ndarray, n_units: int, r0: int = 0, *, text: bool,
                    block: int = 65536, out: dict | None = None, reverse: bool = False,
                    norms: np.ndarray | None = None) -> dict:
    """Round-2 sums of one modality's rows r0..r0+len(X): per unit, the rows' squared norms and
    their products with each of :meth:`Centroids.vectors` (ROUND2_PER_UNIT, one array each; the
    units' row counts come from the units themselves); and, when ``c`` has steps, the shift
    sweep's weighted sums (added into ``out`` when given). ``reverse``: blocks last first
    (:func:`clipscope.linalg.row_blocks`). ``norms``: the rows' squared norms from round 1, when
    kept (else computed again)."""
    V = c.vectors(text)
    dot_keys = ROUND2_PER_UNIT[1:1 + V.shape[1]]
    steps = c.steps_t if text else c.steps_i
    if out is None:
        out = {k: np.zeros(n_units) for k in ("sq_u", *dot_keys)}
        if steps is not None:
            out.update(shift_acc=np.zeros((len(steps), X.shape[1])), shift_w=np.zeros(len(steps)))
    g = c.unit_gap
    for i, xb in row_blocks(X, block, reverse=reverse):
        u = units[r0 + i:r0 + i + len(xb)]
        q = squared_norms(xb) if norms is None else norms[r0 + i:r0 + i + len(xb)]
        add_per_unit(out["sq_u"], q, u)
        dots = (xb @ V).astype(np.float64)
        for j, key in enumerate(dot_keys):
            add_per_unit(out[key], dots[:, j], u)
        if steps is not None:
            acc, w = shifted_sums(xb, g, steps, q)
            out["shift_acc"] += acc
            out["shift_w"] += w
    return out


PAIR_SUMS = ("count", "cos", "dist", "d2", "angle", "attached_cos")


def pair_sums(Ip, Tp, pair_units: np.ndarray, attached: np.ndarray, n_units: int, k0: int = 0, *,
              block: int = 65536, out: dict | None = None, keys: tuple[str, ...] = PAIR_SUMS) -> dict:
    """Per unit, over pairs k0..k0+len(Ip) (row k of ``Ip`` pairs with row k of ``Tp``;
    ``pair_units``: each global pair's unit, its image's; ``attached``: whether its text belongs
    to that unit, i.e. is not a fixed class prompt): the pairs' count and their sums of cosine,
    distance, squared distance (alignment) and angle, and the cosines of attached pairs (added
    into ``out`` when given); only ``keys`` of them (each is n_units float64 values)."""
    out = {k: np.zeros(n_units) for k in keys} if out is None else out
    for i, a in row_blocks(Ip, block):
        b = np.asarray(Tp[i:i + block])
        u = pair_units[k0 + i:k0 + i + len(a)]
        cos = np.einsum("ij,ij->i", a, b, dtype=np.float64)
        qa = np.einsum("ij,ij->i", a, a).astype(np.float64)
        qb = np.einsum("ij,ij->i", b, b).astype(np.float64)
        d2 = np.maximum(0.0, qa + qb - 2.0 * cos)
        for key in out:
            add_per_unit(out[key], _per_pair(key, cos, d2, attached[k0 + i:k0 + i + len(a)]), u)
    return out


def _per_pair(key: str, cos: np.ndarray, d2: np.ndarray, attached: np.ndarray) -> np.ndarray:
    """One of PAIR_SUMS's values for each pair of a block, from its cosines and squared distances."""
    if key == "count":
        return np.ones(len(cos))
    if key == "dist":
        return np.sqrt(d2)
    if key == "angle":
        return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    if key == "attached_cos":
        return np.where(attached, cos, 0.0)
    return {"cos": cos, "d2": d2}[key]


def within_units(X, groups: list[np.ndarray], units: np.ndarray, n_units: int) -> np.ndarray:
    """Per unit, the sum over ordered pairs of distinct rows of the unit of <x_r, x_s> (so
    ||sum of the unit's rows||^2 = this + their squared norms); ``groups``: the unit groups of
    :func:`clipscope.analysis.units.unit_groups` (rows of units with several rows)."""
    from clipscope.analysis.units import within_unit_sums

    if not groups:
        return np.zeros(1)  # no unit has two rows: zero for every unit (broadcasts; not O(n))
    per_row = within_unit_sums(X, groups, lambda dots: dots, len(units))
    return per_unit(per_row, units, n_units)


def shifted_centroids(n: float, r2: dict, g: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``mean_i (x_i + s g) / ||x_i + s g||`` for every step: ``(X^T w_s + s g sum(w_s)) / n``."""
    return (r2["shift_acc"] + steps[:, None] * r2["shift_w"][:, None] * np.asarray(g, np.float64)[None, :]) / n


@dataclass
class GapSums:
    """The combined sums of one cache's rows: what :func:`finalize` needs."""

    r1_i: dict
    r1_t: dict
    r2_i: dict
    r2_t: dict
    pairs: dict | None
    within_t: np.ndarray
    centroids: Centroids
    units: Units

    def release_per_unit(self) -> None:
        """Drop the per-unit arrays (O(n) each) once :func:`finalize` has used them; the
        centroids and the sweep's sums stay."""
        for part in (self.r2_i, self.r2_t):
            for key in ROUND2_PER_UNIT:
                part.pop(key, None)
        self.pairs = None
        self.within_t = None

    def sweep_centroids(self) -> tuple[np.ndarray, np.ndarray]:
        """The shift sweep's centroids (image, text) at every step."""
        c, g = self.centroids, self.centroids.unit_gap
        return (shifted_centroids(c.n_i, self.r2_i, g, c.steps_i), shifted_centroids(c.n_t, self.r2_t, g, c.steps_t))


def pair_layout(pairs: np.ndarray, units: Units) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's unit (its image's) and whether its text belongs to that unit."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    return units.image_unit[pairs[:, 0]], units.text_unit[pairs[:, 1]] == units.image_unit[pairs[:, 0]]


def local(I, T, pairs: np.ndarray | None, units: Units, *, steps_of=None, block: int = 65536) -> GapSums:
    """All the sums over rows held (or readable, e.g. :class:`clipscope.cache.RowReader`) in
    this process, ``block`` rows at a time."""
    from clipscope.analysis.units import unit_groups

    U = units.n_units
    p = None
    # the rows' squared norms, kept from round 1 for round 2 (8 bytes a row; not computed twice)
    q_i, q_t = np.empty(len(I)), np.empty(len(T))
    if pairs is not None and len(pairs) and row_aligned(pairs, len(I), len(T)):
        # image row k pairs with text row k (1:1 data as imported): each pass reads both modalities'
        # block k together, and the pair sums (which need no centroid) join round 1, so rows streamed
        # from a file are read twice in all, and the second, busier pass has less to do; it runs
        # last block first, where the first pass's page cache still holds rows
        pu, attached = pair_layout(pairs, units)
        r1_i, r1_t = None, None
        for i, (xi, xt) in row_blocks(zipped_rows(I, T), block):
            r1_i = modality_round1(xi, units.image_unit, i, block=block, out=r1_i, norms_out=q_i)
            r1_t = modality_round1(xt, units.text_unit, i, alone_from=units.n_images, block=block, out=r1_t,
                                   norms_out=q_t)
            p = pair_sums(xi, xt, pu, attached, U, i, block=block, out=p)
        del pu, attached
        c = Centroids.of(r1_i, r1_t, steps_of)
        r2_i, r2_t = None, None
        # the texts' products beside the images' (numpy lets go of the GIL), each with one BLAS
        # thread: two multi-threaded GEMMs at once on few cores are slower than one after the other
        with ThreadPoolExecutor(1) as pool, threadpool_limits(1, user_api="blas"):
            for i, (xi, xt) in row_blocks(zipped_rows(I, T), block, reverse=True):
                texts = pool.submit(modality_round2, xt, c, units.text_unit, U, i, text=True, block=block, out=r2_t,
                                    norms=q_t)
                r2_i = modality_round2(xi, c, units.image_unit, U, i, text=False, block=block, out=r2_i, norms=q_i)
                r2_t = texts.result()
    else:
        r1_i = modality_round1(I, units.image_unit, block=block, norms_out=q_i)
        r1_t = modality_round1(T, units.text_unit, alone_from=units.n_images, block=block, norms_out=q_t)
        c = Centroids.of(r1_i, r1_t, steps_of)
        r2_t = modality_round2(T, c, units.text_unit, U, text=True, block=block, reverse=True, norms=q_t)
        r2_i = modality_round2(I, c, units.image_unit, U, text=False, block=block, reverse=True, norms=q_i)
        if pairs is not None and len(pairs):
            p = pair_sums(Gather(I, pairs[:, 0]), Gather(T, pairs[:, 1]), *pair_layout(pairs, units), U, block=block)
    del q_i, q_t
    within = within_units(T, unit_groups(units.text_unit), units.text_unit, units.n_units)
    return GapSums(r1_i, r1_t, r2_i, r2_t, p, within, c, units)


def row_aligned(pairs: np.ndarray, n_images: int, n_texts: int) -> bool:
    """Whether pair k is (image row k, text row k) for every row of both modalities."""
    k = np.arange(len(pairs))
    return len(pairs) == n_images == n_texts and bool((pairs[:, 0] == k).all() and (pairs[:, 1] == k).all())


class Gather:
    """Rows ``X[idx]`` read block by block when sliced (no gathered copy of all of them)."""

    def __init__(self, X, idx: np.ndarray):
        self.X, self.idx = X, idx
        self.shape = (len(idx), X.shape[1])

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, sl: slice) -> np.ndarray:
        idx = self.idx[sl]
        if len(idx) and contiguous_run(idx):
            return self.X[idx[0]:idx[0] + len(idx)]  # a contiguous run (1:1 pairs in order): a view, or one slab
        return self.X[idx]


# --------------------------------------------------------------------------- metrics from the sums


def cone_value_and_influence(sums: np.ndarray, count_u: np.ndarray, unit_sq: np.ndarray, dot_own: np.ndarray,
                             n_fixed: float, fixed_sq: float) -> tuple[float, np.ndarray | None]:
    """The cone (mean <x, y> over ordered pairs of rows of one modality from different units,
    fixed rows pairing with every other row) and its per-unit influences (None when every row
    is fixed: a constant). Per unit: ``count_u`` rows, ``unit_sq`` = ||sum of its rows||^2,
    ``dot_own`` = <sum of its rows, sum of all rows>."""
    n = float(count_u.sum() + n_fixed)
    total = float(sums @ sums) - float(unit_sq.sum()) - fixed_sq
    count = n * n - float((count_u ** 2).sum()) - n_fixed
    if count <= 0:
        return float("nan"), None
    H = dot_own - unit_sq  # <S_u, S - S_u>
    M = count_u * (n - count_u)
    theta, psi = pair_mean_influence(H, M, total, count, symmetric=True)
    return theta, (psi if count_u.sum() > 0 else None)


def finalize(s: GapSums, second_moment=None) -> dict:
    """Each metric's ``{"value", "ci95", ...}``, its interval from per-unit influences.

    Consumes ``s``'s per-unit arrays (O(units) each), dropping each once used, so that with
    millions of units the temporaries fit where the arrays were (the centroids and the sweep's
    sums stay). ``second_moment()``: :func:`z_second_moment` of these rows, called only when the
    gap is too small for the first-order variance of its estimate to be enough."""
    u = s.units
    U = u.n_units
    c = s.centroids
    out, rmg_terms = {}, {}
    r2_i, r2_t, pairs = s.r2_i, s.r2_t, s.pairs if s.pairs is not None else {}
    # Two strata of units: those holding an image (with its own texts) and texts without an image
    # (an independent sample, when there are any). With x_u = I_u - (N / K) T_u over the first,
    # y_v = (N2 / K) t_v over the second and c the fixed texts' share, mean I - mean T = mean x -
    # mean y - c; every product of means below is replaced by its unbiased U-statistic.
    N, K, N1, N2 = c.n_i, c.n_t, u.n_images, U - u.n_images
    r = N / K
    f = c.fixed_sum_t / K
    one, two = slice(0, N1), slice(N1, U)
    img_sq = r2_i.pop("sq_u")  # ||I_u||^2: image units are 0..N1-1
    txt_sq = r2_t.pop("sq_u")
    txt_sq += s.within_t  # ||sum of the unit's texts||^2
    attached = pairs.pop("attached_cos")[one] if pairs else np.zeros(N1)
    S_t1 = c.sum_t - c.fixed_sum_t - s.r1_t["alone_sums"]
    sum_x = c.sum_i - r * S_t1
    xbar, ybar = sum_x / N1, s.r1_t["alone_sums"] / K
    x_sq = img_sq[one] + r * r * txt_sq[one] - 2 * r * attached
    u_xx = (float(sum_x @ sum_x) - float(x_sq.sum())) / (N1 * (N1 - 1)) if N1 > 1 else float("nan")
    sum_y = N2 * ybar
    u_yy = 0.0 if N2 == 0 else float(ybar @ ybar) if N2 == 1 else \
        (float(sum_y @ sum_y) - float(((N2 / K) ** 2 * txt_sq[two]).sum())) / (N2 * (N2 - 1))
    cy = float(f @ f) + 2 * float(f @ ybar) + u_yy  # unbiased ||mean y + c||^2
    g2 = u_xx - 2 * float(xbar @ (ybar + f)) + cy
    gap_i, gap_t = r2_i.pop("dot_gap"), r2_t.pop("dot_gap")
    x_g = gap_i[one] - r * gap_t[one]  # <x_u, g>
    del gap_i
    if N2 == 0 and N1 > 2:  # one sample of units: the exact U-statistic variance (near a zero gap too)
        if "dot_fixed" in r2_i:  # <x_u, fixed mean> (zero without fixed texts)
            x_sq -= 2 * (r2_i.pop("dot_fixed")[one] - r * r2_t.pop("dot_fixed")[one])
        x_sq += float(f @ f)
        se2 = _gap_square_se(x_g, x_sq, c.gap, N1, second_moment)
    else:
        se2 = strata_se([(2 * x_g, N1), (2 * ((N2 / K) * gap_t[two]), N2)])
    del x_g, x_sq, gap_t
    plug = float(np.linalg.norm(c.gap))
    root = lambda v: math.sqrt(max(0.0, v))  # noqa: E731
    ok = se2 is not None and math.isfinite(g2)
    out["centroid_distance"] = {"value": root(g2) if math.isfinite(g2) else float("nan"),
                                "ci95": [root(g2 - Z95 * se2), root(g2 + Z95 * se2)] if ok else None,
                                "plug_in": plug, "squared_estimate": g2}
    # centroid cosine: <mu_I, mu_T> / (|mu_I| |mu_T|) with each product a U-statistic over units (the
    # plug-in's products of sample means carry each unit's own products, a bias of order 1 / n);
    # interval: delta method with per-unit influences in each stratum
    plug_cos = float(c.mean_i @ c.mean_t / (np.linalg.norm(c.mean_i) * np.linalg.norm(c.mean_t)))
    s2 = ybar + f
    pairs_ = N1 * (N1 - 1)
    b_sum = r * S_t1
    u_ab = (float(c.sum_i @ b_sum) - r * float(attached.sum())) / pairs_
    del attached
    u_aa = (float(c.sum_i @ c.sum_i) - float(img_sq[one].sum())) / pairs_
    u_bb = r * r * (float(S_t1 @ S_t1) - float(txt_sq[one].sum())) / pairs_
    ip = u_ab + float(c.mean_i @ s2)
    ntt = u_bb + 2 * float(b_sum @ s2) / N1 + cy
    cosine = ip / math.sqrt(u_aa * ntt) if u_aa > 0 and ntt > 0 else plug_cos
    grad_i, grad_t = r2_i.pop("dot_grad"), r2_t.pop("dot_grad")
    phi1 = grad_i[one] + r * grad_t[one]
    phi2 = (N2 / K) * grad_t[two]
    del grad_i, grad_t
    out["centroid_cosine"] = {"value": cosine, "ci95": interval(cosine, strata_se([(phi1, N1), (phi2, N2)])),
                              "plug_in": plug_cos}
    del phi1, phi2
    # cones
    for key, r1, r2, unit_sq, rows_units in (("cone_image", s.r1_i, r2_i, img_sq, u.image_unit),
                                             ("cone_text", s.r1_t, r2_t, txt_sq, u.text_unit)):
        theta, infl = cone_value_and_influence(r1["sums"], unit_counts(rows_units, U), unit_sq, r2.pop("dot_own"),
                                               float(r1["fixed_n"]), float(r1["fixed_sq"]))
        rmg_terms[key] = infl
        fixed = infl is None and math.isfinite(theta)
        out[key] = {"value": theta, "ci95": [theta, theta] if fixed else interval(theta, mean_influence(infl)),
                    **({"fixed": True} if fixed else {})}
    del img_sq, txt_sq, unit_sq
    # paired metrics: means over pairs, per-unit ratio influences
    if pairs:
        count = pairs.pop("count")
        for key, col in (("paired_cosine", "cos"), ("paired_distance", "dist"), ("paired_angle", "angle"),
                         ("alignment", "d2")):
            sums = pairs.pop(col)
            theta = float(sums.sum() / count.sum())
            sums -= theta * count
            sums *= U / count.sum()  # the influences, in place of the sums
            if key == "paired_cosine":
                rmg_terms[key] = sums
            out[key] = {"value": theta, "ci95": interval(theta, mean_influence(sums))}
            del sums
        pc, ci_, ct = out["paired_cosine"]["value"], out["cone_image"]["value"], out["cone_text"]["value"]
        from clipscope.analysis.geometry import relative_modality_gap

        value = relative_modality_gap(pc, ci_, ct)
        infl = np.zeros(U)
        for grad, key in zip(_rmg_gradient(pc, ci_, ct), ("paired_cosine", "cone_image", "cone_text")):
            if rmg_terms[key] is not None:
                infl += grad * rmg_terms.pop(key)
        out["rmg"] = {"value": value, "ci95": interval(value, mean_influence(infl))}
    s.release_per_unit()
    return out


def _rmg_gradient(pc: float, ci: float, ct: float) -> tuple[float, float, float]:
    """Partial derivatives of RMG by (paired cosine, cone image, cone text), by central differences
    (RMG is a smooth rational function away from its clamp)."""
    from clipscope.analysis.geometry import relative_modality_gap

    h = 1e-6
    x = [pc, ci, ct]
    out = []
    for k in range(3):
        up, down = list(x), list(x)
        up[k] += h
        down[k] -= h
        out.append((relative_modality_gap(*up) - relative_modality_gap(*down)) / (2 * h))
    return tuple(out)


def strata_se(parts) -> float | None:
    """Standard error of a sum of independent strata means: ``sqrt(sum_s Var_s(phi) / n_s)`` over
    the strata ``(phi values, n)`` that have rows (None when one has fewer than 3)."""
    total = 0.0
    for phi, n in parts:
        if n == 0:
            continue
        if n < 3:
            return None
        total += float(np.var(phi, ddof=1)) / n
    return math.sqrt(total)


def _gap_square_se(z_g: np.ndarray, z_sq: np.ndarray, gap: np.ndarray, U: int, second_moment) -> float | None:
    """Standard error of the U-statistic estimate of ||mu_I - mu_T||^2 over units z_u:
    ``Var = 4 (U - 2) / (U (U - 1)) zeta1 + 2 / (U (U - 1)) zeta2`` with ``zeta1 = Var <z, mu>``
    and ``zeta2 = Var <z, z'> = tr(S^2) + 2 mu' S mu`` (S the covariance of z). The second term
    matters only near a zero gap; it needs z's second-moment matrix, so it is computed only when
    its upper bound (tr S)^2 could move the interval by more than 1%."""
    zeta1 = float(np.var(z_g, ddof=1))
    first = 4 * (U - 2) / (U * (U - 1)) * zeta1
    g = np.asarray(gap, np.float64)
    trace = max(0.0, float(z_sq.mean()) - float(g @ g))
    bound = 2 / (U * (U - 1)) * (trace * trace + 2 * trace * float(g @ g))
    if bound <= 0.01 * first or second_moment is None:
        return math.sqrt(first + (bound if second_moment is None else 0.0))
    S = second_moment() / U - np.outer(g, g)
    zeta2 = float((S * S).sum()) + 2 * float(g @ S @ g)
    return math.sqrt(first + 2 / (U * (U - 1)) * zeta2)


def z_second_moment(I, T, units: Units, c: Centroids, *, block: int = 8192) -> np.ndarray:
    """``sum_u z_u z_u^T`` over units, ``z_u = (U / N) I_u - (U / K) T_u - f`` (T_u: the sum of the
    unit's own texts, f: the fixed texts' sum over K): built unit block by unit block, O(U d^2)."""
    U, d = units.n_units, I.shape[1]
    a, b = U / c.n_i, U / c.n_t
    f = c.fixed_sum_t / c.n_t
    tu = units.text_unit
    own = np.flatnonzero(tu >= 0)
    own = own[np.argsort(tu[own], kind="stable")]
    starts = np.searchsorted(tu[own], np.arange(0, U + block, block))
    acc = np.zeros((d, d))
    for k, u0 in enumerate(range(0, U, block)):
        u1 = min(U, u0 + block)
        Z = np.tile(-f, (u1 - u0, 1))
        n_img = max(0, min(u1, units.n_images) - u0)
        if n_img:
            Z[:n_img] += a * np.asarray(I[u0:u0 + n_img], np.float64)
        rows = own[starts[k]:starts[k + 1]]
        if len(rows):
            np.add.at(Z, tu[rows] - u0, -b * np.asarray(T[rows], np.float64))
        acc += Z.T @ Z
    return acc
