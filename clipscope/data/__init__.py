"""Data sources: one ``--data SPEC`` grammar for every command.

A source resolves to a :class:`DataSource`: the image ids (and how to load each image), the
texts, the pairs (image row, text row), and optional labels and class names. Images are read
lazily, one at a time, by index, so extraction can stream and resume.

Grammar::

    folder:DIR                    ImageFolder: subfolders are classes; texts are class prompts
    images:DIR                    flat folder; NAME.txt beside an image is its caption
    captions:FILE                 .csv / .tsv / .jsonl with image, caption[, label]
    coco:ANNOTATIONS.json[:DIR]   COCO captions; every caption paired with its image
    wds:PATTERN                   webdataset tar shards (image + txt [+ cls]), brace patterns
    probes[:N[:SEED]]             the built-in procedural probes
"""

from __future__ import annotations

import csv
import functools
import glob
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from clipscope.errors import ClipscopeError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
CLASS_TEMPLATE = "a photo of a {c}."
SPEC_HELP = ("folder:DIR, images:DIR, captions:FILE, coco:ANNOTATIONS.json[:IMAGE_DIR], wds:PATTERN "
             "or probes[:N[:SEED]]")


@dataclass
class DataSource:
    """What a ``--data`` spec resolves to. ``load_image(i)`` raises on an unreadable input."""

    spec: str
    kind: str
    image_ids: list[str]
    load_image: Callable[[int], Image.Image]
    # The encoded bytes of image i, for sources made of files (the tensor input path); None
    # where images are made in memory.
    load_bytes: Callable[[int], bytes] | None = None
    texts: list[str] = field(default_factory=list)
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    labels: np.ndarray | None = None
    classnames: list[str] | None = None
    root: str | None = None
    paths: list[str] | None = None
    fingerprint_parts: list = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # inputs rejected before encoding
    class_naming: str | None = None  # where class names came from: "imagenet", "file" or "folders"
    resolved_spec: str | None = None  # the spec with its paths absolute: what a later run re-reads
    verify: bool = False  # the fingerprint keys files on their SHA-256

    @functools.cached_property
    def fingerprint(self) -> str:
        """A content key over the ids, texts, pairs and the input files.

        Files enter by size, modification time (ns), inode change time (ns) and inode: replacing
        a file changes its inode change time even when the old mtime is restored. With
        ``--verify`` (:func:`open_source` ``verify=True``) each file's SHA-256 is used instead.
        """
        h = hashlib.sha256()
        h.update(self.kind.encode())
        for part in (self.image_ids, self.texts, self.fingerprint_parts):
            h.update(json.dumps(part, sort_keys=True).encode())
        h.update(np.ascontiguousarray(self.pairs, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def counts(self) -> dict:
        return {"images": len(self.image_ids), "texts": len(self.texts), "pairs": int(len(self.pairs)),
                "classes": len(self.classnames) if self.classnames else 0}


def read_image_file(path: str | os.PathLike) -> bytes:
    """The bytes of an image file; a missing or empty file raises with a reproducible reason."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"missing file {p}")
    data = p.read_bytes()
    if not data:
        raise OSError("zero-byte file")
    return data


def open_image_file(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image as RGB; truncated or corrupt files raise (never padded)."""
    return decode_image_bytes(read_image_file(path))


def decode_image_bytes(data: bytes) -> Image.Image:
    from PIL import UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # forces a full decode: truncated data raises here
            if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                return _wide_to_rgb(im)
            return im.convert("RGB")
    except UnidentifiedImageError:
        # PIL's message names a memory address; reasons in /failed must be reproducible.
        raise OSError("not an image in a known format") from None


def _wide_to_rgb(im: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer) greyscale scaled to 8 bits; PIL's convert('RGB') clips it to white."""
    a = np.asarray(im, dtype=np.float64)
    top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) <= 65535 else float(a.max())
    g = np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
    return Image.fromarray(g, mode="L").convert("RGB")


def _file_stats(paths: list[Path], verify: bool = False) -> list:
    """Per file: its SHA-256 (``verify``), else size, mtime_ns, ctime_ns and inode; None if missing."""
    from clipscope.models import file_sha256

    out = []
    for p in paths:
        try:
            if verify:
                out.append(file_sha256(p))
            else:
                st = p.stat()
                out.append([st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
        except OSError:
            out.append(None)
    return out


def _file_loaders(paths: list[Path]) -> dict:
    """``load_image`` and ``load_bytes`` for a list of image files."""
    return {"load_image": lambda i: open_image_file(paths[i]), "load_bytes": lambda i: read_image_file(paths[i])}


def _class_prompts(classnames: list[str]) -> list[str]:
    return [CLASS_TEMPLATE.format(c=c) for c in classnames]


def _require_dir(path: str, kind: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ClipscopeError(f"--data {kind}:{path}: no such folder; give an existing directory")
    return p


def folder_source(spec: str, path: str, verify: bool = False, classnames: dict | None = None) -> DataSource:
    """One subfolder per class. Class names: ``classnames`` (folder -> name), ImageNet's when the
    folders are WordNet ids (so ImageNet val gets "tench", not "n01440764"), else the folder
    names with ``_`` as spaces."""
    from clipscope.data.imagenet import folder_classnames

    root = _require_dir(path, "folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ClipscopeError(f"--data folder:{path} has no class subfolders; use images:{path} for a flat folder")
    paths, labels = [], []
    for label, d in enumerate(class_dirs):
        for f in sorted(d.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                paths.append(f)
                labels.append(label)
    if not paths:
        raise ClipscopeError(f"--data folder:{path} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    names, naming = folder_classnames([d.name for d in class_dirs], classnames)
    labels = np.asarray(labels, np.int64)
    return DataSource(
        spec=spec, kind="folder", root=str(root.resolve()),
        image_ids=[f.relative_to(root).as_posix() for f in paths], paths=[str(p) for p in paths],
        **_file_loaders(paths), texts=_class_prompts(names),
        pairs=np.stack([np.arange(len(paths)), labels], 1).astype(np.int64),
        labels=labels, classnames=names, fingerprint_parts=_file_stats(paths, verify), class_naming=naming)


def images_source(spec: str, path: str, verify: bool = False) -> DataSource:
    root = _require_dir(path, "images")
    paths = sorted(f for f in root.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise ClipscopeError(f"--data images:{path} holds no images")
    texts, pairs = [], []
    for i, f in enumerate(paths):
        side = f.with_suffix(".txt")
        if side.exists():
            pairs.append((i, len(texts)))
            texts.append(side.read_text(encoding="utf-8", errors="replace").strip())
    return DataSource(
        spec=spec, kind="images", root=str(root.resolve()), image_ids=[f.name for f in paths],
        paths=[str(p) for p in paths], **_file_loaders(paths), texts=texts,
        pairs=np.asarray(pairs, np.int64).reshape(-1, 2), fingerprint_parts=_file_stats(paths, verify))


def _read_table(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            rows = []
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ClipscopeError(f"{path}:{n}: not valid JSON ({e.msg}); one JSON object per line") from None
            return rows
        if suffix in (".csv", ".tsv"):
            with path.open(newline="", encoding="utf-8") as fh:
                return list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","))
    except UnicodeDecodeError:
        raise ClipscopeError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    raise ClipscopeError(f"--data captions:{path}: use a .csv, .tsv or .jsonl file")


def captions_source(spec: str, path: str, verify: bool = False) -> DataSource:
    table = Path(path).expanduser()
    if not table.is_file():
        raise ClipscopeError(f"--data captions:{path}: no such file")
    rows = _read_table(table)
    if not rows:
        raise ClipscopeError(f"--data captions:{path} has no rows")
    missing = {"image", "caption"} - set(rows[0])
    if missing:
        raise ClipscopeError(f"--data captions:{path} lacks column(s) {', '.join(sorted(missing))}; "
                             "it needs image and caption (label optional)")
    base = table.parent
    index: dict[str, int] = {}
    ids, texts, pairs, raw_labels = [], [], [], []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or row.get("image") in (None, ""):
            raise ClipscopeError(f"--data captions:{path}: row {n} has no image; every row needs image and caption")
        img = str(row["image"])
        if img not in index:
            index[img] = len(ids)
            ids.append(img)
            raw_labels.append(row.get("label"))
        pairs.append((index[img], len(texts)))
        texts.append(row.get("caption"))  # None (missing) stays None: screened out with a reason
    labels = classnames = None
    if "label" in rows[0] and all(v not in (None, "") for v in raw_labels):
        values = [str(v) for v in raw_labels]
        if all(v.lstrip("-").isdigit() for v in values):
            labels = np.asarray([int(v) for v in values], np.int64)
            if labels.min() < 0:
                k = int(np.flatnonzero(labels < 0)[0])
                raise ClipscopeError(f"--data captions:{path}: image {ids[k]!r} has label {labels[k]}; numeric labels "
                                     "are class indices 0..C-1 (or give class names as labels)")
            classnames = [str(c) for c in range(int(labels.max()) + 1)]
        else:
            classnames = sorted(set(values))
            labels = np.asarray([classnames.index(v) for v in values], np.int64)
    paths = [base / i for i in ids]
    return DataSource(
        spec=spec, kind="captions", root=str(base.resolve()), image_ids=ids, paths=[str(p) for p in paths],
        **_file_loaders(paths), texts=texts, pairs=np.asarray(pairs, np.int64), labels=labels,
        classnames=classnames, fingerprint_parts=_file_stats(paths, verify))


def coco_source(spec: str, arg: str, verify: bool = False) -> DataSource:
    ann_path, _, image_dir = arg.partition(":") if not Path(arg).exists() else (arg, "", "")
    ann = Path(ann_path).expanduser()
    if not ann.is_file():
        raise ClipscopeError(f"--data coco:{ann_path}: no such annotations file")
    try:
        data = json.loads(ann.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ClipscopeError(f"{ann} is not valid JSON ({e}); pass a COCO captions file") from None
    images, annotations = _coco_lists(data, ann)
    if image_dir:
        root = _require_dir(image_dir, "coco")
    else:
        # COCO layout: annotations/captions_val2017.json beside val2017/.
        split = ann.stem.split("_")[-1]
        guess = ann.parent.parent / split
        root = guess if guess.is_dir() else ann.parent
    by_id = {}
    ids, paths = [], []
    for im in sorted(images, key=lambda m: str(m["id"])):
        by_id[im["id"]] = len(ids)
        ids.append(im["file_name"])
        paths.append(root / im["file_name"])
    texts, pairs = [], []
    for a in sorted(annotations, key=lambda a: (str(a["image_id"]), str(a.get("id", 0)))):
        if a["image_id"] in by_id:
            pairs.append((by_id[a["image_id"]], len(texts)))
            texts.append(a["caption"].strip() if isinstance(a["caption"], str) else a["caption"])
    if not pairs:
        raise ClipscopeError(f"{ann}: no caption's image_id matches an image id; the file pairs nothing")
    return DataSource(
        spec=spec, kind="coco", root=str(root.resolve()), image_ids=ids, paths=[str(p) for p in paths],
        **_file_loaders(paths), texts=texts, pairs=np.asarray(pairs, np.int64).reshape(-1, 2),
        fingerprint_parts=_file_stats(paths, verify))


def _coco_lists(data, ann: Path) -> tuple[list, list]:
    """COCO's ``images`` and ``annotations``, each entry checked for the fields clipscope reads."""
    hint = "a COCO captions file has 'images' [{id, file_name}] and 'annotations' [{image_id, caption}]"
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise ClipscopeError(f"{ann} is not a COCO captions file: {hint}")
    if not data["images"] or not data["annotations"]:
        raise ClipscopeError(f"{ann} has no {'images' if not data['images'] else 'annotations'}: {hint}")
    for what, entries, fields in (("images", data["images"], ("id", "file_name")),
                                  ("annotations", data["annotations"], ("image_id", "caption"))):
        for k, e in enumerate(entries):
            missing = [f for f in fields if not isinstance(e, dict) or f not in e]
            if missing:
                raise ClipscopeError(f"{ann}: {what}[{k}] lacks {', '.join(missing)}: {hint}")
            if what == "images" and not isinstance(e["file_name"], str):
                raise ClipscopeError(f"{ann}: images[{k}].file_name is not a string: {hint}")
    return data["images"], data["annotations"]


def safe_member_name(name: str) -> str:
    """A tar member name, or an error when it would escape the shard (absolute or '..')."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or name.startswith("\\") or ":" in p.parts[0]:
        raise ClipscopeError(f"tar member {name!r} escapes the shard (path traversal); the shard is rejected")
    return name


def wds_source(spec: str, pattern: str, verify: bool = False) -> DataSource:
    import braceexpand

    shards = sorted({p for pat in braceexpand.braceexpand(pattern) for p in (glob.glob(os.path.expanduser(pat)) or [])})
    if not shards:
        raise ClipscopeError(f"--data wds:{pattern} matches no tar shards")
    # Index members by sample key without unpacking: (shard, offset, size) per image.
    entries: dict[str, dict] = {}
    order: list[str] = []
    for shard in shards:
        try:
            with tarfile.open(shard) as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    name = safe_member_name(m.name)
                    key, _, ext = name.rpartition(".")
                    full_key = f"{Path(shard).name}/{key}"
                    if full_key not in entries:
                        entries[full_key] = {}
                        order.append(full_key)
                    entries[full_key][ext.lower()] = (shard, m.offset_data, m.size)
        except tarfile.TarError as e:
            raise ClipscopeError(f"{shard} is not a readable tar shard ({e})") from None

    def read(ref):
        shard, offset, size = ref
        with open(shard, "rb") as fh:
            fh.seek(offset)
            return fh.read(size)

    ids, refs, texts, pairs, labels = [], [], [], [], []
    for key in order:
        e = entries[key]
        img_ext = next((x for x in ("jpg", "jpeg", "png", "webp") if x in e), None)
        if img_ext is None:
            continue
        if "txt" in e:
            pairs.append((len(ids), len(texts)))
            texts.append(read(e["txt"]).decode("utf-8", errors="replace").strip())
        if "cls" in e:
            labels.append(int(read(e["cls"]).decode().strip()))
        ids.append(key)
        refs.append(e[img_ext])
    if not ids:
        raise ClipscopeError(f"--data wds:{pattern}: the shards hold no images (.jpg/.png/.webp)")
    lab = np.asarray(labels, np.int64) if len(labels) == len(ids) else None
    if lab is not None and len(lab) and lab.min() < 0:
        k = int(np.flatnonzero(lab < 0)[0])
        raise ClipscopeError(f"--data wds:{pattern}: sample {ids[k]!r} has class {lab[k]}; .cls holds a class index 0..C-1")
    return DataSource(
        spec=spec, kind="wds", root=str(Path(shards[0]).parent.resolve()), image_ids=ids,
        load_image=lambda i: decode_image_bytes(read(refs[i])), load_bytes=lambda i: read(refs[i]), texts=texts,
        pairs=np.asarray(pairs, np.int64).reshape(-1, 2), labels=lab,
        classnames=[str(c) for c in range(int(lab.max()) + 1)] if lab is not None else None,
        fingerprint_parts=[[s, stat] for s, stat in zip(shards, _file_stats([Path(s) for s in shards], verify))])


def probes_source(spec: str, arg: str, verify: bool = False) -> DataSource:
    from clipscope.data import probes

    parts = [p for p in arg.split(":") if p] if arg else []
    try:
        n = int(parts[0]) if parts else probes.DEFAULT_N
        seed = int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise ClipscopeError(f"--data {spec}: use probes, probes:N or probes:N:SEED with integers") from None
    if n < 1 or len(parts) > 2:
        raise ClipscopeError(f"--data {spec}: use probes, probes:N or probes:N:SEED with N >= 1")
    scenes = [probes.scene(seed, i) for i in range(n)]
    return DataSource(
        spec=spec, kind="probes", image_ids=[f"probe-{seed}-{i:06d}" for i in range(n)],
        load_image=lambda i: probes.render(scenes[i], seed=seed, index=i),
        texts=[s.caption for s in scenes], pairs=np.stack([np.arange(n), np.arange(n)], 1).astype(np.int64),
        labels=np.asarray([s.label for s in scenes], np.int64), classnames=list(probes.CLASSNAMES),
        fingerprint_parts=[n, seed])


_SOURCES = {"folder": folder_source, "images": images_source, "captions": captions_source,
            "coco": coco_source, "wds": wds_source, "probes": probes_source}


def open_source(spec: str, *, verify: bool = False, classnames: str | None = None) -> DataSource:
    """Resolve a ``--data`` spec; unknown kinds get an error that lists the grammar.

    ``verify``: key the data fingerprint on each file's SHA-256 rather than its metadata.
    ``classnames``: a file naming the classes of ``folder:`` data (see
    :func:`clipscope.data.imagenet.read_classnames`).
    Captions that cannot be stored (missing, empty, or holding a NUL byte) are removed here,
    before any encoding, and listed in ``source.failed`` with their reason.
    """
    if not spec:
        raise ClipscopeError(f"no --data given; use {SPEC_HELP}")
    kind, _, arg = spec.partition(":")
    if kind not in _SOURCES:
        raise ClipscopeError(f"unknown --data kind {kind!r}; use {SPEC_HELP}")
    if kind != "probes" and not arg:
        raise ClipscopeError(f"--data {kind}: needs a path after the colon ({SPEC_HELP})")
    if classnames is not None:
        if kind != "folder":
            raise ClipscopeError(f"--classnames names the class folders of folder: data, and {spec} is {kind}: data")
        from clipscope.data.imagenet import read_classnames

        source = folder_source(spec, arg, verify, read_classnames(classnames))
    else:
        source = _SOURCES[kind](spec, arg, verify)
    source.resolved_spec, source.verify = absolute_spec(spec), verify
    return _screen_texts(source)


def absolute_spec(spec: str) -> str:
    """``spec`` with its paths made absolute (against the current folder), so that a cache
    records what it was made from independently of where the next run starts."""
    kind, _, arg = spec.partition(":")
    if kind == "probes" or not arg:
        return spec
    absolute = lambda p: os.path.abspath(os.path.expanduser(p))  # noqa: E731
    if kind == "coco" and not Path(arg).exists() and ":" in arg:
        ann, _, images = arg.partition(":")
        return f"coco:{absolute(ann)}:{absolute(images)}"
    return f"{kind}:{absolute(arg)}"


def caption_problem(text) -> str | None:
    """Why a caption cannot be used, or None when it can."""
    if text is None or (isinstance(text, float) and text != text):
        return "missing caption (null)"
    if not isinstance(text, str):
        return f"caption is a {type(text).__name__}, not text"
    if not text.strip():
        return "empty caption"
    if "\x00" in text:
        return "caption contains a NUL byte"
    return None


def _screen_texts(source: DataSource) -> DataSource:
    from clipscope.pairing import drop_rows

    problems = [caption_problem(t) for t in source.texts]
    if not any(problems):
        return source
    keep = np.array([p is None for p in problems])
    owner = {int(t): int(i) for i, t in source.pairs}
    for j, why in enumerate(problems):
        if why:
            img = source.image_ids[owner[j]] if j in owner else "?"
            source.failed.append((f"{img} (caption {j})", why))
    source.pairs = drop_rows(source.pairs, len(source.texts), keep, column=1)
    source.texts = [t for t, ok in zip(source.texts, keep) if ok]
    return source
