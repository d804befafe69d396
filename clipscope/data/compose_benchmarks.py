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
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ClipscopeError(f"{what}: {path} is not valid JSON ({e})") from None


def _field(record: dict, key: str, where: str):
    if key not in record:
        raise ClipscopeError(f"{where} has no '{key}'; is this the right benchmark file?")
    return record[key]


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
        out[subset] = [{"image": str(images / _field(case, "filename", f"{path} case {key}")),
                        "positive": _field(case, "caption", f"{path} case {key}"),
                        "negative": _field(case, "negative_caption", f"{path} case {key}")}
                       for key, case in data.items()]  # keys skip numbers: iterate the values
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
        x, y, w, h = (float(_field(case, f"bbox_{c}", where)) for c in "xywh")
        if kind == "relation":
            group = str(_field(case, "relation_name", where))
        else:
            attrs = _field(case, "attributes", where)
            group = f"{attrs[0]}_{attrs[1]}"
        out.append({"image": str(images / _field(case, "image_path", where)), "box": (x, y, x + w, y + h),
                    "options": [_field(case, "false_caption", where), _field(case, "true_caption", where)],
                    "group": group})
    return out


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
        captions = _field(ann, "caption", f"{path} item {k}")
        for caption in [captions] if isinstance(captions, str) else captions:
            out.append({"image": str(images / _field(ann, "image", f"{path} item {k}")), "caption": caption})
    return out


def load_winoground(folder) -> list[dict]:
    """``[{"captions": [c0, c1], "images": [path0, path1], "tag", "secondary_tag"}]``."""
    folder = Path(folder)
    path = folder / "examples.jsonl"
    if not path.exists():
        raise ClipscopeError(f"winoground: no examples.jsonl in {folder}")
    out = []
    for k, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            ex = json.loads(line)
        except json.JSONDecodeError as e:
            raise ClipscopeError(f"winoground: {path} line {k + 1} is not JSON ({e})") from None
        where = f"{path} line {k + 1}"
        out.append({"captions": [_field(ex, "caption_0", where), _field(ex, "caption_1", where)],
                    "images": [str(folder / "images" / f"{_field(ex, f'image_{i}', where)}.png") for i in (0, 1)],
                    "tag": ex.get("tag"), "secondary_tag": ex.get("secondary_tag")})
    return out
