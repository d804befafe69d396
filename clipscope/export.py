"""Rows people can look at: one row per image and per text of a cache, with the per-row results
of the runs in a folder, as a parquet file (pandas, DuckDB and Embedding Atlas read it as it
is) or a TensorBoard projector log.

Columns (``SCHEMA``; commands/export.md documents each):
  row, modality, id, caption, label, classname   what the row is
  text                                           a caption, or an image's id and class (search)
  embedding                                      the L2-normalised embedding (float32 list)
  x, y                                           a 2-D projection of all rows together
  paired_cosine                                  mean cosine with the rows it is paired with
  relative_alignment                             mean over its pairs of Oh et al.'s relative
                                                 alignment (clipscope.analysis.geometry)
  blind_partner, blind_clip_cosine,              from blindpairs.json: the row's CLIP-blind
  blind_reference_cosine                         partner with the largest cosine gap
  drift, drift_aligned_cosine                    from drift.json: how far the row moved
  inversion_cosine                               the cache's OTI (images) / OVI (texts) final
                                                 cosine, when invert has run
  corruption_cosine                              from robustness.json: the image's mean cosine
                                                 between its clean and corrupted embeddings
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clipscope.errors import ClipscopeError

COLUMNS = ("row", "modality", "id", "caption", "label", "classname", "text", "embedding", "x", "y", "paired_cosine",
           "relative_alignment", "blind_partner", "blind_clip_cosine", "blind_reference_cosine", "drift",
           "drift_aligned_cosine", "inversion_cosine", "corruption_cosine")


def _types():
    import pyarrow as pa

    text, num = pa.string(), pa.float64()
    return {"row": pa.int64(), "modality": text, "id": text, "caption": text, "label": pa.int64(), "classname": text,
            "text": text, "x": num, "y": num, "paired_cosine": num, "relative_alignment": num, "blind_partner": text,
            "blind_clip_cosine": num, "blind_reference_cosine": num, "drift": num, "drift_aligned_cosine": num,
            "inversion_cosine": num, "corruption_cosine": num}


def _runs(folder: Path | None) -> dict[str, dict]:
    """The reports under ``folder`` by command (the last one found of each)."""
    out = {}
    if folder is None:
        return out
    if not Path(folder).is_dir():
        raise ClipscopeError(f"--runs {folder}: no such folder; give a folder of run reports (e.g. a demo's output)")
    for path in sorted(Path(folder).rglob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "command" in doc and "metrics" in doc:
            out[doc["command"]] = doc
    return out


def _per_row_mean(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``values`` grouped by ``rows`` into an array of n (NaN where a row has none)."""
    ok = np.isfinite(values)
    total = np.bincount(rows[ok], weights=values[ok], minlength=n)
    count = np.bincount(rows[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def rows_table(cache, *, runs: str | Path | None = None, projection: str = "pca", seed: int = 0):
    """The cache's rows as a ``pyarrow.Table`` (see the module docstring)."""
    import pyarrow as pa

    from clipscope.analysis.geometry import relative_alignment_rows

    TYPES = _types()
    from clipscope.report.plots import project_2d

    reports = _runs(runs)
    I = cache.normalized_image_embeddings()
    T = cache.normalized_text_embeddings() if cache.text_embeddings is not None else np.zeros((0, I.shape[1]), np.float32)
    n_i, n_t = len(I), len(T)
    pairs = cache.pairs
    ids = cache.image_ids or [str(k) for k in range(n_i)]
    captions = cache.text_captions or [None] * n_t
    labels = cache.image_labels
    classnames = cache.classnames or []
    xy = project_2d(np.concatenate([I, T]), method=projection, seed=seed)

    col = {k: [] for k in COLUMNS}
    nan_i, nan_t = np.full(n_i, np.nan), np.full(n_t, np.nan)
    paired_i, paired_t, rel_i, rel_t = nan_i.copy(), nan_t.copy(), nan_i.copy(), nan_t.copy()
    if len(pairs):
        cos = np.einsum("pd,pd->p", I[pairs[:, 0]], T[pairs[:, 1]]).astype(np.float64)
        paired_i, paired_t = _per_row_mean(cos, pairs[:, 0], n_i), _per_row_mean(cos, pairs[:, 1], n_t)
        ra = relative_alignment_rows(I, T, pairs)
        rel_i, rel_t = _per_row_mean(ra, pairs[:, 0], n_i), _per_row_mean(ra, pairs[:, 1], n_t)
    blind = {}
    for r in (reports.get("blindpairs", {}).get("tables", {}).get("blind_pairs") or []):
        for me, other in (("a", "b"), ("b", "a")):
            gap = r["clip_cosine"] - r["reference_cosine"]
            if r[me] not in blind or gap > blind[r[me]][3]:
                blind[r[me]] = (r[other], r["clip_cosine"], r["reference_cosine"], gap)
    drift = {m: {r["id"]: r for r in (reports.get("drift", {}).get("tables", {}).get(f"most_moved_{m}") or [])}
             for m in ("image", "text")}
    inv = {"image": _inversion(cache, "image/oti_cosine", n_i), "text": _inversion(cache, "text/ovi_cosine", n_t)}
    corrupted = {r["id"]: r["drift"] for r in (reports.get("robustness", {}).get("tables", {}).get("per_image_drift") or [])}

    for modality, X, names in (("image", I, ids), ("text", T, [f"text-{k}" for k in range(n_t)])):
        offset = 0 if modality == "image" else n_i
        for k in range(len(X)):
            col["row"].append(k)
            col["modality"].append(modality)
            col["id"].append(names[k])
            col["caption"].append(captions[k] if modality == "text" else None)
            label = int(labels[k]) if modality == "image" and labels is not None else None
            col["label"].append(label)
            name = classnames[label] if label is not None and label < len(classnames) else None
            col["classname"].append(name)
            col["text"].append(captions[k] if modality == "text" else (f"{names[k]} ({name})" if name else names[k]))
            col["x"].append(float(xy[offset + k, 0]))
            col["y"].append(float(xy[offset + k, 1]))
            col["paired_cosine"].append(_num((paired_i if modality == "image" else paired_t)[k]))
            col["relative_alignment"].append(_num((rel_i if modality == "image" else rel_t)[k]))
            b = blind.get(names[k]) if modality == "image" else None
            col["blind_partner"].append(b[0] if b else None)
            col["blind_clip_cosine"].append(b[1] if b else None)
            col["blind_reference_cosine"].append(b[2] if b else None)
            d = drift[modality].get(names[k] if modality == "image" else (captions[k] or names[k]))
            col["drift"].append(d["drift"] if d else None)
            col["drift_aligned_cosine"].append(d.get("aligned_cosine") if d else None)
            col["inversion_cosine"].append(_num(inv[modality][k]))
            col["corruption_cosine"].append(corrupted.get(names[k]) if modality == "image" else None)
    dim = I.shape[1]
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate([I, T]).astype(np.float32).ravel()), dim)
    fields = {k: v for k, v in col.items() if k != "embedding"}
    table = pa.table({k: emb if k == "embedding" else pa.array(fields[k], type=TYPES[k]) for k in COLUMNS})
    meta = {"clipscope": json.dumps({"model": cache.attrs.get("model"), "pretrained": cache.attrs.get("pretrained"),
                                     "data_spec": cache.attrs.get("data_spec"), "projection": projection,
                                     "runs": sorted(reports)})}
    return table.replace_schema_metadata(meta)


def _num(v) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _inversion(cache, key: str, n: int) -> np.ndarray:
    if key in cache:
        last = np.asarray(cache[key][:], np.float64)[:, -1]
        if len(last) == n:
            return last
    return np.full(n, np.nan)


def write_parquet(table, out: str | Path) -> Path:
    """Write atomically (a reader never sees half a file)."""
    import pyarrow.parquet as pq

    from clipscope.fileio import atomic_path

    out = Path(out)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return out


def write_tensorboard(table, out_dir: str | Path, *, source=None, thumb: int = 32) -> Path:
    """A TensorBoard projector log: tensors.tsv, metadata.tsv, projector_config.pbtxt and, when
    the images can be read (``source``), a sprite of thumbnails (image rows first)."""
    from clipscope.fileio import exclusive

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out / "projector_config.pbtxt"):  # a second writer of the folder waits: no mixed set of files
        _write_projector(table, out, source, thumb)
    return out


def _write_projector(table, out: Path, source, thumb: int) -> None:
    from clipscope.fileio import atomic_write_text

    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    atomic_write_text(out / "tensors.tsv", "\n".join("\t".join(f"{v:.7g}" for v in row) for row in emb) + "\n")
    cols = ("modality", "id", "caption", "classname", "paired_cosine")

    def cell(v):
        return "" if v is None else str(v).replace("\t", " ").replace("\n", " ")

    data = {c: table.column(c).to_pylist() for c in cols}
    lines = ["\t".join(cols)] + ["\t".join(cell(data[c][k]) for c in cols) for k in range(len(emb))]
    atomic_write_text(out / "metadata.tsv", "\n".join(lines) + "\n")
    config = ["embeddings {", '  tensor_name: "clipscope"', '  tensor_path: "tensors.tsv"',
              '  metadata_path: "metadata.tsv"']
    if source is not None:
        sprite = _sprite(table, source, thumb)
        if sprite is not None:
            from clipscope.fileio import atomic_path

            with atomic_path(out / "sprite.png") as tmp:
                sprite.save(tmp, format="PNG")
            config += ["  sprite {", '    image_path: "sprite.png"', f"    single_image_dim: {thumb}",
                       f"    single_image_dim: {thumb}", "  }"]
    atomic_write_text(out / "projector_config.pbtxt", "\n".join(config + ["}"]) + "\n")


def _sprite(table, source, thumb: int):
    """One thumbnail per row in a square grid (texts get a blank tile), or None when the
    images cannot be read."""
    from PIL import Image

    n = table.num_rows
    side = int(np.ceil(np.sqrt(n)))
    sheet = Image.new("RGB", (side * thumb, side * thumb), (255, 255, 255))
    index = {x: k for k, x in enumerate(source.image_ids)}
    mods, ids = table.column("modality").to_pylist(), table.column("id").to_pylist()
    for k in range(n):
        if mods[k] != "image" or ids[k] not in index:
            continue
        try:
            im = source.load_image(index[ids[k]]).convert("RGB").resize((thumb, thumb))
        except Exception:  # noqa: BLE001 - an unreadable image leaves a blank tile
            continue
        sheet.paste(im, ((k % side) * thumb, (k // side) * thumb))
    return sheet
