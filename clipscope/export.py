"""Rows people can look at: one row per image and per text of a cache, with the per-row results
of the runs in a folder, as a parquet file (pandas, DuckDB and Embedding Atlas read it as it
is) or a TensorBoard projector log. :func:`schema` lists the columns (commands/export.md shows it): the
cache's own, then each command's declared ``row_columns``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clipscope.errors import ClipscopeError

# the cache's own columns: (column, arrow type, meaning); each command adds its per-row results
# (``row_columns`` / ``row_values`` in its declaration, clipscope.registry)
BASE = (
    ("row", "int64", "row index within its modality"),
    ("modality", "string", "image or text"),
    ("id", "string", "image id; text-<row> for texts"),
    ("caption", "string", "the caption (texts)"),
    ("label", "int64", "class label (images of labelled data)"),
    ("classname", "string", "its class name"),
    ("text", "string", "what Embedding Atlas searches: the caption, or the image id and class"),
    ("embedding", "fixed_size_list<element: float>[D]", "the L2-normalised embedding (float32, D = the model's width)"),
    ("x", "double", "2-D projection of all rows together (--projection)"),
    ("y", "double", "the projection's second axis"),
    ("paired_ids", "list<element: string>",
     "the rows it is paired with in /pairs: a text's image id(s), an image's text ids"),
    ("paired_cosine", "double", "mean cosine with the rows it is paired with in /pairs"),
    ("relative_alignment", "double", "mean over its pairs of 2 (max cosine with a row it is not paired with - "
     "paired cosine) (Oh et al. 2023, as uniformity)"),
)


def schema() -> list[tuple[str, str, str, str | None]]:
    """Every column: (name, arrow type, meaning, the command that fills it or None for the cache)."""
    from clipscope.registry import commands

    return [(*c, None) for c in BASE] + [(*c, cmd.name) for cmd in commands().values() for c in cmd.row_columns]


def _types():
    import pyarrow as pa

    return {"int64": pa.int64(), "string": pa.string(), "double": pa.float64(), "list<element: string>":
            pa.list_(pa.string())}


def schema_table() -> str:
    """The columns as the markdown table commands/export.md shows."""
    rows = [f"| `{name}` | `{kind}` | {meaning} |" for name, kind, meaning, _ in schema()]
    return "\n".join(["| column | type | meaning |", "|---|---|---|", *rows])


def empty_columns(table, reports: dict[str, dict]) -> dict[str, str]:
    """The columns that are null on every row, each with why (in one phrase)."""
    out = {}
    for name, _, _, command in schema():
        if table.column(name).null_count < table.num_rows:
            continue
        if command is None:
            out[name] = "nothing in this cache fills it"
        elif command not in reports:
            out[name] = f"no {command} results for these rows (in --runs or stored in the cache)"
        else:
            out[name] = f"{command}.json in --runs ran on other rows ({reports[command].get('data', {}).get('spec')})"
    return out


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

    columns = schema()
    col = {k[0]: [] for k in columns}
    nan_i, nan_t = np.full(n_i, np.nan), np.full(n_t, np.nan)
    paired_i, paired_t, rel_i, rel_t = nan_i.copy(), nan_t.copy(), nan_i.copy(), nan_t.copy()
    if len(pairs):
        cos = np.einsum("pd,pd->p", I[pairs[:, 0]], T[pairs[:, 1]]).astype(np.float64)
        paired_i, paired_t = _per_row_mean(cos, pairs[:, 0], n_i), _per_row_mean(cos, pairs[:, 1], n_t)
        ra = relative_alignment_rows(I, T, pairs)
        rel_i, rel_t = _per_row_mean(ra, pairs[:, 0], n_i), _per_row_mean(ra, pairs[:, 1], n_t)
    text_ids = [f"text-{k}" for k in range(n_t)]
    partners = {"image": [[] for _ in range(n_i)], "text": [[] for _ in range(n_t)]}
    for i, t in np.asarray(pairs).reshape(-1, 2):
        partners["image"][int(i)].append(text_ids[int(t)])
        partners["text"][int(t)].append(ids[int(i)])

    for modality, X, names in (("image", I, ids), ("text", T, text_ids)):
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
            col["paired_ids"].append(partners[modality][k] or None)
            col["paired_cosine"].append(_num((paired_i if modality == "image" else paired_t)[k]))
            col["relative_alignment"].append(_num((rel_i if modality == "image" else rel_t)[k]))
    from clipscope.registry import commands

    rows = RowKeys(ids, captions, n_i, n_t)
    for cmd in commands().values():
        if cmd.row_values is None:
            continue
        filled = cmd.row_values(reports.get(cmd.name), cache, rows)
        for name, *_ in cmd.row_columns:
            image, text = filled.get(name, (None, None))
            col[name] = [_cell(v) for v in (image if image is not None else [None] * n_i)] + \
                        [_cell(v) for v in (text if text is not None else [None] * n_t)]
    dim = I.shape[1]
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate([I, T]).astype(np.float32).ravel()), dim)
    fields = {k: v for k, v in col.items() if k != "embedding"}
    kinds = {name: kind for name, kind, _, _ in columns}
    table = pa.table({k: emb if k == "embedding" else pa.array(fields[k], type=TYPES[kinds[k]]) for k in kinds})
    meta = {"clipscope": json.dumps({"model": cache.attrs.get("model"), "pretrained": cache.attrs.get("pretrained"),
                                     "data_spec": cache.attrs.get("data_spec"), "projection": projection,
                                     "runs": sorted(reports), "empty_columns": empty_columns(table, reports)})}
    return table.replace_schema_metadata(meta)


def _num(v) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _cell(v):
    """A value for a column: NaN and infinities become null."""
    return _num(v) if isinstance(v, (float, np.floating)) else v


class RowKeys:
    """How a command's per-row results find the cache's rows: images by id, texts by caption
    (``text_key``), each as a list aligned with the cache's rows."""

    def __init__(self, image_ids, captions, n_images: int, n_texts: int):
        self.image_ids, self.captions, self.n_images, self.n_texts = list(image_ids), list(captions), n_images, n_texts

    def images(self, by_id: dict) -> list:
        return [by_id.get(i) for i in self.image_ids]

    def texts(self, by_caption: dict) -> list:
        return [by_caption.get(c if c is not None else f"text-{k}") for k, c in enumerate(self.captions)]


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
