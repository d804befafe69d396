"""The malformed-input corpus (#28): every entry ends in one line `Error: ...` that names the
file and what was expected, exit 1 (2 for usage), never `unexpected <Exception>`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY = ["--model", "clipscope-tiny", "--pretrained", "none"]
NOT_UTF8 = b"\xff\xfe caf\xe9 \x80\x81\n"


def _image(path: Path) -> None:
    from conftest import save_image

    save_image(path, seed=3)


def _sugarcrepe(root: Path, content) -> list:
    (root / "sc").mkdir(parents=True, exist_ok=True)
    _image(root / "coco" / "a.jpg")
    raw = content if isinstance(content, bytes) else json.dumps(content).encode()
    (root / "sc" / "replace_obj.json").write_bytes(raw)
    return ["compose", *TINY, "--benchmark", f"sugarcrepe:{root / 'sc'}", "--images", root / "coco"]


def _aro(root: Path, kind: str, content) -> list:
    _image(root / "images" / "a.jpg")
    raw = content if isinstance(content, bytes) else json.dumps(content).encode()
    (root / "aro.json").write_bytes(raw)
    return ["compose", *TINY, "--benchmark", f"aro-{kind}:{root / 'aro.json'}"]


def _winoground(root: Path, lines) -> list:
    _image(root / "wg" / "images" / "x.png")
    raw = lines if isinstance(lines, bytes) else "\n".join(json.dumps(x) for x in lines).encode()
    (root / "wg" / "examples.jsonl").write_bytes(raw)
    return ["compose", *TINY, "--benchmark", f"winoground:{root / 'wg'}"]


def _mmvp(root: Path, csv_bytes: bytes) -> list:
    for q in (1, 2, 3):
        _image(root / "mmvp" / "MMVP_VLM_Images" / "Orientation" / f"{q}.jpg")
    (root / "mmvp" / "Questions.csv").write_bytes(csv_bytes)
    return ["blindpairs", *TINY, "--benchmark", f"mmvp:{root / 'mmvp'}"]


def _file(root: Path, name: str, content: bytes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(content)
    return root / name


def _cache(root: Path) -> Path:
    from clipscope.data import open_source
    from clipscope.extract import extract
    from clipscope.models import load_encoder

    extract(open_source("probes:24"), load_encoder("clipscope-tiny", "none"), root / "c.h5", progress=False)
    return root / "c.h5"


GOOD_CASE = {"filename": "a.jpg", "caption": "a cat", "negative_caption": "a dog"}
ARO_CASE = {"image_path": "a.jpg", "bbox_x": 0, "bbox_y": 0, "bbox_w": 8, "bbox_h": 8, "relation_name": "on",
            "true_caption": "a cat on a mat", "false_caption": "a mat on a cat", "attributes": ["red", "blue"]}
WG = {"caption_0": "a cat on a dog", "caption_1": "a dog on a cat", "image_0": "x", "image_1": "x", "tag": "Object"}

# (name, builder(tmp) -> CLI args, words the error line must contain)
CORPUS = [
    ("sugarcrepe case is a string", lambda r: _sugarcrepe(r, {"0": "a string"}), ["replace_obj.json", "not an object"]),
    ("sugarcrepe caption is a number", lambda r: _sugarcrepe(r, {"0": {**GOOD_CASE, "caption": 5}}),
     ["case 0", "'caption'", "non-empty string"]),
    ("sugarcrepe caption is a list", lambda r: _sugarcrepe(r, {"0": {**GOOD_CASE, "caption": ["a"]}}), ["'caption'"]),
    ("sugarcrepe caption is null", lambda r: _sugarcrepe(r, {"0": {**GOOD_CASE, "negative_caption": None}}),
     ["'negative_caption' is null"]),
    ("sugarcrepe empty object", lambda r: _sugarcrepe(r, {}), ["holds no cases"]),
    ("sugarcrepe a list", lambda r: _sugarcrepe(r, []), ["map case ids"]),
    ("sugarcrepe not UTF-8", lambda r: _sugarcrepe(r, NOT_UTF8), ["not UTF-8"]),
    ("sugarcrepe image outside --images", lambda r: _sugarcrepe(r, {"0": {**GOOD_CASE, "filename": "../sc/x.jpg"}}),
     ["leaves the image folder"]),
    ("sugarcrepe absolute image", lambda r: _sugarcrepe(r, {"0": {**GOOD_CASE, "filename": "/etc/hostname"}}),
     ["leaves the image folder"]),
    ("aro case is a string", lambda r: _aro(r, "relation", ["x"]), ["case 0", "not an object"]),
    ("aro bbox is text", lambda r: _aro(r, "relation", [{**ARO_CASE, "bbox_x": "a"}]), ["'bbox_x'", "number"]),
    ("aro empty box", lambda r: _aro(r, "relation", [{**ARO_CASE, "bbox_w": 0}]), ["box", "empty"]),
    ("aro caption null", lambda r: _aro(r, "relation", [{**ARO_CASE, "true_caption": None}]), ["'true_caption'"]),
    ("aro empty list", lambda r: _aro(r, "relation", []), ["holds no cases"]),
    ("aro object", lambda r: _aro(r, "relation", {}), ["JSON list"]),
    ("aro attributes as a string", lambda r: _aro(r, "attribution", [{**ARO_CASE, "attributes": "ab"}]),
     ["'attributes'", "two attribute names"]),
    ("aro image outside", lambda r: _aro(r, "relation", [{**ARO_CASE, "image_path": "../../x.jpg"}]),
     ["leaves the image folder"]),
    ("aro-order caption number", lambda r: _aro(r, "order", [{"image": "images/a.jpg", "caption": 5}]),
     ["'caption'"]),
    ("aro-order empty", lambda r: _aro(r, "order", []), ["holds no cases"]),
    ("winoground caption null", lambda r: _winoground(r, [{**WG, "caption_0": None}]), ["line 1", "'caption_0'"]),
    ("winoground not UTF-8", lambda r: _winoground(r, NOT_UTF8), ["examples.jsonl", "not UTF-8"]),
    ("winoground image outside", lambda r: _winoground(r, [{**WG, "image_0": "../../x"}]), ["leaves the image folder"]),
    ("winoground empty", lambda r: _winoground(r, b""), ["holds no cases"]),
    ("winoground line is a list", lambda r: _winoground(r, [[1, 2]]), ["line 1", "not an object"]),
    ("mmvp odd rows", lambda r: _mmvp(r, b"id,type,statement\n1,Orientation,a\n2,Orientation,b\n3,Orientation,c\n"),
     ["Questions.csv", "odd number"]),
    ("mmvp not UTF-8", lambda r: _mmvp(r, b"id,type,statement\n" + NOT_UTF8), ["Questions.csv", "not UTF-8"]),
    ("mmvp short row", lambda r: _mmvp(r, b"id,type,statement\n1,Orientation\n2,Orientation,b\n"), ["row 2", "column"]),
    ("templates placeholder", lambda r: ["robustness", *TINY, "--data", "probes:8", "--corruptions", "fog",
                                         "--severities", "1", "--templates",
                                         _file(r, "t.txt", b"a photo of a {c} in {x}\n")], ["template 1", "{c}"]),
    ("templates not UTF-8", lambda r: ["robustness", *TINY, "--data", "probes:8", "--templates",
                                       _file(r, "t.txt", NOT_UTF8)], ["t.txt", "not UTF-8"]),
    ("ids not UTF-8", lambda r: ["direction", _cache(r), "--a", f"ids:{_file(r, 'ids.txt', NOT_UTF8)}", "--b",
                                 "class:red circle"], ["ids.txt", "not UTF-8"]),
    ("prompts not UTF-8", lambda r: ["direction", _cache(r), *TINY[:0], "--a", f"prompts:{_file(r, 'p.txt', NOT_UTF8)}",
                                     "--b", "text:a blue shape"], ["p.txt", "not UTF-8"]),
    ("classnames not UTF-8", lambda r: (_image(r / "imgs" / "cat" / "a.jpg"),
                                        ["extract", *TINY, "--data", f"folder:{r / 'imgs'}", "--classnames",
                                         _file(r, "names.txt", NOT_UTF8), "--out", r / "c.h5"])[1], ["not UTF-8"]),
    ("compose probes:0", lambda r: ["compose", *TINY, "--benchmark", "probes:0"], ["at least 1"]),
    ("blindpairs probes:0", lambda r: ["blindpairs", *TINY, "--benchmark", "probes:0"], ["at least 1"]),
    ("data probes:0", lambda r: ["gap", *TINY, "--data", "probes:0"], ["N >= 1"]),
    ("export under a file", lambda r: (_file(r, "afile", b"x"), ["export", _cache(r), "--out", r / "afile" / "x.parquet"])[1],
     ["is a file"]),
    ("tensorboard under a file", lambda r: (_file(r, "afile", b"x"),
                                            ["explore", _cache(r), "--format", "tensorboard", "--out", r / "afile" / "tb"])[1],
     ["is a file"]),
]


@pytest.mark.parametrize("name, build, words", CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_input_gets_one_line_naming_it(name, build, words, tmp_path, run_cli):
    args = build(tmp_path)
    code, out, err = run_cli(*args, "--json", "-") if args[0] not in ("extract", "export", "explore") else run_cli(*args)
    lines = [x for x in err.strip().splitlines() if x.strip() and "\r" not in x]
    assert code in (1, 2), (name, code, err)
    assert "unexpected" not in err and "Traceback" not in err, (name, err)
    errors = [x for x in lines if x.startswith("Error: ")]
    assert len(errors) == 1, (name, err)
    for w in words:
        assert w in errors[0], (name, w, errors[0])
    if "leaves the image folder" in words:
        assert "hostname" not in out, "a foreign path must not reach a report"
