"""Readers for the compositional benchmarks' local files (never downloaded at run time).

Each returns plain records that name their image (a path) and caption options in the order
their reference scores them (see :mod:`clipscope.analysis.compose`):

- :func:`load_sugarcrepe`: ``DIR/{subset}.json`` (RAIVNLab/sugar-crepe ``data/``), dicts keyed by
  string index whose keys are not contiguous, so the values are read in file order; images
  (COCO val2017) are named by ``filename`` under ``images``.
- :func:`load_aro`: VG-Relation / VG-Attribution JSON lists (mertyg/vision-language-models-are-
  bows): the image cropped to ``bbox_x/y/w/h``, options ``[false_caption, true_caption]``,
  grouped by ``relation_name`` or by the attribute pair ``"{a}_{b}"`` as the reference does.
- :func:`load_aro_order`: COCO / Flickr30k Karpathy test JSON, one case per caption.
- :func:`load_winoground`: ``DIR/examples.jsonl`` and ``DIR/images/{image}.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

from clipscope.analysis.compose import SUGARCREPE_SUBSETS
from clipscope.errors import ClipscopeError


def _read_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClipscopeError(f"{what}: no file at {path}") from None
    except IsADirectoryError:
        raise ClipscopeError(f"{what}: {path} is a folder; give the benchmark's JSON file") from None
    except UnicodeDecodeError:
        raise ClipscopeError(f"{what}: {path} is not UTF-8 text; save it as UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise ClipscopeError(f"{what}: {path} is not valid JSON ({e})") from None


def _case(record, where: str) -> dict:
    if not isinstance(record, dict):
        raise ClipscopeError(f"{where} is a {type(record).__name__}, not an object; is this the right benchmark file?")
    return record


def _field(record: dict, key: str, where: str):
    if key not in _case(record, where):
        raise ClipscopeError(f"{where} has no '{key}'; is this the right benchmark file?")
    return record[key]


def _text(record: dict, key: str, where: str) -> str:
    """A caption (or name) field: a non-empty string."""
    value = _field(record, key, where)
    if not isinstance(value, str) or not value.strip():
        got = "empty" if isinstance(value, str) else f"a {type(value).__name__}" if value is not None else "null"
        raise ClipscopeError(f"{where}: '{key}' is {got}; it must be a non-empty string")
    return value


def _number(record: dict, key: str, where: str) -> float:
    value = _field(record, key, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ClipscopeError(f"{where}: '{key}' is {value!r}; it must be a number")
    return float(value)


def _image_path(images: Path, name, where: str, key: str) -> str:
    """``images / name``, refused when the name would leave ``images`` (absolute, or through
    '..'): a benchmark file names images inside its image folder, and nothing else is read."""
    from pathlib import PurePosixPath, PureWindowsPath

    if not isinstance(name, str) or not name.strip():
        raise ClipscopeError(f"{where}: '{key}' is {name!r}; it must name an image file")
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or ".." in parts or \
            ".." in PureWindowsPath(name).parts:
        raise ClipscopeError(f"{where}: '{key}' {name!r} leaves the image folder {images}; benchmark files may only "
                             "name images inside it")
    return str(images / name)


def _nonempty(cases: list, path: Path, what: str) -> list:
    if not cases:
        raise ClipscopeError(f"{what}: {path} holds no cases")
    return cases


def load_sugarcrepe(folder, images) -> dict[str, list[dict]]:
    """``{subset: [{"image", "positive", "negative"}]}`` for the subsets present in ``folder``."""
    folder, images = Path(folder), Path(images)
    out = {}
    for subset in SUGARCREPE_SUBSETS:
        path = folder / f"{subset}.json"
        if not path.exists():
            continue
        data = _read_json(path, f"sugarcrepe {subset}")
        if not isinstance(data, dict):
            raise ClipscopeError(f"sugarcrepe: {path} should map case ids to cases (the repository's data/ files)")
        out[subset] = _nonempty([{"image": _image_path(images, _field(case, "filename", f"{path} case {key}"),
                                                       f"{path} case {key}", "filename"),
                                  "positive": _text(case, "caption", f"{path} case {key}"),
                                  "negative": _text(case, "negative_caption", f"{path} case {key}")}
                                 for key, case in data.items()], path, f"sugarcrepe {subset}")  # keys skip numbers
    if not out:
        raise ClipscopeError(f"sugarcrepe: {folder} holds none of {', '.join(s + '.json' for s in SUGARCREPE_SUBSETS)}")
    return out


def load_aro(path, kind: str, images=None) -> list[dict]:
    """VG-Relation (``kind="relation"``) or VG-Attribution (``"attribution"``) cases:
    ``{"image", "box": (left, top, right, bottom), "options": [false, true], "group"}``;
    ``image_path`` is read relative to ``images`` (default: ``images/`` beside the file)."""
    path = Path(path)
    images = Path(images) if images is not None else path.parent / "images"
    data = _read_json(path, f"aro-{kind}")
    if not isinstance(data, list):
        raise ClipscopeError(f"aro-{kind}: {path} should be a JSON list of cases")
    out = []
    for k, case in enumerate(data):
        where = f"{path} case {k}"
        x, y, w, h = (_number(case, f"bbox_{c}", where) for c in "xywh")
        if w <= 0 or h <= 0:
            raise ClipscopeError(f"{where}: the box (x {x}, y {y}, w {w}, h {h}) is empty; bbox_w and bbox_h must be "
                                 "positive")
        if kind == "relation":
            group = _text(case, "relation_name", where)
        else:
            attrs = _field(case, "attributes", where)
            if not (isinstance(attrs, list) and len(attrs) == 2 and all(isinstance(a, str) and a for a in attrs)):
                raise ClipscopeError(f"{where}: 'attributes' is {attrs!r}; it must be a list of two attribute names")
            group = f"{attrs[0]}_{attrs[1]}"
        out.append({"image": _image_path(images, _field(case, "image_path", where), where, "image_path"),
                    "box": (x, y, x + w, y + h),
                    "options": [_text(case, "false_caption", where), _text(case, "true_caption", where)],
                    "group": group})
    return _nonempty(out, path, f"aro-{kind}")


def load_aro_order(path, images=None) -> list[dict]:
    """COCO / Flickr30k Karpathy test JSON (``[{"image", "caption": [...]}]``): one case per
    caption, ``{"image", "caption"}``; ``image`` is read relative to ``images`` (default: the
    file's folder), as the reference joins it to its image root."""
    path = Path(path)
    images = Path(images) if images is not None else path.parent
    data = _read_json(path, "aro-order")
    if not isinstance(data, list):
        raise ClipscopeError(f"aro-order: {path} should be a JSON list (a Karpathy test split)")
    out = []
    for k, ann in enumerate(data):
        where = f"{path} item {k}"
        captions = _field(ann, "caption", where)
        captions = [captions] if isinstance(captions, str) else captions
        if not isinstance(captions, list) or not all(isinstance(c, str) and c.strip() for c in captions):
            raise ClipscopeError(f"{where}: 'caption' must be a caption or a list of captions (non-empty strings)")
        image = _image_path(images, _field(ann, "image", where), where, "image")
        out += [{"image": image, "caption": caption} for caption in captions]
    return _nonempty(out, path, "aro-order")


def load_winoground(folder) -> list[dict]:
    """``[{"captions": [c0, c1], "images": [path0, path1], "tag", "secondary_tag"}]``."""
    folder = Path(folder)
    path = folder / "examples.jsonl"
    if not path.exists():
        raise ClipscopeError(f"winoground: no examples.jsonl in {folder}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ClipscopeError(f"winoground: {path} is not UTF-8 text; save it as UTF-8 JSON lines") from None
    out = []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            ex = json.loads(line)
        except json.JSONDecodeError as e:
            raise ClipscopeError(f"winoground: {path} line {k + 1} is not JSON ({e})") from None
        where = f"{path} line {k + 1}"
        images = folder / "images"
        out.append({"captions": [_text(ex, "caption_0", where), _text(ex, "caption_1", where)],
                    "images": [_image_path(images, f"{_field(ex, f'image_{i}', where)}.png", where, f"image_{i}")
                               for i in (0, 1)],
                    "tag": ex.get("tag") if isinstance(ex.get("tag"), str) else None,
                    "secondary_tag": ex.get("secondary_tag")})
    return _nonempty(out, path, "winoground")
