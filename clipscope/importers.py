"""Bring embeddings made elsewhere into a cache: ``.npy`` arrays or a clip-retrieval folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipscope.cache import write_cache
from clipscope.errors import ClipscopeError
from clipscope.runtime import utc_now


def _load_npy(path: str | Path, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise ClipscopeError(f"{what} {p}: no such file")
    try:
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise ClipscopeError(f"{what} {p} is not a plain .npy array ({e}); save it with numpy.save") from None


def _check_rows(a: np.ndarray, what: str) -> np.ndarray:
    if a.ndim != 2:
        raise ClipscopeError(f"{what} must be 2-D (rows x dims), got shape {tuple(a.shape)}")
    if a.shape[0] == 0:
        raise ClipscopeError(f"{what} has no rows")
    if a.dtype.kind not in "fiu":
        raise ClipscopeError(f"{what} has dtype {a.dtype}; embeddings must be numbers")
    finite = np.ones(a.shape[0], bool)
    for i in range(0, a.shape[0], 65536):
        finite[i:i + 65536] = np.isfinite(np.asarray(a[i:i + 65536], np.float32)).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ClipscopeError(f"{what} has NaN or inf in {bad.size} row(s) (first: row {bad[0]}); drop or fix those rows")
    return a


def _attrs(model_name: str | None, spec: str, dim: int, files) -> dict:
    """Provenance of an import; the data fingerprint hashes the imported files' contents."""
    return {"model": model_name or "unknown (imported)", "pretrained": "unknown (imported)", "embed_dim": int(dim),
            "data_spec": spec, "data_fingerprint": _content_digest(f for f in files if f is not None),
            "source": "import", "dtype": "float32",
            "created_utc": utc_now()}


def _content_digest(files) -> str:
    """A short hash over the contents of the imported files, in order."""
    import hashlib

    from clipscope.models import file_sha256

    h = hashlib.sha256()
    for f in files:
        h.update(file_sha256(f).encode())
    return h.hexdigest()[:16]


def import_pair_array(path, out, *, model_name=None) -> dict:
    """A ``(2, N, D)`` array: ``[0]`` images, ``[1]`` texts, row i paired with row i."""
    a = _load_npy(path, "--pair-array")
    if a.ndim != 3 or a.shape[0] != 2:
        raise ClipscopeError(f"--pair-array {path} has shape {tuple(a.shape)}; expected (2, N, D): "
                             "[0] image rows, [1] text rows")
    img, txt = _check_rows(a[0], "image rows ([0])"), _check_rows(a[1], "text rows ([1])")
    n = img.shape[0]
    write_cache(out, attrs=_attrs(model_name, f"pair-array:{Path(path).name}", a.shape[2], [path]),
                image_embeddings=img, text_embeddings=txt, pairs=np.stack([np.arange(n)] * 2, 1))
    return {"cache": str(out), "images": n, "texts": n, "pairs": n}


def import_arrays(out, *, image_embeddings, text_embeddings=None, pairs=None, ids=None, captions=None,
                  labels=None, model_name=None) -> dict:
    img = _check_rows(_load_npy(image_embeddings, "--image-embeddings"), "--image-embeddings")
    txt = None
    if text_embeddings is not None:
        txt = _check_rows(_load_npy(text_embeddings, "--text-embeddings"), "--text-embeddings")
        if txt.shape[1] != img.shape[1]:
            raise ClipscopeError(f"image rows are {img.shape[1]}-d but text rows are {txt.shape[1]}-d; "
                                 "both must come from one joint space")
    if pairs is not None:
        p = np.asarray(_load_npy(pairs, "--pairs"))
        if p.ndim != 2 or p.shape[1] != 2 or p.dtype.kind not in "iu":
            raise ClipscopeError(f"--pairs must be an integer (M, 2) array of (image row, text row), got {p.shape} {p.dtype}")
        if txt is None:
            raise ClipscopeError("--pairs needs --text-embeddings too")
        if len(p) and (p.min() < 0 or p[:, 0].max() >= len(img) or p[:, 1].max() >= len(txt)):
            raise ClipscopeError("--pairs refers to rows that do not exist; indices are 0-based rows of the arrays")
    elif txt is not None:
        if len(txt) != len(img):
            raise ClipscopeError(f"{len(img)} image rows but {len(txt)} text rows and no --pairs; "
                                 "give --pairs P.npy to say which rows pair, or arrays of equal length")
        p = np.stack([np.arange(len(img))] * 2, 1)
    else:
        p = np.zeros((0, 2), np.int64)
    id_list = None
    if ids is not None:
        id_list = [line for line in Path(ids).read_text(encoding="utf-8").splitlines()]
        if len(id_list) != len(img):
            raise ClipscopeError(f"--ids has {len(id_list)} lines but there are {len(img)} image rows; one id per row")
    cap_list = None
    if captions is not None and txt is not None:
        cap_list = Path(captions).read_text(encoding="utf-8").splitlines()
        if len(cap_list) != len(txt):
            raise ClipscopeError(f"--captions has {len(cap_list)} lines but there are {len(txt)} text rows")
    lab = None
    if labels is not None:
        lab = np.asarray(_load_npy(labels, "--labels")).astype(np.int64).reshape(-1)
        if len(lab) != len(img):
            raise ClipscopeError(f"--labels has {len(lab)} entries for {len(img)} image rows")
    write_cache(out, attrs=_attrs(model_name, f"arrays:{Path(image_embeddings).name}", img.shape[1],
                                  [image_embeddings, text_embeddings, pairs, ids, captions, labels]),
                image_embeddings=img, image_ids=id_list, image_labels=lab,
                classnames=[str(c) for c in range(int(lab.max()) + 1)] if lab is not None else None,
                text_embeddings=txt, text_captions=cap_list, pairs=p)
    return {"cache": str(out), "images": len(img), "texts": 0 if txt is None else len(txt), "pairs": len(p)}


def import_clip_retrieval(folder, out, *, model_name=None) -> dict:
    """The output folder of ``clip-retrieval inference``: img_emb/, text_emb/, metadata/ parquet."""
    root = Path(folder)
    if not root.is_dir():
        raise ClipscopeError(f"--clip-retrieval {folder}: no such folder")
    img_files = sorted((root / "img_emb").glob("*.npy"))
    if not img_files:
        raise ClipscopeError(f"{root} has no img_emb/*.npy; point --clip-retrieval at clip-retrieval's output folder")
    txt_files = sorted((root / "text_emb").glob("*.npy"))
    img = np.concatenate([np.asarray(_load_npy(f, "img_emb")) for f in img_files]).astype(np.float32)
    _check_rows(img, "img_emb")
    txt = None
    if txt_files:
        txt = np.concatenate([np.asarray(_load_npy(f, "text_emb")) for f in txt_files]).astype(np.float32)
        _check_rows(txt, "text_emb")
        if txt.shape != img.shape:
            raise ClipscopeError(f"img_emb has shape {img.shape} but text_emb {txt.shape}; clip-retrieval writes "
                                 "one text row per image row")
    ids = captions = None
    meta_files = sorted((root / "metadata").glob("*.parquet"))
    if meta_files:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ClipscopeError("reading clip-retrieval metadata needs pyarrow: pip install 'clipscope-diagnostics[parquet]'") from None
        tables = [pq.read_table(f).to_pydict() for f in meta_files]
        col = lambda name: [v for t in tables for v in t.get(name, [])]  # noqa: E731
        ids = [str(v) for v in (col("image_path") or col("url") or col("key"))] or None
        captions = [str(v) for v in col("caption")] or None
        if ids is not None and len(ids) != len(img):
            ids = None
        if captions is not None and txt is not None and len(captions) != len(txt):
            captions = None
    n = len(img)
    write_cache(out, attrs=_attrs(model_name, f"clip-retrieval:{root.name}", img.shape[1], img_files + txt_files + meta_files),
                image_embeddings=img, image_ids=ids, text_embeddings=txt, text_captions=captions,
                pairs=np.stack([np.arange(n)] * 2, 1) if txt is not None else None)
    return {"cache": str(out), "images": n, "texts": 0 if txt is None else n, "pairs": n if txt is not None else 0}
