"""Geometry metrics: reference values from the Mind-the-Gap release, analytic cases, blocking."""

import math

import numpy as np
import pytest
from conftest import expected_metrics
from scipy.special import hyp0f1

from clipscope.analysis import geometry as g
from clipscope.analysis.pairwise import gaussian_pair_mean
from clipscope.analysis.retrieval import cross_modal_recall, recall_at_k
from clipscope.linalg import l2_normalize


def unit(x):
    return l2_normalize(np.asarray(x, np.float32))


@pytest.mark.parametrize("name", ["features_convirt.npy", "features_convirt_random.npy",
                                  "features_clasp.npy", "features_clasp_random.npy"])
def test_fixture_parity_through_import(mtg, tmp_path, run_cli, name):
    """Acceptance: import --pair-array, then every metric of expected.json to 1e-4."""
    from clipscope import Cache
    from clipscope.tasks import gap, uniformity

    code, _, err = run_cli("import", "--pair-array", mtg / name, "--out", tmp_path / "c.h5")
    assert code == 0, err
    with Cache.open(tmp_path / "c.h5") as c:
        metrics = {**gap.evaluate(c).metrics, **uniformity.evaluate(c).metrics}
        I, T = c.normalized_image_embeddings().astype(np.float64), c.normalized_text_embeddings().astype(np.float64)
    for key, value in expected_metrics(mtg)[name]["metrics"].items():
        m = metrics[key]
        if key in ("centroid_distance", "centroid_cosine"):  # the references' plug-in beside the bias-corrected value
            assert m["plug_in"] == pytest.approx(value, abs=1e-4), key
        elif key == "uniformity_union":  # clipscope's own metric: pairs of different units (a pair's image and
            # text are one unit), where expected.json took every pair; a deliberate deviation, of this size:
            n = len(I)
            X = np.concatenate([I, T])
            K = np.exp(-2 * (2 - 2 * X @ X.T))
            np.fill_diagonal(K, 0.0)
            own = np.exp(-2 * (2 - 2 * (I * T).sum(1)))  # each pair's own kernel, counted twice in K
            want = np.log((K.sum() - 2 * own.sum()) / (2 * n * (2 * n - 1) - 2 * n))
            assert m["value"] == pytest.approx(want, abs=1e-6), key
            assert abs(m["value"] - value) < 0.01, (key, m["value"] - value)
        else:
            assert m["value"] == pytest.approx(value, abs=1e-4), key


def test_identical_modalities_have_no_gap():
    X = unit(np.random.default_rng(0).normal(size=(200, 16)))
    assert g.centroid_distance(X, X) == pytest.approx(0, abs=1e-7)
    assert g.alignment(X, X) == pytest.approx(0, abs=1e-7)
    assert g.paired_cosine(X, X) == pytest.approx(1, abs=1e-6)
    assert g.paired_distance(X, X) == pytest.approx(0, abs=1e-3)
    m = g.uniformity_metrics(X, X, g.identity_pairs(len(X)))
    assert m["uniformity_image"]["value"] == pytest.approx(m["uniformity_text"]["value"])


def test_two_cluster_closed_forms():
    """I all at e1; T all at cos(theta) e1 + sin(theta) e2."""
    n, theta = 50, 0.9
    I = np.zeros((n, 4), np.float32)
    I[:, 0] = 1
    T = np.zeros((n, 4), np.float32)
    T[:, 0], T[:, 1] = math.cos(theta), math.sin(theta)
    d2 = 2 - 2 * math.cos(theta)
    assert g.centroid_distance(I, T) == pytest.approx(2 * math.sin(theta / 2), abs=1e-6)
    assert g.centroid_cosine(I, T) == pytest.approx(math.cos(theta), abs=1e-6)
    assert g.paired_cosine(I, T) == pytest.approx(math.cos(theta), abs=1e-6)
    assert g.cone(I) == pytest.approx(1, abs=1e-6) and g.cone(T) == pytest.approx(1, abs=1e-6)
    # cones are tight (d = 0), so RMG = 1.
    assert g.relative_modality_gap(math.cos(theta), 1.0, 1.0) == pytest.approx(1.0)
    m = g.uniformity_metrics(I, T, g.identity_pairs(n))
    assert m["uniformity_image"]["value"] == pytest.approx(0, abs=1e-6)
    assert m["uniformity_cross"]["value"] == pytest.approx(-2 * d2, abs=1e-5)
    assert m["alignment"]["value"] == pytest.approx(d2, abs=1e-5)
    # every pair of rows of different units: image-image, text-text (kernel 1) and the n^2 - n
    # image-text pairs that are not each other's own pair
    union = (n * (n - 1) + (n * n - n) * math.exp(-2 * d2)) / (n * (n - 1) + n * n - n)
    assert m["uniformity_union"]["value"] == pytest.approx(math.log(union), abs=1e-5)
    # every unpaired text is as close as the paired one: relative alignment 0
    assert m["relative_alignment"]["value"] == pytest.approx(0, abs=1e-5)


def test_rmg_matches_definition_and_clamps():
    d = lambda c: 1 - (c + 1) / 2  # noqa: E731
    assert g.relative_modality_gap(0.2, 0.5, 0.1) == pytest.approx(d(0.2) / ((d(0.5) + d(0.1)) / 2 + d(0.2)))
    # paired cosine 1 -> d = 0 is clamped to 1e-3
    assert g.relative_modality_gap(1.0, 0.0, 0.0) == pytest.approx(1e-3 / (0.5 + 1e-3))


@pytest.mark.parametrize("d", [16, 64])
def test_uniformity_of_uniform_sphere(d):
    X = unit(np.random.default_rng(d).normal(size=(4000, d)))
    value = g.uniformity(X).log_with_ci()[0]
    exact = math.log(hyp0f1(d / 2, 4.0)) - 4.0  # E exp(-2||x-y||^2) on S^(d-1)
    assert value == pytest.approx(exact, abs=0.02)
    assert value == pytest.approx(-4 + 8 / d, abs=0.05 if d == 64 else 0.15)


def test_blocked_equals_naive_with_ragged_blocks():
    rng = np.random.default_rng(1)
    I, T = unit(rng.normal(size=(37, 8))), unit(rng.normal(size=(37, 8)))
    D = 2 - 2 * I @ I.T
    iu = np.triu_indices(37, 1)
    naive = np.log(np.exp(-2 * D[iu]).mean())
    assert g.uniformity(I, block=5).log_with_ci()[0] == pytest.approx(naive, abs=1e-6)
    C = 2 - 2 * T @ I.T
    mask = ~np.eye(37, dtype=bool)
    ident = np.stack([np.arange(37)] * 2, 1)
    assert g.cross_uniformity(T, I, ident, block=6).log_with_ci()[0] == pytest.approx(
        np.log(np.exp(-2 * C[mask]).mean()), abs=1e-6)
    Cm = C.copy()
    np.fill_diagonal(Cm, np.inf)
    ra = (np.diag(C) - Cm.min(1))
    np.testing.assert_allclose(g.relative_alignment_rows(I, T, ident, block=4), ra, atol=1e-5)


def test_sampled_mode_is_close_and_says_so():
    X = unit(np.random.default_rng(2).normal(size=(3000, 8)))
    exact = gaussian_pair_mean(X)
    est = gaussian_pair_mean(X, max_pairs=1000, sample_pairs=200_000, seed=3)
    assert exact.exact and not est.exact
    assert est.n_pairs < exact.n_pairs
    assert abs(est.mean - exact.mean) < 4 * est.se + 1e-9


def test_uniformity_metrics_report_sampling():
    X = unit(np.random.default_rng(4).normal(size=(500, 8)))
    m = g.uniformity_metrics(X, X, g.identity_pairs(len(X)), max_pairs=1000, sample_pairs=20_000)
    assert m["uniformity_image"]["exact"] is False
    assert m["relative_alignment"]["exact"] is False
    lo, hi = m["uniformity_image"]["ci95"]
    assert lo < m["uniformity_image"]["value"] < hi


def test_recall_matches_brute_force():
    rng = np.random.default_rng(5)
    I, T = unit(rng.normal(size=(60, 6))), unit(rng.normal(size=(40, 6)))
    pairs = np.stack([np.arange(40) % 60, np.arange(40)], 1)
    pairs = np.concatenate([pairs, [[59, 3]]])  # one image with two captions
    S = I @ T.T
    for k in (1, 5):
        hits = []
        for q in np.unique(pairs[:, 0]):
            correct = pairs[pairs[:, 0] == q, 1]
            topk = np.argsort(-S[q])[:k]
            hits.append(bool(set(topk) & set(correct)))
        assert recall_at_k(I, T, pairs, ks=(k,), block=7)[k] == pytest.approx(np.mean(hits))
    r = cross_modal_recall(I, T, pairs)
    assert set(r) == {"i2t_recall@1", "i2t_recall@5", "t2i_recall@1", "t2i_recall@5"}


def test_shift_sweep_closes_the_gap():
    rng = np.random.default_rng(6)
    base = rng.normal(size=(300, 16))
    I = unit(base + 2.0 * np.eye(16)[0])
    T = unit(base + rng.normal(scale=0.1, size=base.shape) - 2.0 * np.eye(16)[0])
    sweep = g.shift_sweep(I, T, np.stack([np.arange(300)] * 2, 1))
    at = {(r["variant"], r["fraction"]): r for r in sweep["rows"]}
    assert at[("image_only", 1.0)]["centroid_distance"] < 0.5 * at[("image_only", 0.0)]["centroid_distance"]
    assert at[("image_only", 0.0)]["centroid_distance"] == pytest.approx(g.centroid_distance(I, T), abs=1e-6)
    assert at[("symmetric", -0.5)]["centroid_distance"] > at[("symmetric", 0.0)]["centroid_distance"]
    # closing the gap helps retrieval here (the shared component dominates once the offset is gone)
    assert at[("image_only", 1.0)]["i2t_recall@1"] >= at[("image_only", 0.0)]["i2t_recall@1"]


def test_per_dimension_gap_shares():
    I = np.zeros((4, 5), np.float32)
    T = np.zeros((4, 5), np.float32)
    I[:, 0], T[:, 1] = 1, 1
    table = g.per_dimension_gap(I, T, top=2)
    assert [r["dim"] for r in table["rows"]] == [0, 1]
    assert table["top_share"] == pytest.approx(1.0)
    assert table["rows"][0]["share"] == pytest.approx(0.5)


def test_linear_separability_extremes():
    rng = np.random.default_rng(7)
    X = unit(rng.normal(size=(400, 8)))
    acc_same, _ = g.linear_separability(X[:200], X[200:])
    assert acc_same < 0.7
    acc_far, n = g.linear_separability(unit(X[:200] + 5 * np.eye(8)[0]), unit(X[200:] - 5 * np.eye(8)[0]))
    assert acc_far == 1.0 and n == 80
    lo, hi = g.wilson_interval(1.0, n)
    assert lo < 1.0 and hi == pytest.approx(1.0)


def test_wilson_interval_contains_its_estimate_at_the_ends():
    # the float rounding of centre - half at p = 0 once gave a lower bound of 2.8e-17 > p
    for n in (1, 2, 3, 6, 7, 10, 100, 999):
        for k in range(n + 1):
            p = k / n
            lo, hi = g.wilson_interval(p, n)
            assert 0.0 <= lo <= p <= hi <= 1.0, (k, n)


def test_each_interval_contains_its_value():
    rng = np.random.default_rng(8)
    I, T = unit(rng.normal(size=(300, 8)) + 1), unit(rng.normal(size=(300, 8)))
    m = g.gap_metrics(I, T, g.identity_pairs(300), seed=1)
    for k in ("centroid_distance", "paired_cosine", "rmg", "cone_image"):
        lo, hi = m[k]["ci95"]
        assert lo <= m[k]["value"] <= hi, k


def test_gap_end_to_end_with_vit_b_32_random_init(run_cli, image_folder, tmp_path):
    """Acceptance (issue 3): gap --model ViT-B-32 --pretrained none --data folder:DIR, through the content cache."""
    import json

    args = ("gap", "--model", "ViT-B-32", "--pretrained", "none", "--data", f"folder:{image_folder}",
            "--out", tmp_path / "run", "--projection", "pca", "--workers", "0")
    code, out, err = run_cli(*args)
    assert code == 0, err
    rep = json.loads((tmp_path / "run" / "gap.json").read_text())
    assert rep["model"] == {**rep["model"], "name": "ViT-B-32", "pretrained": "none", "init_seed": 0}
    assert rep["data"]["counts"]["images"] == 6 and rep["data"]["counts"]["failed"] == 3
    assert set(rep["artifacts"]) == {"projection", "cosine_histograms", "per_dimension_gap", "shift_sweep"}
    cached = list((tmp_path / "content-cache").glob("*.h5"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    code, _, err = run_cli(*args)  # the second run reuses the content-keyed cache
    assert code == 0, err
    assert cached[0].stat().st_mtime_ns == mtime


def test_uniformity_cli_states_sampling(run_cli, tmp_path, mtg):
    import json

    cache = tmp_path / "c.h5"
    assert run_cli("import", "--pair-array", mtg / "features_convirt.npy", "--out", cache)[0] == 0
    code, out, err = run_cli("uniformity", cache, "--max-pairs", "10000", "--sample-pairs", "50000", "--json", "-")
    assert code == 0, err
    rep = json.loads(out)  # stdout holds the report alone
    assert rep["metrics"]["uniformity_image"]["exact"] is False
    assert any("unbiased seeded sample" in n for n in rep["notes"])
    exact = expected_metrics(mtg)["features_convirt.npy"]["metrics"]["uniformity_image"]
    lo, hi = rep["metrics"]["uniformity_image"]["ci95"]
    assert lo - 0.05 < exact < hi + 0.05


def test_shift_sweep_with_absolute_deltas_matches_the_reference_operation():
    """Symmetric rows equal the reference's move_features: text + delta/2 g, image - delta/2 g, renormalised."""
    rng = np.random.default_rng(9)
    I = unit(rng.normal(size=(50, 8)) + 1.0)
    T = unit(rng.normal(size=(50, 8)) - 1.0)
    sweep = g.shift_sweep(I, T, np.stack([np.arange(50)] * 2, 1), deltas=[-0.5, 0.25, 1.0])
    diff = I.mean(0, dtype=np.float64) - T.mean(0, dtype=np.float64)
    direction = diff / np.linalg.norm(diff)
    for row in (r for r in sweep["rows"] if r["variant"] == "symmetric"):
        Tm = T + 0.5 * row["delta"] * direction
        Im = I - 0.5 * row["delta"] * direction
        Tm /= np.linalg.norm(Tm, axis=1, keepdims=True)
        Im /= np.linalg.norm(Im, axis=1, keepdims=True)
        assert row["centroid_distance"] == pytest.approx(np.linalg.norm(Tm.mean(0) - Im.mean(0)), abs=1e-6)
        r1 = np.mean((Im @ Tm.T).argmax(1) == np.arange(50))
        assert row["i2t_recall@1"] == pytest.approx(r1)
    assert [r["delta"] for r in sweep["rows"][:3]] == [-0.5, 0.25, 1.0]


def test_gap_cli_reference_delta_grid(run_cli, tmp_path, mtg):
    import json

    cache = tmp_path / "c.h5"
    assert run_cli("import", "--pair-array", mtg / "features_clasp.npy", "--out", cache)[0] == 0
    code, out, err = run_cli("gap", cache, "--shift-deltas", "-5:5:0.25", "--json", "-")
    assert code == 0, err
    rows = json.loads(out)["tables"]["shift_sweep"]
    assert [r["delta"] for r in rows if r["variant"] == "symmetric"] == pytest.approx(np.arange(-5, 5, 0.25).tolist())
    code, _, err = run_cli("gap", cache, "--shift-deltas", "a:b", "--json", "-")
    assert code == 2 and "--shift-deltas" in err
