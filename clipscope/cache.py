"""The HDF5 embedding cache: layout, lazy reader and atomic writer.

Layout (schema version :data:`SCHEMA_VERSION`, documented in ``reports/schema/cache.md``)::

    /                    attrs: clipscope_schema, clipscope_version, model, pretrained, embed_dim,
                                open_clip_version, preprocess (JSON), data_spec, data_spec_resolved
                                (its paths made absolute), data_fingerprint, created_utc, source,
                                weights_sha256, library, cache_id (new on every write of the rows)
    /image/embeddings    (N_img, D) raw encoder outputs (float32, or float16 with --dtype)
    /image/ids           (N_img,) UTF-8: path relative to the data root, or an id
    /image/labels        (N_img,) int64, optional
    /classnames          (C,) UTF-8, optional
    /classes/embeddings  (C, D) text embeddings of the class prompts "a photo of a {c}." (zero-shot)
    /classes/prompts     (C,) UTF-8
    /text/embeddings     (N_txt, D) raw encoder outputs
    /text/captions       (N_txt,) UTF-8
    /pairs               (M, 2) int64: image row, text row
    /failed/ids, /failed/reasons   inputs that could not be read
    /image/oti_embeddings, /image/oti_cosine, /text/ovi_embeddings, ...   added by `invert`

A cache is written whole to a temporary file and moved into place (``os.replace``), so readers
never see a half-written file and an existing cache survives a crash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from clipscope.errors import ClipscopeError
from clipscope.fileio import atomic_path, ensure_space
from clipscope.linalg import NonFiniteRows, contiguous_run, l2_normalize

SCHEMA_VERSION = 1
ROW_CHUNK_BYTES = 1 << 20
# Attributes that must agree before rows from two runs may share one cache.
PROVENANCE_KEYS = ("model", "pretrained", "init_seed", "weights_sha256", "preprocess", "data_spec", "data_fingerprint",
                   "dtype")


def _h5py():
    import h5py

    return h5py


def _str_dtype():
    return _h5py().string_dtype("utf-8")


def _row_chunks(n: int, d: int) -> tuple[int, int] | None:
    if n == 0:
        return None
    return (max(1, min(n, ROW_CHUNK_BYTES // max(1, 4 * d))), d)


def _write_rows(group, name: str, rows: np.ndarray, dtype=np.float32, block: int = 65536) -> None:
    """Chunked by rows and resizable (so `invert` and appends can grow it)."""
    n, d = rows.shape
    ds = group.create_dataset(name, shape=(n, d), maxshape=(None, d), dtype=dtype, chunks=_row_chunks(n, d),
                              track_times=False)
    for i in range(0, n, block):
        ds[i:i + block] = np.asarray(rows[i:i + block], dtype=dtype)


def _write_strings(group, name: str, values) -> None:
    """UTF-8 strings; a file name that is not valid UTF-8 (held by Python as surrogate escapes)
    keeps its original bytes, so ids round-trip losslessly through :func:`_decode`."""
    data = [v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v for v in values]
    group.create_dataset(name, data=np.array(data, dtype=object), dtype=_str_dtype(), track_times=False)


def write_cache(path: str | os.PathLike, *, attrs: dict, image_embeddings=None, image_ids=None, image_labels=None,
                classnames=None, text_embeddings=None, text_captions=None, pairs=None, failed=(),
                class_embeddings=None, class_prompts=None, dtype=np.float32, extra: dict | None = None,
                keep: str = "") -> Path:
    """Write a complete cache atomically (temporary file, then ``os.replace``).

    ``image_embeddings`` / ``text_embeddings`` may be any row-sliceable array (a memmap streams).
    ``extra`` maps dataset paths (e.g. ``image/oti_embeddings``) to arrays. ``keep`` is added
    to a disk-full error (what survives for a rerun).
    """
    h5py = _h5py()
    path = Path(path)
    itemsize = np.dtype(dtype).itemsize
    size = sum(_nbytes(a, itemsize) for a in (image_embeddings, text_embeddings, class_embeddings, *(extra or {}).values()))
    size += sum(_nbytes(v) for v in (image_ids, text_captions, classnames, class_prompts, [b for _, b in failed]))
    size += 16 * (0 if pairs is None else len(pairs)) + 8 * (0 if image_labels is None else len(image_labels))
    ensure_space(path.parent, size, path, keep)
    with atomic_path(path, keep=keep) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        _fill(f, attrs=attrs, image_embeddings=image_embeddings, image_ids=image_ids, image_labels=image_labels,
              classnames=classnames, text_embeddings=text_embeddings, text_captions=text_captions, pairs=pairs,
              failed=failed, class_embeddings=class_embeddings, class_prompts=class_prompts, dtype=dtype, extra=extra)
    return path


def _fill(f, *, attrs: dict, image_embeddings=None, image_ids=None, image_labels=None, classnames=None,
          text_embeddings=None, text_captions=None, pairs=None, failed=(), class_embeddings=None, class_prompts=None,
          dtype=np.float32, extra: dict | None = None) -> None:
    """Lay out a cache in an open HDF5 file (on disk, or in memory for :func:`from_arrays`)."""
    import uuid

    from clipscope import __version__

    # cache_id names this write of the rows: data derived from them and stored (crop
    # embeddings) is keyed by it, so a cache rewritten under the same name drops it.
    base = {"clipscope_schema": SCHEMA_VERSION, "clipscope_version": __version__, "cache_id": uuid.uuid4().hex}
    for k, v in {**base, **attrs}.items():
        if v is None:
            continue
        f.attrs[k] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
    img = f.create_group("image", track_order=True)
    if image_embeddings is not None:
        _write_rows(img, "embeddings", image_embeddings, dtype)
        ids = image_ids if image_ids is not None else [str(i) for i in range(len(image_embeddings))]
        _write_strings(img, "ids", ids)
        if image_labels is not None:
            img.create_dataset("labels", data=np.asarray(image_labels, np.int64), track_times=False)
    if classnames is not None:
        _write_strings(f, "classnames", classnames)
    if class_embeddings is not None:
        cls = f.create_group("classes", track_order=True)
        _write_rows(cls, "embeddings", class_embeddings, dtype)
        _write_strings(cls, "prompts", class_prompts)
    txt = f.create_group("text", track_order=True)
    if text_embeddings is not None and len(text_embeddings):
        _write_rows(txt, "embeddings", text_embeddings, dtype)
        caps = text_captions if text_captions is not None else [str(i) for i in range(len(text_embeddings))]
        _write_strings(txt, "captions", caps)
    p = np.zeros((0, 2), np.int64) if pairs is None else np.asarray(pairs, np.int64).reshape(-1, 2)
    f.create_dataset("pairs", data=p, maxshape=(None, 2), track_times=False)
    fg = f.create_group("failed", track_order=True)
    failed = list(failed)
    _write_strings(fg, "ids", [a for a, _ in failed])
    _write_strings(fg, "reasons", [b for _, b in failed])
    for key, arr in (extra or {}).items():
        arr = np.asarray(arr)
        if arr.ndim == 2:
            _write_rows(f.require_group(key.rsplit("/", 1)[0]), key.rsplit("/", 1)[1], arr, dtype)
        else:
            f.create_dataset(key, data=arr, track_times=False)


def _nbytes(values, itemsize: int | None = None) -> int:
    """About how many bytes ``values`` (an array, or a list of strings) take in the file."""
    if values is None:
        return 0
    if hasattr(values, "shape") and getattr(values, "dtype", np.dtype(object)).kind != "O":
        n = int(np.prod(values.shape))
        return n * (itemsize or values.dtype.itemsize)
    return sum(len(str(v).encode("utf-8", "surrogateescape")) + 16 for v in values)


def add_datasets(path: str | os.PathLike, arrays: dict, attrs: dict | None = None, *, keep: str = "") -> None:
    """Add (or replace) datasets in an existing cache, atomically: copy, write, replace.

    Copying keeps the original intact if anything fails midway; caches are embeddings only,
    so the copy is cheap next to the work that produced the new arrays.
    """
    import shutil

    h5py = _h5py()
    path = Path(path)
    ensure_space(path.parent, path.stat().st_size + sum(_nbytes(a) for a in arrays.values()), path, keep)
    with atomic_path(path, keep=keep) as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a") as f:
            for key, arr in arrays.items():
                if key in f:
                    del f[key]
                arr = np.asarray(arr)
                if arr.ndim == 2 and arr.dtype.kind == "f":
                    grp, name = key.rsplit("/", 1)
                    _write_rows(f.require_group(grp), name, arr, arr.dtype)
                elif arr.dtype.kind in "OUS":
                    grp, name = key.rsplit("/", 1)
                    _write_strings(f.require_group(grp), name, arr)
                else:
                    f.create_dataset(key, data=arr, track_times=False)
            for k, v in (attrs or {}).items():
                f.attrs[k] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


INVERSION_MODES = ("oti", "ovi")


def partial_dir(path: str | os.PathLike, mode: str) -> Path:
    """Where ``invert --mode MODE`` keeps its unfinished work on the cache at ``path``."""
    return Path(f"{path}.{mode}.partial")


def derived_partials(path: str | os.PathLike) -> list[Path]:
    """Unfinished work of analyses that add datasets to the cache at ``path`` (``invert``)."""
    return [partial_dir(path, mode) for mode in INVERSION_MODES if partial_dir(path, mode).exists()]


def from_arrays(image_embeddings, text_embeddings=None, pairs=None, *, image_labels=None, classnames=None,
                image_ids=None, text_captions=None, model: str | None = None) -> Cache:
    """A cache held in memory (nothing is written): for embeddings a training loop or a notebook
    already has. ``pairs``: (image row, text row); default row i with row i when both
    modalities have the same number of rows.

    >>> r = clipscope.run("gap", clipscope.from_arrays(I, T), plots=False)
    """
    import hashlib
    import uuid

    h5py = _h5py()
    img = np.asarray(image_embeddings, np.float32)
    txt = None if text_embeddings is None else np.asarray(text_embeddings, np.float32)
    if img.ndim != 2 or (txt is not None and (txt.ndim != 2 or txt.shape[1] != img.shape[1])):
        raise ClipscopeError("from_arrays takes (N, D) image rows and (M, D) text rows of one joint space")
    if pairs is None and txt is not None:
        if len(txt) != len(img):
            raise ClipscopeError(f"{len(img)} image rows and {len(txt)} text rows: pass pairs=(image row, text row)")
        pairs = np.stack([np.arange(len(img))] * 2, 1)
    from clipscope.pairing import check_pairs

    pairs = check_pairs(np.zeros((0, 2), np.int64) if pairs is None else pairs, len(img), 0 if txt is None else len(txt),
                        "from_arrays")
    digest = hashlib.sha256(img.tobytes() + (b"" if txt is None else txt.tobytes()) + pairs.tobytes()).hexdigest()[:16]
    from clipscope.runtime import utc_now

    attrs = {"model": model or "unknown (arrays)", "pretrained": "unknown (arrays)", "embed_dim": int(img.shape[1]),
             "data_spec": "arrays", "data_fingerprint": digest, "source": "arrays", "dtype": "float32",
             "created_utc": utc_now()}
    f = h5py.File(f"clipscope-memory-{uuid.uuid4().hex}.h5", "w", driver="core", backing_store=False)
    _fill(f, attrs=attrs, image_embeddings=img, image_ids=image_ids,
          image_labels=image_labels, classnames=classnames, text_embeddings=txt, text_captions=text_captions, pairs=pairs)
    return Cache(Path("<memory>"), f)


def _decode(values) -> list[str]:
    return [v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else str(v) for v in values]


class Cache:
    """Lazy, read-only access to a cache file.

    >>> cache = Cache.open("cache.h5")
    >>> cache.image_embeddings          # h5py dataset: rows are read on slicing
    >>> cache.normalized_image_embeddings()   # float32 numpy, L2-normalised rows
    """

    def __init__(self, path: str | os.PathLike, handle, *, owned: bool = True):
        self.path = Path(path)
        self._f = handle
        self._owned = owned  # a borrowed view (see borrowed) never closes the file it shares

    @classmethod
    def open(cls, path: str | os.PathLike) -> Cache:
        h5py = _h5py()
        p = Path(path)
        if not p.exists():
            partial = Path(str(p) + ".partial")
            hint = " (an extraction into it is unfinished: rerun the same extract command to resume)" if partial.exists() else ""
            raise ClipscopeError(f"no cache at {p}{hint}")
        try:
            f = h5py.File(p, "r")
        except OSError:
            raise ClipscopeError(f"{p} is not an HDF5 cache (unreadable or corrupt); recreate it with extract or import") from None
        version = f.attrs.get("clipscope_schema")
        try:
            version = int(version) if version is not None else None
        except (TypeError, ValueError):
            version = -1
        if version is None or version < 1:
            f.close()
            raise ClipscopeError(f"{p} is an HDF5 file but not a clipscope cache (no valid clipscope_schema attribute)")
        if version > SCHEMA_VERSION:
            f.close()
            raise ClipscopeError(f"{p} uses cache schema {version}: it was made by a newer clipscope than this one "
                                 f"(reads schema {SCHEMA_VERSION}); upgrade clipscope")
        return cls(p, f)

    def close(self) -> None:
        if self._owned:
            self._f.close()

    def borrowed(self) -> Cache:
        """A view of this open cache that code may close freely: the caller keeps the file open
        (a :func:`from_arrays` cache serves any number of runs)."""
        return Cache(self.path, self._f, owned=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __contains__(self, key: str) -> bool:
        return key in self._f

    def __getitem__(self, key: str):
        return self._f[key]

    @property
    def attrs(self) -> dict:
        out = {}
        for k, v in self._f.attrs.items():
            v = v.item() if hasattr(v, "item") else v
            if isinstance(v, bytes):
                v = v.decode()
            if isinstance(v, str) and v[:1] in "{[":
                try:
                    v = json.loads(v)
                except json.JSONDecodeError:
                    pass
            out[k] = v
        return out

    @property
    def provenance(self) -> dict:
        a = self.attrs
        return {k: a.get(k) for k in ("model", "pretrained", "init_seed", "weights_sha256", "library", "open_clip_version",
                                      "embed_dim", "preprocess", "data_spec", "data_spec_resolved", "data_fingerprint",
                                      "data_verify", "created_utc", "source", "clipscope_version", "cache_id")}

    @property
    def image_embeddings(self):
        return self._f["image/embeddings"] if "image/embeddings" in self._f else None

    @property
    def text_embeddings(self):
        return self._f["text/embeddings"] if "text/embeddings" in self._f else None

    @property
    def image_ids(self) -> list[str]:
        return _decode(self._f["image/ids"][:]) if "image/ids" in self._f else []

    @property
    def text_captions(self) -> list[str]:
        return _decode(self._f["text/captions"][:]) if "text/captions" in self._f else []

    @property
    def pairs(self) -> np.ndarray:
        """(M, 2) int64 (image row, text row); an index outside the rows is an error, never used."""
        if "pairs" not in self._f:
            return np.zeros((0, 2), np.int64)
        from clipscope.pairing import check_pairs

        return check_pairs(self._f["pairs"][:], self.n_images, self.n_texts, f"{self.path}:/pairs")

    @property
    def image_labels(self) -> np.ndarray | None:
        return self._f["image/labels"][:].astype(np.int64) if "image/labels" in self._f else None

    @property
    def classnames(self) -> list[str] | None:
        return _decode(self._f["classnames"][:]) if "classnames" in self._f else None

    @property
    def failed(self) -> list[tuple[str, str]]:
        if "failed/ids" not in self._f:
            return []
        return list(zip(_decode(self._f["failed/ids"][:]), _decode(self._f["failed/reasons"][:])))

    @property
    def n_images(self) -> int:
        return 0 if self.image_embeddings is None else int(self.image_embeddings.shape[0])

    @property
    def n_texts(self) -> int:
        return 0 if self.text_embeddings is None else int(self.text_embeddings.shape[0])

    def _normalized(self, key: str, rows=None, span: tuple[int, int] | None = None) -> np.ndarray:
        if key not in self._f:
            raise ClipscopeError(f"{self.path} has no {key}; {self._missing_hint(key)}")
        ds = self._f[key]
        try:
            if rows is not None:
                return l2_normalize(np.asarray(ds[np.sort(np.asarray(rows))], np.float32), copy=False,
                                    require_finite=True)
            # One pass in row blocks into one float32 buffer: each block is read, checked and
            # normalised while it is in cache; no float64 or second copy of the rows.
            r0, r1 = span or (0, ds.shape[0])
            out = np.empty((r1 - r0, ds.shape[1]), np.float32)
            for i in range(r0, r1, 65536):
                block = out[i - r0:min(r1, i + 65536) - r0]
                if ds.dtype == np.float32:
                    ds.read_direct(block, np.s_[i:i + len(block)])  # straight into the buffer
                else:  # float16 caches stay float16 on disk; widened one block at a time
                    block[:] = ds[i:i + len(block)]
                l2_normalize(block, copy=False, require_finite=True)
            return out
        except NonFiniteRows:
            raise ClipscopeError(f"{self.path}:{key} has NaN or inf rows; re-extract or fix the import") from None

    def _missing_hint(self, key: str) -> str:
        if key.startswith("text"):
            return "it holds images only; extract or import texts as well"
        return "run the command that creates it (extract, import or invert)"

    def normalized_span(self, modality: str, r0: int, r1: int) -> np.ndarray:
        """L2-normalised rows r0..r1 of ``modality`` ("image" or "text") as float32."""
        return self._normalized(f"{modality}/embeddings", span=(r0, r1))

    def rows(self, modality: str) -> RowReader:
        """``modality``'s L2-normalised rows, read from the file only when indexed."""
        return RowReader(self, f"{modality}/embeddings")

    def normalized_image_embeddings(self, rows=None) -> np.ndarray:
        """L2-normalised image rows as float32 (all rows, or the sorted ``rows``)."""
        return self._normalized("image/embeddings", rows)

    def normalized_text_embeddings(self, rows=None) -> np.ndarray:
        return self._normalized("text/embeddings", rows)

    def paired(self) -> tuple[np.ndarray, np.ndarray]:
        """(image rows, text rows) of every pair, L2-normalised: row i of one pairs with row i of the other."""
        pairs = self.pairs
        if len(pairs) == 0:
            raise ClipscopeError(f"{self.path} has no image-text pairs; paired metrics need /pairs "
                                 "(extract with a captioned source, or import with both modalities)")
        img = self.normalized_image_embeddings()
        txt = self.normalized_text_embeddings()
        return img[pairs[:, 0]], txt[pairs[:, 1]]

    def summary(self) -> dict:
        a = self.attrs
        return {
            "path": str(self.path), "schema": a.get("clipscope_schema"), "model": a.get("model"),
            "pretrained": a.get("pretrained"), "embed_dim": a.get("embed_dim"), "data_spec": a.get("data_spec"),
            "created_utc": a.get("created_utc"), "source": a.get("source"),
            "images": self.n_images, "texts": self.n_texts, "pairs": int(self._f["pairs"].shape[0]) if "pairs" in self._f else 0,
            "labels": self.image_labels is not None, "classes": len(self.classnames or []),
            "failed": len(self.failed), "dtype": str(self.image_embeddings.dtype) if self.image_embeddings is not None else None,
            "extra": sorted(k for k in _walk(self._f) if k not in _CORE_KEYS),
        }


_CORE_KEYS = {"image/embeddings", "image/ids", "image/labels", "classnames", "text/embeddings", "text/captions",
              "pairs", "failed/ids", "failed/reasons", "classes/embeddings", "classes/prompts"}


def _walk(f) -> list[str]:
    out = []
    f.visit(lambda name: out.append(name) if hasattr(f[name], "shape") else None)
    return out


def layout(path: str | os.PathLike) -> dict:
    """The cache's root attributes and each dataset's dtype kind and shape (for schema checks)."""
    with Cache.open(path) as c:
        datasets = {}
        for name in _walk(c._f):
            ds = c._f[name]
            datasets[name] = {"kind": ds.dtype.kind, "shape": list(ds.shape)}
        return {"attrs": {k: v for k, v in c.attrs.items() if v is not None}, "datasets": datasets}


class RowReader:
    """A cache dataset's L2-normalised rows, read when indexed (for work that needs only a
    sample of rows that need not fit in memory together, e.g. on Ray).

    ``reader[idx]`` (an index array in any order, with repeats, or a slice) returns float32
    rows; ``reader.take(idx)`` is a reader over those rows, in that order.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, cache: Cache, key: str, index: np.ndarray | None = None):
        self.cache, self.key, self.index = cache, key, index
        ds = cache[key]
        self.shape = (int(ds.shape[0]) if index is None else len(index), int(ds.shape[1]))

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, idx) -> RowReader:
        idx = np.asarray(idx, np.int64)
        return RowReader(self.cache, self.key, idx if self.index is None else self.index[idx])

    # Rows read by index are kept (up to this many bytes per reader): the sampled parts of one
    # command draw from the same units again (uniformity's union and cross samples are within its
    # image and text samples), and a sample scattered over a file larger than memory costs about
    # a whole read each time it is read.
    MEMO_BYTES = 160 << 20

    def __getitem__(self, idx) -> np.ndarray:
        sliced = isinstance(idx, slice)
        rows = np.arange(len(self))[idx] if sliced else np.asarray(idx, np.int64)
        if self.index is not None:
            rows = self.index[rows]
        if rows.ndim != 1:
            raise TypeError("RowReader takes an index array or a slice")
        if not len(rows):
            return np.zeros((0, self.shape[1]), np.float32)
        if contiguous_run(rows):  # a block of a pass: read once, never remembered (but what is wanted from it)
            return self._keep_wanted(int(rows[0]), self.cache._normalized(self.key, span=(int(rows[0]),
                                                                                        int(rows[-1]) + 1)))
        if sliced or len(rows) * self.shape[1] * 4 > self.MEMO_BYTES // 2:
            return self._read(rows)
        return self._remembered(rows)

    def want(self, rows) -> None:
        """Rows a later index read will ask for (a sample): kept when a pass's block covers them,
        so the sample costs no second, scattered read of a file larger than memory."""
        rows = np.asarray(rows, np.int64)
        rows = rows if self.index is None else self.index[rows]
        self.__dict__["_wanted"] = np.union1d(self.__dict__.get("_wanted", np.zeros(0, np.int64)), rows)

    def _keep_wanted(self, r0: int, block: np.ndarray) -> np.ndarray:
        wanted = self.__dict__.get("_wanted")
        if wanted is not None and len(wanted):
            lo, hi = np.searchsorted(wanted, [r0, r0 + len(block)])
            if hi > lo:  # kept once: a later pass over the block does not keep them again
                # (a copy of the rows' numbers: a view would keep each pass's whole wanted array alive)
                self.__dict__.setdefault("_memo", []).append((wanted[lo:hi].copy(), block[wanted[lo:hi] - r0]))
                self.__dict__["_wanted"] = np.delete(wanted, np.s_[lo:hi])
        return block

    def _remembered(self, rows: np.ndarray) -> np.ndarray:
        """rows, those read before from memory, the others from the file (then kept, oldest dropped)."""
        memo = self.__dict__.setdefault("_memo", [])  # (sorted rows, their values), oldest first
        if len(memo) > 16:  # one entry per block a pass kept rows from: merged, for quick look-ups
            kept = np.concatenate([k for k, _ in memo])
            order = np.argsort(kept, kind="stable")
            place = np.empty_like(order)
            place[order] = np.arange(len(order))
            merged = np.empty((len(kept), self.shape[1]), np.float32)
            at = 0
            while memo:  # each entry is dropped as it is copied: the rows are held once, not twice
                rows_kept, values = memo.pop(0)
                merged[place[at:at + len(rows_kept)]] = values
                at += len(rows_kept)
            memo.append((kept[order], merged))
        uniq = np.unique(rows)
        out = np.empty((len(uniq), self.shape[1]), np.float32)
        have = np.zeros(len(uniq), bool)
        for kept, values in memo:
            pos = np.minimum(np.searchsorted(kept, uniq), len(kept) - 1)
            hit = (kept[pos] == uniq) & ~have
            out[hit] = values[pos[hit]]
            have |= hit
        if not have.all():
            missing = uniq[~have]
            out[~have] = self._read(missing)
            memo.append((missing, out[~have]))
            while sum(v.nbytes for _, v in memo) > self.MEMO_BYTES:
                memo.pop(0)
        return out[np.searchsorted(uniq, rows)]

    def _read(self, rows: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(rows, return_inverse=True)  # h5py reads increasing indices
        span = int(uniq[-1] - uniq[0]) + 1
        if span == len(uniq):  # a contiguous run (a block of 1:1 pairs): one slab read
            out = self.cache._normalized(self.key, span=(int(uniq[0]), int(uniq[-1]) + 1))
        elif span <= self.DENSE * len(uniq):
            out = self._dense(uniq)
        else:
            out = self.cache._normalized(self.key, uniq)
        return out if np.array_equal(rows, uniq) else out[inverse.ravel()]

    # A slab read costs about 1/20 of a point read per row (h5py, measured): rows at least this
    # dense (a block of captions, the class prompts, a large sample) are read as slabs.
    DENSE = 16
    SLAB = 65536

    def _dense(self, uniq: np.ndarray) -> np.ndarray:
        """Sorted distinct rows read as slabs of at most SLAB rows (memory: the rows and one slab)."""
        out = np.empty((len(uniq), self.shape[1]), np.float32)
        k = 0
        while k < len(uniq):
            end = int(np.searchsorted(uniq, uniq[k] + self.SLAB, side="left"))
            slab = self.cache._normalized(self.key, span=(int(uniq[k]), int(uniq[end - 1]) + 1))
            out[k:end] = slab[uniq[k:end] - uniq[k]]
            k = end
        return out
