"""Task modules: each ``evaluate(cache, ...)`` returns a :class:`TaskResult` (metrics, tables,
notes) and ``figures(result, out_dir, title)`` writes its PNGs. The CLI only wires options,
calls these and writes files; the library can call them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clipscope.errors import ClipscopeError


@dataclass
class TaskResult:
    metrics: dict
    tables: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    plot_data: dict = field(default_factory=dict)  # arrays for figures; never written to JSON
    inputs: dict = field(default_factory=dict)  # what computed metric specs read (metric_specs.computed_metrics)

    def merge(self, other: TaskResult) -> None:
        """Add another part of the same run (e.g. robustness on --data and on --benchmark sets)."""
        self.metrics.update(other.metrics)
        self.tables.update(other.tables)
        self.notes.extend(other.notes)
        self.config.update(other.config)
        self.counts.update(other.counts)
        self.plot_data.update(other.plot_data)
        self.inputs.update(other.inputs)


def modality_rows(cache, *, lazy: bool = False):
    """(all image rows, all text rows, paired image rows, paired text rows, pairs), normalised.

    ``lazy``: :class:`clipscope.cache.RowReader` objects that read rows only when indexed,
    for work done shard by shard (the rows need not fit in memory)."""
    if cache.image_embeddings is None:
        raise ClipscopeError(f"{cache.path} holds no image embeddings")
    if cache.text_embeddings is None:
        raise ClipscopeError(f"{cache.path} holds no text embeddings; the joint-space diagnostics need both "
                             "modalities (extract with texts, or import --text-embeddings)")
    for what, n in (("image", cache.n_images), ("text", cache.n_texts)):
        if n < 2:
            why = " (every input failed: see clipscope info --failed)" if n == 0 and cache.failed else ""
            raise ClipscopeError(f"{cache.path} holds {n} {what} row(s){why}; these metrics need at least 2 of each "
                                 "modality: extract or import more data")
    pairs = cache.pairs
    if lazy:
        I, T = cache.rows("image"), cache.rows("text")
        if len(pairs):
            return I, T, I.take(pairs[:, 0]), T.take(pairs[:, 1]), pairs
        return I, T, None, None, None
    from clipscope.runtime import IN_MEMORY_PEAK, require_memory

    dim = int(cache.image_embeddings.shape[1])
    require_memory(int(IN_MEMORY_PEAK * (cache.n_images + cache.n_texts) * dim * 4),
                   f"{cache.path}: {cache.n_images:,} image and {cache.n_texts:,} text rows x {dim} in memory",
                   "pass --engine ray to read a cache file's rows shard by shard (a local Ray cluster starts "
                   "without --address)")
    I = cache.normalized_image_embeddings()
    T = cache.normalized_text_embeddings()
    if len(pairs):
        return I, T, _take(I, pairs[:, 0]), _take(T, pairs[:, 1]), pairs
    return I, T, None, None, None


def _take(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """X[rows], as a view (no copy) when rows is 0..n-1, as for imported pair arrays."""
    if len(rows) == len(X) and np.array_equal(rows, np.arange(len(X))):
        return X
    return X[rows]


def class_text(cache) -> np.ndarray | None:
    """Normalised class-prompt embeddings stored at extraction, when the data has classes."""
    if "classes/embeddings" in cache:
        from clipscope.linalg import l2_normalize

        return l2_normalize(cache["classes/embeddings"][:])
    return None


def title_of(provenance: dict, data_spec: str | None) -> str:
    pre = provenance.get("pretrained") or "none"
    model = provenance.get("model") or provenance.get("name") or "model"
    weights = "random init" if pre == "none" else pre
    label = model if weights == model or "imported" in str(weights) else f"{model} ({weights})"
    return f"{label} on {data_spec or 'data'}"


def summary_keys(command: str) -> tuple:
    """The headline metrics of a command, in order (its declaration's summary)."""
    from clipscope.registry import commands

    found = commands().get(command)
    return found.summary if found is not None else ()
