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


# Rows per block when a cache's rows are streamed from the file (--engine stream): 32 MB of
# float32 rows at d = 512 (two are held: one worked on, one being read), large enough that the
# reads run at the disk's rate.
STREAM_BLOCK = 16384


def choose_engine(cache, engine: str, *, per_unit_arrays: int):
    """``(engine, note, rows, units)``: the engine a geometry command runs on, a note saying why
    when it was chosen here, the rows as :func:`modality_rows` gives them for that engine, and
    their sampling units (:class:`clipscope.analysis.units.Units`; pairs are read once).

    ``local``: every row in memory (about ``IN_MEMORY_PEAK`` times their float32 size); ``stream``:
    rows read from the cache block by block, holding only O(n) per-unit sums
    (``per_unit_arrays`` float64 arrays over the sampling units) and one block of rows; ``ray``:
    the same sums shard by shard on a cluster; ``auto``: local when the rows fit comfortably
    (within 80% of the memory budget), else stream. A path that would not fit is refused in one
    line before any work (:func:`clipscope.runtime.require_memory`)."""
    from clipscope.analysis.units import Units
    from clipscope.runtime import IN_MEMORY_PEAK

    _check_rows(cache)
    n_i, n_t, d = cache.n_images, cache.n_texts, int(cache.image_embeddings.shape[1])
    pairs = cache.pairs
    units = Units.from_pairs(pairs, n_i, n_t)
    engine, note = pick_engine(engine, int(IN_MEMORY_PEAK * (n_i + n_t) * d * 4),
                               streaming_memory(n_i + n_t, units.n_units, len(pairs), d, per_unit_arrays),
                               f"{cache.path}: {n_i:,} image and {n_t:,} text rows x {d}")
    return engine, note, modality_rows(cache, lazy=engine != "local", pairs=pairs), units


def pick_engine(engine: str, in_memory: int, streaming: int, rows: str, *, ray: bool = True
                ) -> tuple[str, str | None]:
    """:func:`choose_engine` given the bytes each path needs; ``rows``: what they are, in words;
    ``ray``: whether the command has a Ray engine to suggest."""
    from clipscope.runtime import memory_budget, readable_size, require_memory

    note = None
    if engine == "auto":
        budget, _ = memory_budget()
        engine = "local" if budget is None or in_memory <= 0.8 * budget else "stream"
        if engine == "stream":
            note = (f"engine stream (chosen: the rows need about {readable_size(in_memory)} in memory, more than 80% "
                    f"of the {readable_size(budget)} available): rows read from the cache in blocks of "
                    f"{STREAM_BLOCK:,}, using about {readable_size(streaming)}; the values equal an in-memory run's")
    if engine == "local":
        require_memory(in_memory, f"{rows} in memory",
                       f"pass --engine stream to read the rows from the cache in blocks (about "
                       f"{readable_size(streaming)})" + (", or --engine ray" if ray else ""))
    else:
        require_memory(streaming, f"{rows}, streamed ({'on Ray' if engine == 'ray' else 'in blocks'}: O(rows) "
                                  "sums and one block of rows)",
                       "run it on a machine with more memory (the O(rows) sums are held on every engine)")
    return engine, note


def streaming_memory(n_rows: int, n_units: int, n_pairs: int, dim: int, per_unit_arrays: int) -> int:
    """Bytes a streamed run holds at its peak: ``per_unit_arrays`` float64 arrays over the
    sampling units, the pairs and their layout, each row's unit and squared norm (8 bytes each),
    the blocks of rows being read and worked on, and the sampled rows kept
    (benchmarks/geometry.py --engine stream measures it)."""
    from clipscope.cache import RowReader

    memo = min(RowReader.MEMO_BYTES, n_rows * dim * 4)
    blocks = 8 * min(STREAM_BLOCK, n_rows) * dim * 4  # two modalities: read ahead, read, normalised, products
    return int(8 * per_unit_arrays * n_units + 40 * n_pairs + 16 * n_rows + blocks + memo)


def _check_rows(cache) -> None:
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


def modality_rows(cache, *, lazy: bool = False, pairs: np.ndarray | None = None):
    """(all image rows, all text rows, paired image rows, paired text rows, pairs), normalised.

    ``lazy``: :class:`clipscope.cache.RowReader` objects that read rows only when indexed,
    for work done block by block or shard by shard (the rows need not fit in memory); the
    memory check is :func:`choose_engine`'s. ``pairs``: the cache's pairs, when already read."""
    _check_rows(cache)
    pairs = cache.pairs if pairs is None else pairs
    if lazy:
        I, T = cache.rows("image"), cache.rows("text")
        if len(pairs):
            from clipscope.analysis.gap_sums import row_aligned

            if row_aligned(pairs, len(I), len(T)):  # the paired rows are the rows: no index arrays
                return I, T, I, T, pairs
            return I, T, I.take(pairs[:, 0]), T.take(pairs[:, 1]), pairs
        return I, T, None, None, None
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
