"""The release gate's error rate and power, measured by simulation over its whole family of
decisions (every gap and uniformity metric of a comparison), and its rules one by one."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import simulate as S

from clipscope.report.compare import compare_reports, decide, failed, holm

LAYOUTS = ("pairs", "captions", "classes")
# planted degradations at n = 1000: (draw option, size, the metric it degrades, by about)
PLANTED = {"pairs": [("widen", 0.16, "centroid_distance"), ("shift", 0.15, "paired_cosine")],
           "captions": [("widen", 0.16, "centroid_distance"), ("shift", 0.18, "paired_cosine")],
           "classes": [("widen", 0.25, "centroid_distance")]}


def false_alarms(layout: str, compares: int, n: int = 200) -> tuple[int, dict]:
    flagged, by_metric = 0, {}
    for k in range(compares):
        rows, summary = S.gate(S.reports(*S.draw(layout, n, 2 * k), 2 * k),
                               S.reports(*S.draw(layout, n, 2 * k + 1), 2 * k + 1))
        bad = [r.metric for r in rows if r.status == "regression"]
        flagged += bool(bad) or failed(rows, summary)
        for m in bad:
            by_metric[m] = by_metric.get(m, 0) + 1
    return flagged, by_metric


@pytest.mark.parametrize("layout", LAYOUTS)
def test_two_runs_of_one_model_rarely_fail_the_gate(layout):
    """Same-distribution samples, 100 compares per layout: the share that flags anything is
    <= 0.05 (+ its one-sided binomial margin), with Holm over every tested metric."""
    compares = 100
    flagged, by_metric = false_alarms(layout, compares)
    margin = 1.645 * math.sqrt(0.05 * 0.95 / compares)
    assert flagged / compares <= 0.05 + margin, (layout, flagged, by_metric)


@pytest.mark.parametrize("layout, kind, size, metric", [(lay, *p) for lay, ps in PLANTED.items() for p in ps])
def test_a_planted_degradation_is_flagged(layout, kind, size, metric):
    """paired cosine lowered by ~0.035, or centroid distance raised by ~0.05, at n = 1000:
    flagged in >= 90% of runs (beyond the tolerance of 0.02, and significant after Holm)."""
    runs, hits = 20, 0
    for k in range(runs):
        rows, _ = S.gate(S.reports(*S.draw(layout, 1000, 2 * k), 2 * k),
                         S.reports(*S.draw(layout, 1000, 2 * k + 1, **{kind: size}), 2 * k + 1))
        hits += any(r.metric == metric and r.status == "regression" for r in rows)
    assert hits / runs >= 0.9, (layout, metric, hits)


# --------------------------------------------------------------------------- the rules


def _report(value, ci=None, hib=True, name="paired_cosine", command="gap", config=None, counts=None, **extra):
    return {"schema_version": 1, "clipscope_version": "0", "command": command, "created_utc": "2026-01-01T00:00:00+00:00",
            "model": {"name": "m", "pretrained": "none"},
            "data": {"spec": "s", "fingerprint": "f", "counts": counts or {"images": 100}}, "seed": 0,
            "config": config or {}, "tables": {}, "artifacts": {},
            "metrics": {name: {"value": value, "ci95": ci, "higher_is_better": hib, "description": "d", **extra}}}


def _status(base, new, **kw):
    rows = compare_reports(base, new)
    summary = decide(rows, **kw)
    return rows[0], summary


def test_holm_matches_its_definition():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> running max 0.06)
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_the_rules():
    base = _report(0.60, [0.59, 0.61])
    small_but_sure = _report(0.585, [0.584, 0.586])  # -0.015: significant, inside the tolerance 0.02
    big_but_noisy = _report(0.57, [0.45, 0.69])  # -0.03: beyond the tolerance, noise explains it
    big_and_sure = _report(0.55, [0.545, 0.555])
    expect = {"both": ("ok", "ok", "regression"), "significance": ("regression", "ok", "regression"),
              "tolerance": ("ok", "regression", "regression")}
    for rule, want in expect.items():
        got = tuple(_status(base, new, rule=rule)[0].status for new in (small_but_sure, big_but_noisy, big_and_sure))
        assert got == want, rule
    row, _ = _status(base, big_and_sure)
    assert row.p_value < 1e-6 and row.p_adjusted == row.p_value  # a family of one


def test_holm_controls_the_family_not_each_metric():
    """20 metrics each with p = 0.01 alone: significant one by one, not as a family of 20."""
    base = {**_report(0.5), "metrics": {}}
    new = copy.deepcopy(base)
    for k in range(20):
        name = f"paired_cosine_{k}"
        base["metrics"][name] = {"value": 0.60, "ci95": [0.59, 0.61], "higher_is_better": True, "description": "d"}
        # a drop of 2.33 combined standard errors: one-sided p = 0.01; beyond any tolerance
        se = 0.01 / 1.959964
        new["metrics"][name] = {"value": 0.60 - 2.326 * math.hypot(se, se), "ci95": [0.59 - 0.0329, 0.61 - 0.0329],
                                "higher_is_better": True, "description": "d"}
    rows = compare_reports(base, new, tolerance=0.0)
    decide(rows, rule="both")
    assert all(r.p_value == pytest.approx(0.01, rel=0.02) for r in rows)
    assert not any(r.status == "regression" for r in rows)


def test_a_change_of_a_constant_is_real():
    """Fixed class prompts: an interval of zero width has no sampling error, so any change of
    it beyond the tolerance is a regression."""
    base, new = _report(0.30, [0.30, 0.30], hib=False, name="cone_text"), _report(0.33, [0.33, 0.33], hib=False,
                                                                                  name="cone_text")
    row, _ = _status(base, new)
    assert row.p_value == 0.0 and row.status == "regression"


def test_no_valid_interval_is_listed_not_gated():
    why = "texts shared by several images ... no valid interval"
    base = _report(-0.30, None, hib=False, name="relative_alignment", no_interval=why)
    new = _report(-0.20, None, hib=False, name="relative_alignment", no_interval=why)
    row, _ = _status(base, new)
    assert row.status == "not gated" and "no valid interval" in row.reason
    # without a stated reason a metric with no interval is gated on its tolerance, as before
    row, _ = _status(_report(0.5, hib=True), _report(0.4, hib=True))
    assert row.status == "regression"


def test_metrics_defined_differently_are_incomparable():
    cells = {"corruptions": ["fog"], "severities": [1, 2, 3, 4, 5], "templates": ["a {c}"], "max_images": 100}
    full = {**cells, "corruptions": ["fog", "snow"]}
    base = _report(60.0, None, hib=False, name="mce", command="robustness", config=full)
    new = _report(40.0, None, hib=False, name="mce", command="robustness", config=cells)
    row, summary = _status(base, new)
    assert row.status == "incomparable" and "corruptions" in row.reason
    assert failed([row], summary)  # the gate fails on apples and oranges ...
    row, summary = _status(base, new, allow_incomparable=True)
    assert row.status == "incomparable" and not failed([row], summary)  # ... unless told to list them
    other_t = _status(_report(-3.4, [-3.5, -3.3], hib=False, name="uniformity_image", command="uniformity",
                              config={"t": 2.0}),
                      _report(-3.4, [-3.5, -3.3], hib=False, name="uniformity_image", command="uniformity",
                              config={"t": 1.0}))[0]
    assert other_t.status == "incomparable" and "config t" in other_t.reason
    n_differs = _status(_report(0.5, [0.4, 0.6]), _report(0.5, [0.4, 0.6], counts={"images": 120}))[0]
    assert n_differs.status == "incomparable" and "sample sizes" in n_differs.reason
    cov = _status(_report(0.5, None, name="imagenet_c_mean_accuracy", command="robustness",
                          config={"benchmarks": ["imagenet-c:/x"]}, coverage={"cells": 75, "of": 75}),
                  _report(0.6, None, name="imagenet_c_mean_accuracy", command="robustness",
                          config={"benchmarks": ["imagenet-c:/x"]}, coverage={"cells": 5, "of": 75}))[0]
    assert cov.status == "incomparable" and "coverage" in cov.reason


def test_a_metric_the_run_was_not_asked_for_is_not_missing():
    base = _report(0.1, None, hib=None, name="noise_sigma", config={"noise_model": True})
    asked = _report(0.1, None, hib=None, name="paired_cosine", config={"noise_model": True})
    not_asked = _report(0.1, None, hib=None, name="paired_cosine", config={"noise_model": False})
    assert _status(base, not_asked)[0].status == "not run"
    rows = compare_reports(base, asked)
    decide(rows)
    assert {r.metric: r.status for r in rows}["noise_sigma"] == "regression"


def test_compare_states_its_rule(tmp_path, run_cli):
    (tmp_path / "a.json").write_text(json.dumps(_report(0.60, [0.59, 0.61])))
    (tmp_path / "b.json").write_text(json.dumps(_report(0.55, [0.545, 0.555])))
    code, out, _ = run_cli("compare", tmp_path / "a.json", tmp_path / "b.json")
    assert code == 3 and "rule: both" in out and "Holm over 1 tested metric" in out
    code, out, _ = run_cli("compare", tmp_path / "a.json", tmp_path / "b.json", "--rule", "tolerance", "--format", "json")
    assert code == 3 and json.loads(out)["rule"]["rule"] == "tolerance"
    assert not np.isnan(json.loads(out)["rows"][0]["p_value"])
