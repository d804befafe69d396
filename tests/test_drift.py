"""Drift: analytic cases, CKA against the Gram-matrix definition, the fixtures."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from clipscope.analysis.drift import knn_overlap, linear_cka, procrustes, row_cosines
from clipscope.linalg import l2_normalize


def gram_cka(X, Y):
    """CKA from the N x N linear Gram matrices with HSIC's centring matrix H (Kornblith et al. 2019)."""
    n = len(X)
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ (X @ X.T) @ H, H @ (Y @ Y.T) @ H
    return (K * L).sum() / (np.linalg.norm(K) * np.linalg.norm(L))


def test_feature_space_cka_equals_gram_definition():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 12))
    Y = X @ rng.normal(size=(12, 7)) + 0.5 * rng.normal(size=(80, 7))  # another dimension
    assert linear_cka(X, Y) == pytest.approx(gram_cka(X, Y), abs=1e-6)
    Z = rng.normal(size=(80, 20))
    assert linear_cka(X, Z) == pytest.approx(gram_cka(X, Z), abs=1e-6)


def test_self_and_rotation():
    rng = np.random.default_rng(1)
    X = l2_normalize(rng.normal(size=(300, 16)))
    assert linear_cka(X, X) == pytest.approx(1.0, abs=1e-9)
    assert knn_overlap(X, X, k=10).mean() == 1.0
    R = ortho_group.rvs(16, random_state=2).astype(np.float32)
    Y = X @ R
    assert linear_cka(X, Y) == pytest.approx(1.0, abs=1e-6)
    R_hat, residual = procrustes(X, Y)
    assert residual == pytest.approx(0.0, abs=1e-8)
    np.testing.assert_allclose(R_hat, R, atol=1e-4)
    assert knn_overlap(X, Y, k=10).mean() == 1.0
    assert row_cosines(X, Y).mean() < 0.9  # the raw rows moved
    np.testing.assert_allclose(row_cosines(X @ R_hat, Y), 1.0, atol=1e-5)


def test_controlled_perturbations():
    rng = np.random.default_rng(3)
    X = l2_normalize(rng.normal(size=(400, 32)))
    ckas, overlaps = [], []
    for noise in (0.05, 0.2, 0.8):
        Y = l2_normalize(X + noise * rng.normal(size=X.shape))
        ckas.append(linear_cka(X, Y))
        overlaps.append(knn_overlap(X, Y, k=10).mean())
    assert ckas[0] > ckas[1] > ckas[2]
    assert overlaps[0] > overlaps[1] > overlaps[2]
    # moving a known subset: only those rows lose their neighbourhoods and drift after alignment
    Y = X.copy()
    moved = np.arange(0, 400, 10)
    Y[moved] = l2_normalize(rng.normal(size=(len(moved), 32)))
    R, _ = procrustes(X, Y)
    drift = 1 - row_cosines(X @ R, Y)
    assert set(np.argsort(-drift)[:len(moved)]) == set(moved)


def test_knn_overlap_hand_case():
    # four points on a line in 2-D angles: neighbours of each are fixed; swapping two changes overlaps
    ang = np.array([0.0, 0.1, 0.3, 0.7])
    X = np.stack([np.cos(ang), np.sin(ang)], 1)
    Y = X[[0, 1, 3, 2]]  # rows 2 and 3 exchange positions
    ov = knn_overlap(X, Y, k=1)
    # X: nn(0)=1, nn(1)=0, nn(2)=1, nn(3)=2. Y: nn(0)=1, nn(1)=0, nn(2)=3 (at 0.3), nn(3)=1 (at 0.1)
    np.testing.assert_allclose(ov, [1.0, 1.0, 0.0, 0.0])


def test_fixture_releases_drift_apart(mtg, run_cli, tmp_path):
    import json

    for name in ("features_convirt.npy", "features_convirt_random.npy"):
        assert run_cli("import", "--pair-array", mtg / name, "--out", tmp_path / f"{name}.h5")[0] == 0
    code, out, err = run_cli("drift", tmp_path / "features_convirt_random.npy.h5", tmp_path / "features_convirt.npy.h5",
                             "--out", tmp_path / "run")
    assert code == 0, err
    rep = json.loads((tmp_path / "run" / "drift.json").read_text())
    m = {k: v["value"] for k, v in rep["metrics"].items()}
    assert m["cka_image"] < 0.2 and m["cka_text"] < 0.2
    assert m["knn_overlap_image"] < 0.1 and m["knn_overlap_text"] < 0.1
    assert rep["data"]["counts"]["images_matched"] == 500
    assert len(rep["tables"]["most_moved_image"]) == 20
    code, out, err = run_cli("drift", tmp_path / "features_convirt.npy.h5", tmp_path / "features_convirt.npy.h5",
                             "--json", "-")
    same = json.loads(out)["metrics"]
    assert same["cka_image"]["value"] == pytest.approx(1.0) and same["knn_overlap_text"]["value"] == 1.0
    assert same["aligned_angle_image"]["value"] == pytest.approx(0.0, abs=0.1)


def test_drift_needs_shared_ids(run_cli, tmp_path):
    np.save(tmp_path / "a.npy", np.eye(20, 8, dtype=np.float32) + 0.1)
    (tmp_path / "ida.txt").write_text("\n".join(f"a{i}" for i in range(20)))
    (tmp_path / "idb.txt").write_text("\n".join(f"b{i}" for i in range(20)))
    run_cli("import", "--image-embeddings", tmp_path / "a.npy", "--ids", tmp_path / "ida.txt", "--out", tmp_path / "a.h5")
    run_cli("import", "--image-embeddings", tmp_path / "a.npy", "--ids", tmp_path / "idb.txt", "--out", tmp_path / "b.h5")
    code, _, err = run_cli("drift", tmp_path / "a.h5", tmp_path / "b.h5", "--out", tmp_path / "run")
    assert code == 1 and "share no image ids" in err


def test_mod_x_measures_analytic():
    """Rows in the (e0, e1) plane rotated by 30 degrees: every image row turns 30 degrees;
    texts unchanged turn 0, so each pair deviates by 30; unchanged spaces have KL 0, and the
    KL of a two-pair batch equals the hand computation."""
    from clipscope.analysis.drift import inter_modal_deviation, rotation_angles, similarity_kl

    rng = np.random.default_rng(0)
    phi = rng.uniform(0, 2 * np.pi, 50)
    X = np.zeros((50, 8), np.float32)
    X[:, 0], X[:, 1] = np.cos(phi), np.sin(phi)
    th = np.radians(30)
    R = np.eye(8)
    R[:2, :2] = [[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]
    Y = (X @ R.T).astype(np.float32)
    np.testing.assert_allclose(rotation_angles(X, Y), 30.0, atol=1e-3)
    T = np.roll(X, 1, axis=1)
    pairs = np.stack([np.arange(50)] * 2, 1)
    np.testing.assert_allclose(inter_modal_deviation(rotation_angles(X, Y), rotation_angles(T, T), pairs), 30.0, atol=1e-3)
    assert np.allclose(similarity_kl(X, T, X, T, pairs), 0.0)
    a, b = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.6, 0.8], [0.8, 0.6]])
    two = np.array([[0, 0], [1, 1]])
    kl = similarity_kl(a, a, b, b, two, temperature=1.0)
    p_old = np.exp(a @ a.T) / np.exp(a @ a.T).sum(1, keepdims=True)
    p_new = np.exp(b @ b.T) / np.exp(b @ b.T).sum(1, keepdims=True)
    np.testing.assert_allclose(kl, (p_old * np.log(p_old / p_new)).sum(1))


def test_streamed_pieces_equal_their_direct_definitions():
    """Procrustes from the accumulated X^T Y equals scipy's orthogonal_procrustes on the rows and
    the residual its direct formula; the kNN overlap of sampled queries equals every row's,
    restricted to them; a row reader gallery, read in slabs, gives the same neighbours."""
    from scipy.linalg import orthogonal_procrustes

    from clipscope.cache import from_arrays
    from clipscope.linalg import blocked_topk

    rng = np.random.default_rng(5)
    X = l2_normalize(rng.normal(size=(70, 12)).astype(np.float32))
    Y = l2_normalize((X @ ortho_group.rvs(12, random_state=1) + 0.4 * rng.normal(size=X.shape)).astype(np.float32))
    R, residual = procrustes(X, Y)
    R_ref, _ = orthogonal_procrustes(X.astype(np.float64), Y.astype(np.float64))
    assert np.allclose(R, R_ref, atol=1e-10)
    direct = ((X.astype(np.float64) @ R_ref - Y) ** 2).sum() / (Y.astype(np.float64) ** 2).sum()
    assert residual == pytest.approx(direct, rel=1e-10)
    q = np.array([0, 5, 17, 69])
    assert np.array_equal(knn_overlap(X, Y, k=4, query_rows=q), knn_overlap(X, Y, k=4)[q])
    reader = from_arrays(X, Y, None).rows("image")
    v1, i1 = blocked_topk(X[q], X, 4, query_rows=q)
    v2, i2 = blocked_topk(X[q], reader, 4, query_rows=q, slab=9)
    assert np.array_equal(i1, i2) and np.allclose(v1, v2, atol=1e-6)
    assert not (i1 == q[:, None]).any()  # a query is never its own neighbour
