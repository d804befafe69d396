"""Blind-pair mining (planted pairs) and MMVP-style scoring (hand-computed answers)."""

import numpy as np
import pytest
from conftest import save_image

from clipscope.analysis.blindpairs import mine_blind_pairs, score_pairs
from clipscope.data.mmvp import load_mmvp
from clipscope.errors import ClipscopeError
from clipscope.linalg import l2_normalize


def _plant(n=300, d_clip=32, d_ref=48, seed=0):
    rng = np.random.default_rng(seed)
    clip = rng.normal(size=(n, d_clip))
    ref = rng.normal(size=(n, d_ref))
    planted, both_close = set(), set()
    for k in range(10):  # blind: near-identical for CLIP, far apart for the reference
        a, b = 2 * k, 2 * k + 1
        clip[b] = clip[a] + 0.01 * rng.normal(size=d_clip)
        ref[b] = -ref[a] + 0.1 * rng.normal(size=d_ref)
        planted.add((a, b))
    for k in range(10, 20):  # close in both spaces: not blind
        a, b = 2 * k, 2 * k + 1
        clip[b] = clip[a] + 0.01 * rng.normal(size=d_clip)
        ref[b] = ref[a] + 0.01 * rng.normal(size=d_ref)
        both_close.add((a, b))
    for k in range(20, 25):  # CLIP cosine exactly 0.94, just below the threshold: not blind
        a, b = 2 * k, 2 * k + 1
        unit_a = clip[a] / np.linalg.norm(clip[a])
        u = rng.normal(size=d_clip)
        u -= (u @ unit_a) * unit_a
        clip[b] = 0.94 * unit_a + np.sqrt(1 - 0.94 ** 2) * u / np.linalg.norm(u)
        ref[b] = -ref[a]
    return l2_normalize(clip), l2_normalize(ref), planted, both_close


@pytest.mark.parametrize("block", [4096, 17])
def test_recovers_exactly_the_planted_pairs(block):
    clip, ref, planted, both_close = _plant()
    bp = mine_blind_pairs(clip, ref, block=block)
    found = set(zip(bp.a.tolist(), bp.b.tolist()))
    assert found == planted
    assert bp.n_blind == 10
    assert (bp.clip_cosine > 0.95).all() and (bp.reference_cosine < 0.6).all()
    # brute force agrees on every pair's classification
    C, R = clip @ clip.T, ref @ ref.T
    iu = np.triu_indices(len(clip), 1)
    brute = {(int(i), int(j)) for i, j in zip(*iu) if C[i, j] > 0.95 and R[i, j] < 0.6}
    assert brute == found
    assert bp.n_clip_similar == int(((C > 0.95)[iu]).sum())
    assert bp.in_any.sum() == 20
    assert all((a, b) not in found for a, b in both_close)


def test_top_keeps_the_most_blind_but_counts_all():
    clip, ref, planted, _ = _plant()
    bp = mine_blind_pairs(clip, ref, top=3, block=16)
    assert bp.n_blind == 10 and len(bp.a) == 3
    gaps = bp.clip_cosine - bp.reference_cosine
    full = mine_blind_pairs(clip, ref)
    assert np.allclose(sorted(gaps, reverse=True), sorted(full.clip_cosine - full.reference_cosine, reverse=True)[:3])


def test_thresholds_are_respected():
    clip, ref, _, _ = _plant()
    strict = mine_blind_pairs(clip, ref, clip_threshold=0.99999, ref_threshold=0.6)
    assert strict.n_blind == 0
    loose = mine_blind_pairs(clip, ref, clip_threshold=0.95, ref_threshold=1.01)
    assert loose.n_blind == 20  # the pairs close in both spaces now count too


def _feat(*angles):
    return np.array([[np.cos(a), np.sin(a)] for a in angles])


def test_pair_scoring_rule_hand_computed():
    # statement k of each pair is at angle s_k; images at angles i_1, i_2: a statement picks the closer image.
    img = np.stack([_feat(0.0, 1.5), _feat(0.0, 1.5), _feat(0.0, 1.5), _feat(0.0, 1.5)])
    txt = np.stack([
        _feat(0.1, 1.4),   # both right
        _feat(0.1, 0.2),   # statement 2 picks image 1: pair wrong
        _feat(1.4, 0.1),   # both wrong
        _feat(0.2, 1.3),   # both right
    ])
    res = score_pairs(img, txt, ["A", "A", "B", "B"], logit_scale=100.0)
    assert res["correct"].tolist() == [True, False, False, True]
    assert res["per_pattern"] == {"A": 50.0, "B": 50.0}
    assert res["mean"] == 50.0
    # the reference's ground truth: image 1 for odd question ids; swapping targets flips pair 3
    res2 = score_pairs(img, txt, ["A", "A", "B", "B"], targets=np.array([[0, 1], [0, 1], [1, 0], [0, 1]]))
    assert res2["correct"].tolist() == [True, False, True, True]
    assert res2["per_pattern"] == {"A": 50.0, "B": 100.0} and res2["mean"] == 75.0


@pytest.mark.parametrize("folder", ["MLLM_VLM Images", "MLLM_VLM_Images", "MMVP_VLM_Images"])
def test_mmvp_layout(tmp_path, folder):
    rows = ["Question ID,Type,Statement", "1,Color,the dog is red", "2,Color,the dog is blue",
            "3,Count,two cats", "4,Count,three cats"]
    (tmp_path / "Questions.csv").write_text("\n".join(rows) + "\n")
    for qid, t in [(1, "Color"), (2, "Color"), (3, "Count"), (4, "Count")]:
        save_image(tmp_path / folder / t / f"{qid}.jpg", qid)
    pairs = load_mmvp(tmp_path)
    assert [p["pattern"] for p in pairs] == ["Color", "Count"]
    assert pairs[0]["statements"] == ("a photo of the dog is red", "a photo of the dog is blue")
    assert pairs[1]["targets"] == (0, 1)
    assert pairs[1]["images"][1].name == "4.jpg"


def test_mmvp_errors(tmp_path):
    with pytest.raises(ClipscopeError, match="Questions.csv"):
        load_mmvp(tmp_path)
    (tmp_path / "Questions.csv").write_text("Question ID,Type,Statement\n1,Color,x\n2,Color,y\n")
    with pytest.raises(ClipscopeError, match="image folder"):
        load_mmvp(tmp_path)
    (tmp_path / "MMVP_VLM_Images" / "Color").mkdir(parents=True)
    with pytest.raises(ClipscopeError, match="missing"):
        load_mmvp(tmp_path)


def test_blindpairs_cli_from_caches(run_cli, tmp_path):
    import json

    clip, ref, planted, _ = _plant(n=60)
    np.save(tmp_path / "clip.npy", clip)
    np.save(tmp_path / "ref.npy", ref)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"img{i:03d}" for i in range(60)) + "\n")
    assert run_cli("import", "--image-embeddings", tmp_path / "clip.npy", "--ids", ids, "--out", tmp_path / "c.h5")[0] == 0
    # the reference cache lists the same images in another order: rows are matched by id
    perm = np.random.default_rng(0).permutation(60)
    np.save(tmp_path / "refp.npy", ref[perm])
    (tmp_path / "idsp.txt").write_text("\n".join(f"img{i:03d}" for i in perm) + "\n")
    assert run_cli("import", "--image-embeddings", tmp_path / "refp.npy", "--ids", tmp_path / "idsp.txt",
                   "--out", tmp_path / "r.h5")[0] == 0
    code, out, err = run_cli("blindpairs", tmp_path / "c.h5", "--reference-cache", tmp_path / "r.h5", "--out", tmp_path / "run")
    assert code == 0, err
    rep = json.loads((tmp_path / "run" / "blindpairs.json").read_text())
    got = {(r["a"], r["b"]) for r in rep["tables"]["blind_pairs"]}
    assert got == {(f"img{a:03d}", f"img{b:03d}") for a, b in planted}
    assert rep["metrics"]["n_blind_pairs"]["value"] == 10
    assert rep["metrics"]["images_in_blind_pair"]["value"] == pytest.approx(20 / 60)


def test_blindpairs_probe_benchmark_cli(run_cli, tmp_path):
    import json

    code, _, err = run_cli("blindpairs", "--model", "clipscope-tiny", "--pretrained", "none", "--benchmark", "probes:14",
                           "--out", tmp_path / "run")
    assert code == 0, err
    rep = json.loads((tmp_path / "run" / "blindpairs.json").read_text())
    per = rep["tables"]["per_pattern"]
    assert len(per) == 7
    assert rep["metrics"]["pair_accuracy_mean"]["value"] == pytest.approx(np.mean(list(per.values())))
    by_pattern = {}
    for row in rep["tables"]["pair_scores"]:
        by_pattern.setdefault(row["pattern"], []).append(row["correct"])
    assert {p: 100 * np.mean(v) for p, v in by_pattern.items()} == pytest.approx(per)


def test_mining_with_a_timm_reference_encoder(run_cli, tmp_path):
    """--reference timm:NAME extracts an images-only reference cache over the same data and mines."""
    import json

    from clipscope import Cache

    code, out, err = run_cli("blindpairs", "--model", "clipscope-tiny", "--data", "probes:12",
                             "--reference", "timm:vit_tiny_patch16_224", "--reference-pretrained", "none",
                             "--clip-threshold", "-1", "--ref-threshold", "1.01", "--top", "5", "--out", tmp_path / "run")
    assert code == 0, err
    rep = json.loads((tmp_path / "run" / "blindpairs.json").read_text())
    assert rep["config"]["reference_model"] == "timm:vit_tiny_patch16_224"
    assert rep["metrics"]["n_blind_pairs"]["value"] == rep["metrics"]["n_clip_similar_pairs"]["value"] > 0
    assert len(rep["tables"]["blind_pairs"]) == 5
    shapes = {}
    for p in (tmp_path / "content-cache").glob("*.h5"):
        with Cache.open(p) as c:
            shapes[c.attrs["model"]] = (c.n_texts, c.image_embeddings.shape)
    assert shapes["timm:vit_tiny_patch16_224"] == (0, (12, 192))
    assert "contact_sheet" in rep["artifacts"]
