"""The batch loop: data source -> encoder -> cache, resumable after any interruption.

Progress lives in a journal folder ``<out>.partial/`` beside the cache: raw float32 rows are
appended to ``image.f32`` / ``text.f32`` and, after each batch is flushed to disk, a small state
file is replaced atomically (``os.replace``) with the count of committed rows. A crash at any
point leaves at most an uncommitted tail, which the next run truncates; the cache file itself is
written once, at the end, from the journal, so an interrupted run never leaves a broken cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from clipscope.cache import PROVENANCE_KEYS, Cache, derived_partials, write_cache
from clipscope.errors import ClipscopeError
from clipscope.fileio import atomic_json, exclusive, remove_stale_temps
from clipscope.journal import Journal
from clipscope.pairing import drop_rows

RESUME_HINT = "the journal is kept: rerun the same command to resume"


class _ImageDataset:
    """Image i for the batch loop; failures come back as (i, None, reason), never raised.

    PIL path (``jpeg_bytes=False``): the preprocessed pixels. Tensor path: a complete JPEG's
    bytes as a 1-d uint8 tensor, decoded later in batches on the encoder's device; other files
    are decoded and preprocessed here by PIL, as on the PIL path."""

    def __init__(self, source, preprocess, start: int, jpeg_bytes: bool = False):
        self.source, self.preprocess, self.start, self.jpeg_bytes = source, preprocess, start, jpeg_bytes

    def __len__(self):
        return len(self.source.image_ids) - self.start

    def __getitem__(self, k):
        i = self.start + k
        try:
            if not self.jpeg_bytes:
                return i, self.preprocess(self.source.load_image(i)), None
            from clipscope.data import decode_image_bytes
            from clipscope.tensor_input import looks_like_jpeg

            data = self.source.load_bytes(i)
            if looks_like_jpeg(data):
                import torch

                return i, torch.frombuffer(bytearray(data), dtype=torch.uint8), None
            return i, self.preprocess(decode_image_bytes(data)), None
        except Exception as e:  # any unreadable input is recorded, not fatal
            return i, None, _reason(e)


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:300]


def _collate(items):
    """(row indices, payloads, failures, next index); PIL-path pixels come stacked."""
    import torch

    ok = [(i, t) for i, t, err in items if err is None]
    bad = [(i, err) for i, _, err in items if err is not None]
    payloads = [t for _, t in ok]
    if payloads and all(t.dim() == 3 for t in payloads):
        payloads = torch.stack(payloads)
    return [i for i, _ in ok], payloads, bad, max(i for i, _, _ in items) + 1


def _tensor_pixels(idx, payloads, bad, *, tensor_prep, preprocess, device):
    """The tensor path's batch: JPEG bytes decoded together on ``device`` and preprocessed as
    tensors, PIL-decoded pixels moved there; a JPEG torchvision refuses goes to PIL, and one PIL
    refuses too joins ``bad``. Returns the kept row indices and their pixels, in order."""
    import torch

    from clipscope.data import decode_image_bytes
    from clipscope.tensor_input import decode_jpegs

    if isinstance(payloads, torch.Tensor):  # no JPEG in this batch
        return idx, payloads
    jpeg = [k for k, t in enumerate(payloads) if t.dim() == 1]
    decoded = dict(zip(jpeg, decode_jpegs([payloads[k] for k in jpeg], device)))
    rows = {}
    for k, im in list(decoded.items()):
        if im is None:
            del decoded[k]
            try:
                rows[k] = preprocess(decode_image_bytes(payloads[k].numpy().tobytes())).to(device)
            except Exception as e:  # noqa: BLE001 - recorded in /failed, as on the PIL path
                bad.append((idx[k], _reason(e)))
    if decoded:
        rows.update(zip(decoded, tensor_prep(list(decoded.values()))))
    rows.update({k: t.to(device, non_blocking=True) for k, t in enumerate(payloads) if t.dim() == 3})
    kept = sorted(rows)
    return [idx[k] for k in kept], torch.stack([rows[k] for k in kept]) if kept else None


class _Committer:
    """Commits encoded batches to the journal from a thread, in order, so the next batch's
    reading, decoding and forward pass overlap the copy to the host and the fsync."""

    def __init__(self, journal, bar, depth: int = 2):
        import queue
        import threading

        self.journal, self.bar, self.error = journal, bar, None
        self.queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, name="clipscope-journal", daemon=True)
        self.thread.start()

    def _run(self):
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    host, ready, next_index, bad = item
                    ready()
                    self.journal.commit(host.numpy(), next_index, [[i, r] for i, r in bad])
                    self.bar.update(next_index - self.bar.n)
                except BaseException as e:  # noqa: BLE001 - handed to the main thread
                    self.error = e

    def put(self, host, ready, next_index: int, bad: list) -> None:
        self._raise()
        self.queue.put((host, ready, next_index, bad))

    def close(self) -> None:
        """Wait for every queued batch to be committed; re-raise the writer's error."""
        self.queue.put(None)
        self.thread.join()
        self._raise()

    def _raise(self):
        if self.error is not None:
            raise self.error


def cache_attrs(encoder, source, dtype: str, decode: str = "auto") -> dict:
    """The cache's provenance. ``preprocess`` gains ``decode`` (``tensor-cuda``, ``tensor-cpu``)
    when the tensor input path makes the pixels: they differ slightly from PIL's, so the
    content key and the resume check tell the two apart."""
    from clipscope.tensor_input import resolve_decode

    p = encoder.provenance
    path = resolve_decode(decode, encoder, source)
    preprocess = p.get("preprocess")
    if path is not None:
        preprocess = {**(preprocess or {}), "decode": path}
    return {
        "model": p["model"], "pretrained": p["pretrained"], "init_seed": p.get("init_seed"),
        "weights_sha256": p.get("weights_sha256"),
        "library": p.get("library"), "open_clip_version": p.get("open_clip_version") or p.get("timm_version"),
        "embed_dim": int(p["embed_dim"]), "preprocess": preprocess, "data_spec": source.spec,
        "data_spec_resolved": source.resolved_spec, "data_fingerprint": source.fingerprint, "data_verify": source.verify,
        "dtype": dtype, "source": "extract",
    }


def _same(a: dict, b: dict) -> list[str]:
    def norm(v):
        return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v

    return [k for k in PROVENANCE_KEYS if norm(a.get(k)) != norm(b.get(k))]


def _progress(total: int, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="item", file=sys.stderr, disable=not enabled,
                dynamic_ncols=True, leave=False)


def extract(source, encoder, out: str | os.PathLike, *, batch_size: int = 64, workers: int = 0,
            dtype: str = "float32", overwrite: bool = False, progress: bool = True, texts: bool = True,
            with_classes: bool = True, extra_attrs: dict | None = None, decode: str = "auto") -> dict:
    """Encode ``source`` with ``encoder`` into the cache ``out``; resume a journal if one exists.

    ``decode`` picks the image input path (:func:`clipscope.tensor_input.resolve_decode`):
    ``auto`` decodes JPEGs in batches on the GPU when the model is on CUDA, else uses PIL in
    the DataLoader workers.

    The whole run holds an exclusive lock on ``out``: a second writer of the same cache waits,
    then finds the cache complete (and reuses it) or resumes the journal where the first stopped.
    Returns a summary: counts of images, texts, failures, and whether the run resumed.
    """
    out = Path(out)
    if dtype not in ("float32", "float16"):
        raise ClipscopeError(f"--dtype {dtype}: use float32 or float16")
    with exclusive(out, quiet=not progress):
        remove_stale_temps(out)
        return _extract_locked(source, encoder, out, batch_size=batch_size, workers=workers, dtype=dtype,
                               overwrite=overwrite, progress=progress, texts=texts, with_classes=with_classes,
                               extra_attrs=extra_attrs, decode=decode)


def _extract_locked(source, encoder, out: Path, *, batch_size, workers, dtype, overwrite, progress, texts,
                    with_classes, extra_attrs, decode) -> dict:

    journal_dir = Path(str(out) + ".partial")
    attrs = {**cache_attrs(encoder, source, dtype, decode), **(extra_attrs or {})}
    if overwrite:
        shutil.rmtree(journal_dir, ignore_errors=True)
        for folder in derived_partials(out):  # progress of analyses on the old content
            shutil.rmtree(folder, ignore_errors=True)
    elif out.exists():
        try:
            with Cache.open(out) as c:
                diff = _same(c.attrs, attrs)
        except ClipscopeError:
            raise ClipscopeError(f"{out} exists and is not a clipscope cache; choose another --out or pass --overwrite") from None
        if diff:
            raise ClipscopeError(f"{out} was made with another {', '.join(diff)}; refusing to mix embeddings "
                                 "in one cache: choose another --out or pass --overwrite to start over")
        return {"cache": str(out), "complete": True, "resumed": False, "skipped": True, **_counts(out)}

    manifest_path = journal_dir / "manifest.json"
    resumed = manifest_path.exists()
    if resumed:
        manifest = json.loads(manifest_path.read_text())
        diff = _same(manifest["attrs"], attrs)
        if diff:
            raise ClipscopeError(f"an unfinished extraction into {out} used another {', '.join(diff)}; "
                                 "rerun it with the same options, or pass --overwrite to start over")
    else:
        journal_dir.mkdir(parents=True, exist_ok=True)
        from clipscope.runtime import utc_now

        created = utc_now()
        manifest = {"attrs": {**attrs, "created_utc": created}, "batch_size": batch_size}
        atomic_json(manifest_path, manifest)

    dim = int(attrs["embed_dim"])
    img_j = Journal(journal_dir, "image", dim)
    start = img_j.state["next_index"]
    n_img = len(source.image_ids)
    if not img_j.state["done"]:
        _encode_images(source, encoder, img_j, start, dim, batch_size=batch_size, workers=workers,
                       tensor_path=bool(attrs["preprocess"] and attrs["preprocess"].get("decode")),
                       progress=progress)
        img_j.finish()

    txt_j = Journal(journal_dir, "text", dim)
    if texts and encoder.has_text and not txt_j.state["done"]:
        n_txt = len(source.texts)
        bar = _progress(n_txt, txt_j.state["next_index"], "texts", progress)
        for s in range(txt_j.state["next_index"], n_txt, batch_size):
            batch = source.texts[s:s + batch_size]
            txt_j.commit(encoder.encode_texts(batch).numpy(), s + len(batch), [])
            bar.update(len(batch))
        bar.close()
    txt_j.finish()

    ok = _succeeded(n_img, img_j.state["failed"])
    ok_rows = np.flatnonzero(ok)
    have_text = texts and encoder.has_text and len(source.texts) > 0
    pairs = drop_rows(source.pairs, n_img, ok, column=0) if have_text else np.zeros((0, 2), np.int64)
    failed = [(source.image_ids[i], r) for i, r in img_j.state["failed"]] + list(source.failed)
    class_prompts = class_emb = None
    if with_classes and source.classnames and encoder.has_text:
        from clipscope.data import CLASS_TEMPLATE

        class_prompts = [CLASS_TEMPLATE.format(c=c) for c in source.classnames]
        class_emb = encoder.encode_texts_batched(class_prompts, batch_size)
    write_cache(
        out, attrs=manifest["attrs"], image_embeddings=img_j.rows(), image_ids=[source.image_ids[i] for i in ok_rows],
        image_labels=source.labels[ok_rows] if source.labels is not None else None, classnames=source.classnames,
        text_embeddings=txt_j.rows() if have_text else None, text_captions=source.texts if have_text else None,
        pairs=pairs, failed=failed, class_embeddings=class_emb, class_prompts=class_prompts,
        dtype=np.float16 if dtype == "float16" else np.float32, keep=RESUME_HINT)
    for folder in derived_partials(out):  # they belonged to the cache this one replaced
        shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(journal_dir, ignore_errors=True)
    return {"cache": str(out), "complete": True, "resumed": resumed, "skipped": False, **_counts(out)}


def _encode_images(source, encoder, journal, start: int, dim: int, *, batch_size, workers, tensor_path, progress):
    """Images ``start..`` through the encoder into ``journal``, batch by batch."""
    import torch

    from clipscope.tensor_input import TensorPreprocess

    tensor_prep = TensorPreprocess(encoder.preprocess) if tensor_path else None
    loader = torch.utils.data.DataLoader(
        _ImageDataset(source, encoder.preprocess, start, jpeg_bytes=tensor_path), batch_size=batch_size,
        shuffle=False, num_workers=workers, collate_fn=_collate, pin_memory=encoder.device.startswith("cuda"),
        prefetch_factor=4 if workers > 0 else None, persistent_workers=False)
    bar = _progress(len(source.image_ids), start, "images", progress)
    committer = _Committer(journal, bar)
    try:
        for idx, pixels, bad, next_index in loader:
            if tensor_prep is not None:
                idx, pixels = _tensor_pixels(idx, pixels, bad, tensor_prep=tensor_prep,
                                             preprocess=encoder.preprocess, device=encoder.device)
            if isinstance(pixels, list) or pixels is None:  # nothing readable in this batch
                host, ready = torch.zeros((0, dim)), lambda: None
            else:
                host, ready = encoder.encode_images_to_host(pixels)
            if host.shape[1] != dim:
                raise ClipscopeError(f"the encoder returned {host.shape[1]}-d features, expected {dim}")
            committer.put(host, ready, next_index, bad)
    finally:
        committer.close()
        bar.close()


def _succeeded(n: int, failed: list) -> np.ndarray:
    """Boolean mask of the images that were encoded."""
    mask = np.ones(n, bool)
    for i, _ in failed:
        mask[i] = False
    return mask


def _counts(path: Path) -> dict:
    with Cache.open(path) as c:
        return {"images": c.n_images, "texts": c.n_texts, "pairs": int(len(c.pairs)), "failed": len(c.failed)}


def cache_dir() -> Path:
    base = os.environ.get("CLIPSCOPE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "clipscope")
    return Path(base)


def content_key(encoder, source, dtype: str = "float32", decode: str = "auto") -> str:
    """A key over model, weights, preprocessing (the input path included) and data content:
    equal keys, equal caches."""
    attrs = cache_attrs(encoder, source, dtype, decode)
    blob = json.dumps({k: attrs.get(k) for k in PROVENANCE_KEYS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def ensure_cache(encoder, source, *, batch_size: int = 64, workers: int = 0, progress: bool = True,
                 dtype: str = "float32", decode: str = "auto") -> Path:
    """Extract into the content-keyed cache under :func:`cache_dir`, or reuse it."""
    path = cache_dir() / f"{content_key(encoder, source, dtype, decode)}.h5"
    extract(source, encoder, path, batch_size=batch_size, workers=workers, progress=progress, dtype=dtype,
            decode=decode)
    return path
