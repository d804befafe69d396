"""Modality inversion: exactness of the pseudo-token paths, convergence, defaults, retrieval metrics."""

import numpy as np
import pytest
import torch

from clipscope.analysis.inversion import (
    OTI_DEFAULTS,
    OVI_DEFAULTS,
    PLACEHOLDER,
    encode_image_with_pseudo_tokens,
    encode_text_with_pseudo_tokens,
    invert_batch,
)
from clipscope.analysis.retrieval import label_retrieval
from clipscope.errors import ClipscopeError
from clipscope.models import load_encoder


@pytest.fixture(scope="module")
def tiny():
    return load_encoder("clipscope-tiny", "none", device="cpu")


def test_defaults_pinned_to_reference():
    """miccunifi/Cross-the-Gap configs/oti/*.yaml and configs/ovi/*.yaml."""
    for cfg in (OTI_DEFAULTS, OVI_DEFAULTS):
        assert (cfg.tokens, cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.seed, cfg.init_std) == (1, 2e-2, 0.01, 64, 42, 0.02)
        assert cfg.template == "a photo of {}"
    assert OTI_DEFAULTS.steps == 150 and OVI_DEFAULTS.steps == 1000


def test_pseudo_token_text_path_equals_encode_text(tiny):
    """Feeding the real token embedding of 'dog' as the pseudo token reproduces encode_text('a photo of dog')."""
    m, tok = tiny.model, tiny.tokenizer
    dog = tok(["dog"])[0][1]
    pseudo = m.token_embedding.weight[dog][None, None, :]
    tokens = tok([f"a photo of {PLACEHOLDER}"])
    with torch.no_grad():
        got = encode_text_with_pseudo_tokens(m, tokens, pseudo, int(tok([PLACEHOLDER])[0][1]))
        want = m.encode_text(tok(["a photo of dog"]))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_pseudo_token_image_path_equals_encode_image(tiny):
    """With one pseudo token per patch (nearest interpolation is then the identity) and the real
    patch embeddings as tokens, the OVI path reproduces encode_image."""
    m = tiny.model
    img = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        patches = m.visual.conv1(img).flatten(2).transpose(1, 2)  # (B, n_patches, width)
        got = encode_image_with_pseudo_tokens(m, patches)
        want = m.encode_image(img)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode,steps", [("oti", 40), ("ovi", 60)])
def test_inversion_raises_cosine_and_is_deterministic(tiny, mode, steps):
    torch.manual_seed(0)
    targets = torch.randn(8, 64)
    cfg = OTI_DEFAULTS.__class__(steps=steps)
    feats, hist = invert_batch(tiny.model, targets, mode=mode, config=cfg, tokenizer=tiny.tokenizer, generator_seed=3)
    assert hist.shape == (steps + 1, 8)
    assert hist[-1].mean() > hist[0].mean() + 0.2
    assert (hist[-1] > hist[0]).all()
    ticks = []  # progress moves once per optimisation step, not once per batch (#30)
    feats2, hist2 = invert_batch(tiny.model, targets, mode=mode, config=cfg, tokenizer=tiny.tokenizer, generator_seed=3,
                                 on_step=lambda: ticks.append(1))
    assert len(ticks) == steps
    np.testing.assert_array_equal(hist, hist2)
    torch.testing.assert_close(feats, feats2)


def test_ovi_on_resnet_is_a_clear_error():
    enc = load_encoder("RN50", "none", device="cpu")
    with pytest.raises(ClipscopeError, match="VisionTransformer"):
        invert_batch(enc.model, torch.randn(2, 1024), mode="ovi", config=OVI_DEFAULTS.__class__(steps=1))


def test_label_retrieval_hand_computed():
    # 1-D embeddings on the circle: cosine order is easy to read.
    ang = np.array([0.0, 0.1, 0.25, 3.0, 3.1])
    X = np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)
    lab = np.array([0, 0, 1, 1, 0])
    r = label_retrieval(X, X, lab, lab, same_set=True, per_query=True)
    # Same set: mAP@R sums over the top R+1 (the reference counts R before removing the query) over R.
    # query 0: ranking 1(0),2(1),3(1),4(0) -> rel [1,0,0,1], R=2: AP=(1/1+2/4)/2=0.75; mAP@R=1/2; P@R=1/2
    # query 1: ranking 0(0),2(1),3(1),4(0) -> rel [1,0,0,1]: 0.75, mAP@R 1/2
    # query 2: ranking 1(0),0(0),3(1),4(0) -> rel [0,0,1,0] R=1: AP=1/3; mAP@R=0 (top 2); P@R=0
    # query 3: ranking 4(0),2(1),1,0 -> rel [0,1,0,0] R=1: AP=1/2; mAP@R=(1/2)/1 (top 2); P@R=0
    # query 4: ranking 3(1),2(1),1(0),0(0) -> rel [0,0,1,1] R=2: AP=(1/3+2/4)/2; mAP@R=(1/3)/2 (top 3)
    ap = np.array([0.75, 0.75, 1 / 3, 0.5, (1 / 3 + 0.5) / 2])
    np.testing.assert_allclose(r["ap"], 100 * ap, atol=1e-9)
    assert r["mAP"] == pytest.approx(100 * ap.mean())
    assert r["mAP@R"] == pytest.approx(100 * np.mean([0.5, 0.5, 0, 0.5, 1 / 6]))
    # a separate gallery truncates at R itself (Musgrave et al.'s MAP@R)
    sep = label_retrieval(X[:2], X[2:], lab[:2], lab[2:])  # queries 0, 1 (label 0) vs gallery 2, 3, 4
    # both queries rank 2(1), 3(1), 4(0): R=1, top-1 irrelevant -> mAP@R 0; AP = 1/3
    assert sep["mAP@R"] == 0.0 and sep["mAP"] == pytest.approx(100 / 3)
    assert r["precision@R"] == pytest.approx(100 * np.mean([0.5, 0.5, 0, 0, 0]))
    assert r["recall@1"] == pytest.approx(100 * np.mean([1, 1, 0, 0, 0]))


def test_label_retrieval_matches_brute_force_random():
    rng = np.random.default_rng(0)
    Q, G = rng.normal(size=(30, 5)), rng.normal(size=(50, 5))
    ql, gl = rng.integers(0, 4, 30), rng.integers(0, 4, 50)
    r = label_retrieval(Q, G, ql, gl, block=7)
    aps, prs = [], []
    for q in range(30):
        order = np.argsort(-(G @ Q[q]), kind="stable")
        rel = gl[order] == ql[q]
        R = rel.sum()
        prec = np.cumsum(rel) / np.arange(1, 51)
        aps.append((prec * rel).sum() / R)
        prs.append(rel[:R].sum() / R)
    assert r["mAP"] == pytest.approx(100 * np.mean(aps))
    assert r["precision@R"] == pytest.approx(100 * np.mean(prs))


def test_invert_cli_stores_results_and_validates(run_cli, tmp_path):
    import json

    from clipscope import Cache

    cache = tmp_path / "p.h5"
    assert run_cli("extract", "--model", "clipscope-tiny", "--pretrained", "none", "--workers", "0",
                   "--data", "probes:24", "--out", cache)[0] == 0
    code, out, err = run_cli("invert", cache, "--model", "clipscope-tiny", "--pretrained", "none", "--mode", "oti",
                             "--steps", "10", "--out", tmp_path / "run")
    assert code == 0, err
    assert "OTI (24 rows x 10 steps)" in err and "/240 " in err  # the bar counts optimisation steps
    assert "OTI" not in out  # machine output stays off stdout's bar-free stream
    rep = json.loads((tmp_path / "run" / "invert.json").read_text())
    assert rep["metrics"]["final_cosine"]["value"] > rep["metrics"]["initial_cosine"]["value"]
    assert "oti_to_image_map" in rep["metrics"] and "image_to_image_map" in rep["metrics"]
    assert (tmp_path / "run" / rep["artifacts"]["loss_curve"]).exists()
    with Cache.open(cache) as c:
        assert c["image/oti_embeddings"].shape == (24, 64)
        assert c["image/oti_cosine"].shape == (24, 2)
        assert c.n_images == 24  # the originals are kept
    # a different model than the cache's is refused
    code, _, err = run_cli("invert", cache, "--model", "ViT-B-32", "--pretrained", "none", "--mode", "oti",
                           "--out", tmp_path / "run2")
    assert code == 1 and "needs the model that made the cache" in err


def test_inversion_resumes_after_an_interruption(tmp_path, monkeypatch):
    """An inversion stopped after its first batch continues from the journal; the stored result
    equals an uninterrupted run's."""
    from clipscope import Cache
    from clipscope.analysis.inversion import InversionConfig
    from clipscope.data import open_source
    from clipscope.extract import extract
    from clipscope.tasks import invert

    enc = load_encoder("clipscope-tiny", "none", device="cpu")
    for name in ("a", "b"):
        extract(open_source("probes:10"), enc, tmp_path / f"{name}.h5", batch_size=5, progress=False)
    cfg = InversionConfig(steps=5, batch_size=4)
    with Cache.open(tmp_path / "a.h5") as c:
        invert.run_inversion(c, enc, mode="oti", config=cfg, progress=False)

    real = invert.invert_batch
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(invert, "invert_batch", flaky)
    with Cache.open(tmp_path / "b.h5") as c, pytest.raises(KeyboardInterrupt):
        invert.run_inversion(c, enc, mode="oti", config=cfg, progress=False)
    state = tmp_path / "b.h5.oti.partial" / "rows.json"
    assert state.exists()
    monkeypatch.setattr(invert, "invert_batch", real)
    with Cache.open(tmp_path / "b.h5") as c:
        invert.run_inversion(c, enc, mode="oti", config=cfg, progress=False)
    assert not (tmp_path / "b.h5.oti.partial").exists()
    with Cache.open(tmp_path / "a.h5") as a, Cache.open(tmp_path / "b.h5") as b:
        np.testing.assert_array_equal(a["image/oti_embeddings"][:], b["image/oti_embeddings"][:])
        np.testing.assert_array_equal(a["image/oti_cosine"][:], b["image/oti_cosine"][:])


def test_invert_with_a_separate_gallery(run_cli, tmp_path):
    """--gallery: queries from one set, the gallery from another (nothing removed from it)."""
    import json

    code, _, err = run_cli("invert", "--model", "clipscope-tiny", "--data", "probes:16", "--mode", "oti",
                           "--steps", "5", "--gallery", "probes:40:7", "--out", tmp_path / "run")
    assert code == 0, err
    rep = json.loads((tmp_path / "run" / "invert.json").read_text())
    # every query's class occurs among the 40 gallery probes of another seed: metrics are defined
    for name in ("image_to_image_map", "oti_to_image_map", "oti_to_image_recall_at_1"):
        assert 0 <= rep["metrics"][name]["value"] <= 100
    assert rep["metrics"]["image_to_image_recall_at_1"]["value"] > 50  # the bundled model knows colour and shape


def _reference_style_metrics(S, ql, gl, same):
    """A direct per-query transcription of the reference's evaluation loop (Cross the Gap,
    src/retrieval.py compute_metrics and src/utils.py retrieval_average_precision_atk, with
    torchmetrics' retrieval_average_precision / retrieval_r_precision returning 0 for a query
    without relevant items). mAP@R is then 0/0 = NaN for such a query."""
    aps, aps_r, prs, r1 = [], [], [], []
    for q in range(S.shape[0]):
        sim, true = S[q], gl == ql[q]
        relevant_before_removal = int(true.sum())
        if same:
            sim, true = np.delete(sim, q), np.delete(true, q)
        order = np.argsort(-sim, kind="stable")
        t = true[order].astype(float)
        prec = np.cumsum(t) / np.arange(1, len(t) + 1)
        n_rel = t.sum()
        aps.append((prec * t).sum() / n_rel if n_rel else 0.0)
        k = relevant_before_removal or len(t)  # `top_k or preds.shape[-1]`
        with np.errstate(invalid="ignore", divide="ignore"):
            aps_r.append((prec[:k] * t[:k]).sum() / min(n_rel, k))
        prs.append(t[: int(n_rel)].sum() / n_rel if n_rel else 0.0)
        r1.append(t[0])
    return {"mAP": 100 * np.mean(aps), "mAP@R": 100 * np.mean(aps_r), "precision@R": 100 * np.mean(prs),
            "recall@1": 100 * np.mean(r1), "mAP@R_defined": 100 * np.nanmean(aps_r),
            "no_relevant": int(np.isnan(aps_r).sum())}


@pytest.mark.parametrize("same", [True, False])
def test_label_retrieval_equals_the_reference_loop(same):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 6))
    labels = rng.integers(0, 4, 60)
    Q, ql = (X, labels) if same else (X[:20], labels[:20])
    G, gl = (X, labels) if same else (X[20:], labels[20:])
    ours = label_retrieval(Q, G, ql, gl, same_set=same, block=7)
    ref = _reference_style_metrics(Q @ G.T, ql, gl, same)
    for key in ("mAP", "mAP@R", "precision@R", "recall@1"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-9), key
    assert ours["no_relevant"] == 0


@pytest.mark.parametrize("same", [True, False])
def test_queries_without_relevant_items_follow_the_reference(same):
    """Labels 5 and 6 occur once (same set: only the query itself) or only among queries: the
    reference counts such queries as 0 in mAP, P@R and R@1; its mAP@R would be NaN, so
    clipscope averages mAP@R over the queries that have a relevant item and reports the count."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 6))
    labels = rng.integers(0, 3, 40)
    labels[[3, 11]] = [5, 6]
    Q, ql = (X, labels) if same else (X[:20], labels[:20])
    G, gl = (X, labels) if same else (X[20:], labels[20:])
    ours = label_retrieval(Q, G, ql, gl, same_set=same, block=6)
    ref = _reference_style_metrics(Q @ G.T, ql, gl, same)
    assert np.isnan(ref["mAP@R"]) and ref["no_relevant"] >= 2
    for key in ("mAP", "precision@R", "recall@1"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-9), key
    assert ours["mAP@R"] == pytest.approx(ref["mAP@R_defined"], abs=1e-9)
    assert ours["no_relevant"] == ref["no_relevant"]
