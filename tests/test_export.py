"""`export` and `explore --format tensorboard` (#20): the parquet's documented schema, round
trips of every column against the cache and the run reports it was built from."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from clipscope.cache import write_cache
from clipscope.linalg import l2_normalize

pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is a dev dependency")


@pytest.fixture
def small(tmp_path):
    """A cache with 6 images (2 classes), 9 captions (COCO-like: image 0 has 3, images 1-5 one
    each... and an inversion result), and a runs folder with a blindpairs and a drift report."""
    rng = np.random.default_rng(0)
    I = rng.normal(size=(6, 8)).astype(np.float32)
    T = rng.normal(size=(8, 8)).astype(np.float32)
    pairs = np.array([[0, 0], [0, 1], [0, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]])
    path = tmp_path / "c.h5"
    write_cache(path, attrs={"model": "x", "pretrained": "imported", "embed_dim": 8, "source": "import",
                             "data_spec": "images:nowhere"},
                image_embeddings=I, image_ids=[f"img{k}" for k in range(6)], image_labels=np.array([0, 0, 1, 1, 0, 1]),
                classnames=["cat", "dog"], text_embeddings=T, text_captions=[f"caption {k}" for k in range(8)],
                pairs=pairs)
    from clipscope.cache import add_datasets

    add_datasets(path, {"image/oti_cosine": np.stack([np.full(6, 0.1), np.linspace(0.5, 1.0, 6)], 1).astype(np.float32)})
    runs = tmp_path / "runs"
    (runs / "bp").mkdir(parents=True)
    (runs / "dr").mkdir()
    (runs / "bp" / "blindpairs.json").write_text(json.dumps({"command": "blindpairs", "metrics": {}, "tables": {
        "blind_pairs": [{"a": "img1", "b": "img2", "clip_cosine": 0.97, "reference_cosine": 0.3},
                        {"a": "img1", "b": "img4", "clip_cosine": 0.96, "reference_cosine": 0.5}]}}))
    (runs / "rob.json").write_text(json.dumps({"command": "robustness", "metrics": {}, "tables": {
        "per_image_drift": [{"id": "img5", "drift": 0.77}],
        "predictions": [{"id": "img5", "label": "dog", "clean": "dog", "zero_shot": "cat", "contrast/1": "dog",
                         "contrast/5": "cat", "fog/3": "cat"}]}}))
    (runs / "dr" / "drift.json").write_text(json.dumps({"command": "drift", "metrics": {}, "tables": {
        "most_moved_image": [{"id": "img3", "drift": 0.42, "aligned_cosine": 0.8}],
        "most_moved_text": [{"id": "caption 5", "drift": 0.3}]}}))
    return path, runs, I, T, pairs


def test_export_columns_round_trip(small, run_cli, tmp_path):
    path, runs, I, T, pairs = small
    out = tmp_path / "rows.parquet"
    code, stdout, err = run_cli("export", path, "--runs", runs, "--out", out)
    assert code == 0, err
    t = pq.read_table(out)
    d = t.to_pydict()
    assert t.num_rows == 14 and d["modality"] == ["image"] * 6 + ["text"] * 8
    emb = np.stack(d["embedding"])
    np.testing.assert_array_equal(emb, np.concatenate([l2_normalize(I), l2_normalize(T)]))
    assert d["classname"][:6] == ["cat", "cat", "dog", "dog", "cat", "dog"] and d["caption"][6] == "caption 0"
    In, Tn = l2_normalize(I).astype(np.float64), l2_normalize(T).astype(np.float64)
    want_img0 = np.mean([In[0] @ Tn[k] for k in (0, 1, 2)])
    assert d["paired_cosine"][0] == pytest.approx(want_img0, rel=1e-5)
    assert d["paired_cosine"][6 + 3] == pytest.approx(In[1] @ Tn[3], rel=1e-5)
    # relative alignment of text 3 (paired with image 1 only): 2 (max_{j != 1} <t, I_j> - <t, I_1>)
    neg = max(In[j] @ Tn[3] for j in range(6) if j != 1)
    assert d["relative_alignment"][6 + 3] == pytest.approx(2 * (neg - In[1] @ Tn[3]), rel=1e-4)
    # img1's strongest blind pair (largest clip - reference gap) is img2; img4 and img2 see img1
    assert (d["blind_partner"][1], d["blind_clip_cosine"][1], d["blind_reference_cosine"][1]) == ("img2", 0.97, 0.3)
    assert d["blind_partner"][4] == "img1" and d["blind_partner"][0] is None
    assert d["drift"][3] == 0.42 and d["drift_aligned_cosine"][3] == 0.8 and d["drift"][6 + 5] == 0.3
    assert d["inversion_cosine"][:6] == pytest.approx(list(np.linspace(0.5, 1.0, 6)))
    assert d["inversion_cosine"][6] is None
    assert d["corruption_cosine"][5] == 0.77 and d["corruption_cosine"][0] is None
    assert all(np.isfinite(d["x"])) and all(np.isfinite(d["y"]))
    assert d["zero_shot_prediction"][5] == "cat" and d["zero_shot_prediction"][4] is None
    assert d["corruption_correct_share"][5] == pytest.approx(1 / 3)  # right in contrast/1 only
    # paired ids: image 0 has texts 0-2, text 3 belongs to image 1
    assert d["paired_ids"][0] == ["text-0", "text-1", "text-2"] and d["paired_ids"][6 + 3] == ["img1"]
    meta = json.loads(t.schema.metadata[b"clipscope"])
    assert meta["runs"] == ["blindpairs", "drift", "robustness"] and meta["model"] == "x"
    assert meta["empty_columns"] == {}
    assert "empty" not in err


def test_empty_columns_are_named_with_why(small, run_cli, tmp_path):
    """A cache whose runs folder holds reports of other rows: the null columns are said, once."""
    path, runs, *_ = small
    (runs / "dr" / "drift.json").unlink()
    (runs / "rob.json").write_text(json.dumps({"command": "robustness", "metrics": {}, "data": {"spec": "probes:8"},
                                               "tables": {"per_image_drift": [{"id": "other", "drift": 0.5}]}}))
    out = tmp_path / "rows.parquet"
    code, _, err = run_cli("export", path, "--runs", runs, "--out", out)
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "empty" in ln]
    assert len(lines) == 1
    assert "drift, drift_aligned_cosine (no drift results for these rows (in --runs or stored in the cache))" in lines[0]
    assert "corruption_cosine, zero_shot_prediction, corruption_correct_share (robustness.json in --runs ran on " \
           "other rows (probes:8))" in lines[0]
    meta = json.loads(pq.read_table(out).schema.metadata[b"clipscope"])
    assert set(meta["empty_columns"]) == {"drift", "drift_aligned_cosine", "corruption_cosine",
                                          "zero_shot_prediction", "corruption_correct_share"}


def test_the_parquet_schema_is_the_documented_one(small, tmp_path, run_cli):
    from pathlib import Path

    path, runs, *_ = small
    out = tmp_path / "rows.parquet"
    assert run_cli("export", path, "--out", out)[0] == 0
    page = (Path(__file__).resolve().parents[1] / "commands" / "export.md").read_text()
    documented = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", page, flags=re.M))
    schema = pq.read_schema(out)
    got = {f.name: str(f.type).replace("[8]", "[D]") for f in schema}  # D: the embedding width
    assert got == documented


def test_tensorboard_projector_log(small, run_cli, tmp_path):
    path, runs, I, T, _ = small
    out = tmp_path / "tb"
    code, stdout, err = run_cli("explore", path, "--format", "tensorboard", "--out", out)
    assert code == 0, err
    tensors = np.loadtxt(out / "tensors.tsv", delimiter="\t")
    np.testing.assert_allclose(tensors, np.concatenate([l2_normalize(I), l2_normalize(T)]), atol=1e-6)
    meta = (out / "metadata.tsv").read_text().splitlines()
    assert meta[0].split("\t")[:2] == ["modality", "id"] and len(meta) == 15
    config = (out / "projector_config.pbtxt").read_text()
    assert 'tensor_path: "tensors.tsv"' in config and 'metadata_path: "metadata.tsv"' in config
    assert "cannot be read here" in err  # images:nowhere: no sprite, said so


def test_tensorboard_sprite_with_readable_images(run_cli, tmp_path):
    cache = tmp_path / "p.h5"
    assert run_cli("extract", "--model", "clipscope-tiny", "--data", "probes:20", "--out", cache, "-q")[0] == 0
    code, _, err = run_cli("explore", cache, "--format", "tensorboard", "--out", tmp_path / "tb")
    assert code == 0, err
    from PIL import Image

    sprite = Image.open(tmp_path / "tb" / "sprite.png")
    assert sprite.size == (7 * 32, 7 * 32)  # 40 rows (20 images, 20 texts) in a 7 x 7 grid of 32 px
    assert "single_image_dim: 32" in (tmp_path / "tb" / "projector_config.pbtxt").read_text()
