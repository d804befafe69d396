"""Figures for the reports (matplotlib, headless). Every function writes one PNG and returns its path."""

from __future__ import annotations

from pathlib import Path, PurePath

import numpy as np

IMAGE_COLOUR = "#1f77b4"
TEXT_COLOUR = "#d62728"
DPI = 130


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": DPI, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.grid": True, "grid.alpha": 0.3, "font.size": 10})
    return plt


def _wrap(text: str, width: int = 70, max_lines: int | None = None) -> str:
    """Each line of ``text`` wrapped at word boundaries (cut with an ellipsis past ``max_lines``)."""
    import textwrap

    return "\n".join(textwrap.fill(line, width, max_lines=max_lines, placeholder=" …") for line in text.split("\n"))


def _save(fig, path, *, layout: bool = True) -> str:
    import matplotlib.pyplot as plt

    from clipscope.fileio import atomic_path

    path = Path(path)
    if layout:
        fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            # bbox_inches="tight": titles, colour-bar labels and rotated ticks are never clipped
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", bbox_inches="tight", pad_inches=0.08)
    finally:
        plt.close(fig)
    return str(path)


def project_2d(X: np.ndarray, method: str = "umap", seed: int = 0) -> np.ndarray:
    """2-D coordinates of the rows of X by UMAP (cosine metric) or PCA."""
    if method == "pca" or len(X) < 20:
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(X)
    import os
    import warnings

    from clipscope.extract import cache_dir

    # numba compiles UMAP on first use (~20 s); its on-disk cache makes later runs start fast.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap

        return umap.UMAP(n_components=2, metric="cosine", random_state=seed, n_jobs=1,
                         n_neighbors=min(15, len(X) - 1)).fit_transform(X)


def projection_sample(I, T, pairs, *, seed: int = 0, max_points: int = 2000) -> dict:
    """A seeded sample of at most ``max_points`` rows per modality and the pairs among them: all
    a projection plot needs (so no full embedding matrix has to reach the plotting code)."""
    rng = np.random.default_rng(seed)
    ii = np.sort(rng.choice(len(I), min(len(I), max_points), replace=False))
    tt = np.sort(rng.choice(len(T), min(len(T), max_points), replace=False))
    local = None
    if pairs is not None and len(pairs):
        pos_i, pos_t = np.full(len(I), -1, np.int64), np.full(len(T), -1, np.int64)
        pos_i[ii], pos_t[tt] = np.arange(len(ii)), np.arange(len(tt))
        a, b = pos_i[pairs[:, 0]], pos_t[pairs[:, 1]]
        keep = (a >= 0) & (b >= 0)  # both rows of the pair were sampled
        local = np.stack([a[keep], b[keep]], 1)
    return {"I": np.asarray(I[ii]), "T": np.asarray(T[tt]), "pairs": local, "totals": (len(I), len(T))}


def projection(I, T, pairs, path, *, title: str, method: str = "umap", seed: int = 0, max_lines: int = 60,
               labels=("image", "text"), totals=None) -> str:
    """Both modalities in one 2-D projection, coloured by modality, with lines for sampled pairs.
    ``I``, ``T``, ``pairs``: a sample (:func:`projection_sample`); ``totals``: the full row counts."""
    plt = _plt()
    rng = np.random.default_rng(seed)
    totals = totals or (len(I), len(T))
    Y = project_2d(np.concatenate([I, T]), method, seed)
    yi, yt = Y[: len(I)], Y[len(I):]
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    if pairs is not None and len(pairs):
        for a, b in pairs[rng.permutation(len(pairs))[:max_lines]]:
            ax.plot([yi[a, 0], yt[b, 0]], [yi[a, 1], yt[b, 1]], color="grey", lw=0.5, alpha=0.5, zorder=1)
    ax.scatter(yi[:, 0], yi[:, 1], s=8, c=IMAGE_COLOUR, label=f"{labels[0]} ({totals[0]})", alpha=0.7, zorder=2)
    ax.scatter(yt[:, 0], yt[:, 1], s=8, c=TEXT_COLOUR, label=f"{labels[1]} ({totals[1]})", alpha=0.7, zorder=2)
    name = "UMAP" if method == "umap" else "PCA"
    ax.set_xlabel(f"{name} 1")
    ax.set_ylabel(f"{name} 2")
    shown = "" if len(I) >= totals[0] and len(T) >= totals[1] else f" [sample: {len(I)} + {len(T)} rows]"
    ax.set_title(_wrap(title + shown), fontsize=10)
    ax.legend(loc="best", markerscale=2)
    return _save(fig, path)


def cosine_histograms(paired: np.ndarray, unpaired: np.ndarray, path, *, title: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    bins = np.linspace(min(paired.min(), unpaired.min()), max(paired.max(), unpaired.max()), 60)
    ax.hist(unpaired, bins=bins, density=True, alpha=0.55, color="grey", label=f"unpaired (n={len(unpaired)})")
    ax.hist(paired, bins=bins, density=True, alpha=0.65, color=IMAGE_COLOUR, label=f"paired (n={len(paired)})")
    ax.axvline(paired.mean(), color=IMAGE_COLOUR, ls="--", lw=1)
    ax.axvline(unpaired.mean(), color="black", ls="--", lw=1)
    ax.set_xlabel("cosine similarity (image, text)")
    ax.set_ylabel("density")
    ax.set_title(_wrap(title), fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def per_dimension_bars(table: dict, path, *, title: str) -> str:
    plt = _plt()
    rows = table["rows"]
    fig, ax = plt.subplots(figsize=(7, 4))
    dims = [str(r["dim"]) for r in rows]
    ax.bar(dims, [r["signed_gap"] for r in rows], color=[IMAGE_COLOUR if r["signed_gap"] > 0 else TEXT_COLOUR for r in rows])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("embedding dimension")
    ax.set_ylabel("mean(image) - mean(text)")
    ax.set_title(_wrap(f"{title}\ntop {len(rows)} dimensions carry {100 * table['top_share']:.1f}% of the squared gap"), fontsize=10)
    ax.tick_params(axis="x", rotation=90, labelsize=8)
    return _save(fig, path)


def shift_sweep_curves(table: dict, path, *, title: str) -> str:
    plt = _plt()
    rows = table["rows"]
    keys = [k for k in ("i2t_recall@1", "t2i_recall@1", "i2t_recall@5", "t2i_recall@5", "zero_shot_accuracy") if k in rows[0]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, variant in zip(axes, ("image_only", "symmetric")):
        rr = [r for r in rows if r["variant"] == variant]
        x = [r["fraction"] for r in rr]
        # curves that coincide (e.g. both recalls at 1.0) stay visible: each its own marker and dash, wider below
        for j, k in enumerate(keys):
            ax.plot(x, [r[k] for r in rr], marker="osD^v"[j % 5], ms=4, lw=2.6 - 0.4 * j,
                    ls=("-", "--", ":", "-.", "-")[j % 5], alpha=0.85, label=k)
        ax2 = ax.twinx()
        ax2.plot(x, [r["centroid_distance"] for r in rr], color="black", ls="--", lw=1, label="centroid distance")
        ax2.set_ylabel("centroid distance (dashed)")
        ax2.grid(False)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlabel("shift delta / gap (1 = centroids meet)")
        ax.set_ylabel("score")
        ax.set_title(_wrap(f"{variant.replace('_', '-')} shift"), fontsize=10)
    if keys:  # one legend for both panels, below them, so it covers no curve
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(keys), fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, -0.04))
    fig.suptitle(_wrap(title, 110), fontsize=10)
    return _save(fig, path)


def bars(values: dict, path, *, title: str, ylabel: str, errors: dict | None = None) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    names = list(values)
    vals = [values[n] for n in names]
    yerr = None
    if errors:
        yerr = np.array([[values[n] - errors[n][0], errors[n][1] - values[n]] if errors.get(n) else [0, 0] for n in names]).T
    many = len(names) > 6
    fig.set_size_inches(max(6.4, 0.32 * len(names) + 2), 4.4 if many else 4)
    ax.bar(range(len(names)), vals, yerr=yerr, color=IMAGE_COLOUR, capsize=3)
    ax.set_xticks(range(len(names)), [n if len(n) <= 24 else n[:23] + "…" for n in names],
                  rotation=45 if many else 0, ha="right" if many else "center", fontsize=8 if many else 9)
    ax.set_ylabel(ylabel)
    ax.set_title(_wrap(title), fontsize=10)
    return _save(fig, path)


def histogram(series: dict, path, *, title: str, xlabel: str, bins: int = 50) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    allv = np.concatenate([np.asarray(v, float) for v in series.values() if len(v)])
    edges = np.linspace(allv.min(), allv.max() if allv.max() > allv.min() else allv.min() + 1e-6, bins)
    for name, v in series.items():
        ax.hist(v, bins=edges, alpha=0.55, density=True, label=f"{name} (n={len(v)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(_wrap(title), fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def lines(x, series: dict, path, *, title: str, xlabel: str, ylabel: str, bands: dict | None = None) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, y in series.items():
        ax.plot(x, y, marker="o", ms=3, label=name)
        if bands and name in bands:
            lo, hi = bands[name]
            ax.fill_between(x, lo, hi, alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(_wrap(title), fontsize=10)
    if len(series) > 1:
        ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def reliability(bins: list[dict], path, *, title: str) -> str:
    """A reliability diagram: each confidence bin's accuracy as a bar over the bin, the diagonal of
    perfect calibration, and the number of images in each non-empty bin above its bar."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    filled = [b for b in bins if b["count"]]
    ax.bar([b["lo"] for b in filled], [b["accuracy"] for b in filled], width=[b["hi"] - b["lo"] for b in filled],
           align="edge", color=IMAGE_COLOUR, alpha=0.75, edgecolor="white", label="accuracy in the bin")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect calibration")
    for b in filled:
        ax.annotate(str(b["count"]), ((b["lo"] + b["hi"]) / 2, b["accuracy"]), textcoords="offset points",
                    xytext=(0, 2), ha="center", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence (max softmax probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(_wrap(title), fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def heatmap(matrix: np.ndarray, rows: list[str], cols: list[str], path, *, title: str, cbar: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(cols), 1.2 + 0.35 * len(rows)))
    im = ax.imshow(matrix, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.grid(False)
    for (r, c), v in np.ndenumerate(matrix):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < matrix.mean() else "black")
    fig.colorbar(im, ax=ax, label=cbar)
    ax.set_title(_wrap(title), fontsize=10)
    return _save(fig, path)


def image_grid(images: list, captions: list[str], path, *, title: str, ncols: int = 4) -> str:
    return _save(image_grid_figure(images, captions, title=title, ncols=ncols), path, layout=False)


CAPTION_CHARS = 38  # characters of an 8-point caption that fit a 2.6-inch panel (checked by a test)


def image_grid_figure(images: list, captions: list[str], *, title: str, ncols: int = 4):
    """Images in a grid, each under its caption wrapped to the panel's width."""
    plt = _plt()
    n = len(images)
    nrows = max(1, (n + ncols - 1) // ncols)
    captions = [_wrap(c, CAPTION_CHARS, max_lines=3) for c in captions]
    lines = max((c.count("\n") + 1 for c in captions), default=1)  # room for every caption line above its image
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, (2.6 + 0.13 * lines) * nrows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(np.asarray(images[k]))
            ax.set_title(captions[k], fontsize=8)
    fig.suptitle(_wrap(title, 110), fontsize=10, y=1.0)
    fig.tight_layout(rect=(0, 0, 1, 0.96))  # keep the title clear of the first row's captions
    return fig


def drift_sample(X, Y, moved, *, seed: int = 0, max_points: int = 1500) -> dict:
    """A seeded sample of rows (always including the most-moved ones) for :func:`drift_projection`."""
    rng = np.random.default_rng(seed)
    idx = np.unique(np.concatenate([rng.choice(len(X), min(len(X), max_points), replace=False), moved]))
    pos = {int(r): k for k, r in enumerate(idx)}
    return {"X": np.asarray(X[idx]), "Y": np.asarray(Y[idx]), "moved": np.array([pos[int(r)] for r in moved], np.int64)}


def drift_projection(X, Y, moved, path, *, title: str, seed: int = 0) -> str:
    """Old and new rows (a sample, :func:`drift_sample`) in one PCA projection; arrows for the most-moved rows."""
    from sklearn.decomposition import PCA

    plt = _plt()
    P = PCA(n_components=2, random_state=seed).fit(np.concatenate([X, Y]))
    a, b = P.transform(X), P.transform(Y)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    ax.scatter(a[:, 0], a[:, 1], s=6, c="grey", alpha=0.5, label="old (aligned)")
    ax.scatter(b[:, 0], b[:, 1], s=6, c=IMAGE_COLOUR, alpha=0.5, label="new")
    for k in moved:
        ax.annotate("", xy=b[k], xytext=a[k], arrowprops={"arrowstyle": "->", "color": TEXT_COLOUR, "lw": 1})
    ax.set_xlabel("PCA 1")
    ax.set_ylabel("PCA 2")
    ax.set_title(_wrap(title), fontsize=10)
    ax.legend()
    return _save(fig, path)


class FigureRecorder:
    """Stands in for this module while a task lays out its figures: each plotting call is
    recorded as a spec (function name, arguments) with its file name, and drawn later by
    :func:`draw` into the folder a report is saved to. Arguments are small by construction
    (tasks pass samples), so no embedding matrix travels with a report."""

    def __init__(self):
        self.specs: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name):
        if name.startswith("_") or name not in PLOTTERS:
            raise AttributeError(name)

        def record(*args, **kwargs):
            self.specs.append((name, args, kwargs))
            path = next(a for a in args if isinstance(a, PurePath))
            return str(path)

        return record

    def __getstate__(self):
        return self.__dict__

    def __setstate__(self, state):
        self.__dict__.update(state)


def noise_model(dims: dict, fits: dict, qq: tuple, path, *, title: str) -> str:
    """Histograms of a few dimensions' paired differences with their fitted normals, and a Q-Q
    plot of the pooled standardised differences."""
    plt = _plt()
    from scipy import stats

    fig, axes = plt.subplots(1, len(dims) + 1, figsize=(3.0 * (len(dims) + 1), 3.2))
    for ax, (name, v) in zip(axes, dims.items()):
        v = np.asarray(v, float)
        ax.hist(v, bins=40, density=True, color=IMAGE_COLOUR, alpha=0.6)
        mu, sd = fits[name]
        x = np.linspace(v.min(), v.max(), 200)
        ax.plot(x, stats.norm.pdf(x, mu, sd if sd > 0 else 1e-9), color="black", lw=1)
        ax.set_title(name, fontsize=9)
    theory, sample = (np.asarray(a, float) for a in qq)
    axes[-1].plot(theory, sample, ".", ms=3, color=IMAGE_COLOUR)
    lim = [min(theory.min(), sample.min()), max(theory.max(), sample.max())]
    axes[-1].plot(lim, lim, color="black", lw=1)
    axes[-1].set_xlabel("normal quantile")
    axes[-1].set_ylabel("standardised difference")
    axes[-1].set_title("Q-Q, all dimensions", fontsize=9)
    fig.suptitle(_wrap(title, 110), fontsize=10)
    return _save(fig, path)


PLOTTERS = ("projection", "cosine_histograms", "per_dimension_bars", "shift_sweep_curves", "bars", "histogram", "lines",
            "heatmap", "image_grid", "drift_projection", "noise_model", "reliability")


def draw(specs, out_dir, *, progress: bool = False) -> None:
    """Draw recorded figure specs into ``out_dir`` (relative file names become paths there)."""
    import sys

    from tqdm import tqdm

    out_dir = Path(out_dir)
    for name, args, kwargs in tqdm(specs, desc="figures", unit="figure", file=sys.stderr, disable=not progress,
                                   leave=False):
        args = tuple(out_dir / a if isinstance(a, PurePath) else a for a in args)
        globals()[name](*args, **kwargs)
