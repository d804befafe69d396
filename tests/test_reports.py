"""Report schema for every command, HTML escaping, compare's rules and exit codes, check, the demo gate."""

import copy
import json
import math

import pytest
from conftest import REPO

from clipscope.report import build_report, validate_report
from clipscope.report.compare import compare_reports


def make_report(command="gap", metrics=None, **kw):
    metrics = metrics or {"centroid_distance": {"value": 0.8, "ci95": None, "higher_is_better": False, "description": "gap"}}
    return build_report(command, model={"name": "m", "pretrained": "none"}, data={"spec": "probes", "counts": {"images": 3}},
                        seed=0, config={}, metrics=metrics, **kw)


def m(value, hib, ci=None):
    return {"value": value, "ci95": ci, "higher_is_better": hib, "description": "x"}


def test_tolerance_direction_and_z_test():
    from clipscope.report.compare import decide

    def rows_of(base, new, rule="both", **kw):
        rows = compare_reports(base, new, **kw)
        decide(rows, rule=rule)
        return {r.metric: r for r in rows}

    base = make_report(metrics={"acc": m(0.80, True), "gap": m(0.50, False), "info": m(1.0, None),
                                "tight": m(0.500, True, [0.499, 0.501]), "wide": m(0.50, True, [0.30, 0.70])})
    new = copy.deepcopy(base)
    assert all(r.status == "ok" for r in rows_of(base, new).values())
    new["metrics"]["acc"]["value"] = 0.79   # within the default tolerance 0.02
    new["metrics"]["gap"]["value"] = 0.53   # worse by 0.03 > 0.02
    new["metrics"]["info"]["value"] = 5.0   # no direction: never a regression
    new["metrics"]["tight"].update(value=0.495, ci95=[0.494, 0.496])  # small but significant drop
    new["metrics"]["wide"].update(value=0.49, ci95=[0.29, 0.69])      # within tolerance and not significant
    rows = rows_of(base, new)
    assert rows["acc"].status == "ok"
    assert rows["gap"].status == "regression" and rows["gap"].delta == pytest.approx(0.03)  # no interval: tolerance
    assert rows["info"].status == "changed"
    assert rows["tight"].status == "ok" and rows["tight"].p_value < 1e-6  # significant, but inside the tolerance
    assert rows_of(base, new, rule="significance")["tight"].status == "regression"
    se = 0.4 / 3.919927969080108  # each side: interval width / (2 * 1.96)
    z = 0.01 / math.hypot(se, se)
    assert rows["wide"].p_value == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-6)  # one-sided
    assert rows["wide"].status == "ok"
    # overrides: a wider tolerance for gap clears it; a global zero tolerance flags acc
    rows = rows_of(base, new, overrides={"gap": 0.05}, tolerance=0.0)
    assert rows["gap"].status == "ok" and rows["acc"].status == "regression"
    new["metrics"]["acc"]["value"] = 0.9
    assert rows_of(base, new)["acc"].status == "improvement"


def test_compare_cli_exit_codes_and_formats(run_cli, tmp_path):
    base = make_report(metrics={"acc": m(0.8, True)})
    good, bad = copy.deepcopy(base), copy.deepcopy(base)
    bad["metrics"]["acc"]["value"] = 0.5
    for name, rep in (("base", base), ("good", good), ("bad", bad)):
        (tmp_path / f"{name}.json").write_text(json.dumps(rep))
    assert run_cli("compare", tmp_path / "base.json", tmp_path / "good.json")[0] == 0
    code, out, _ = run_cli("compare", tmp_path / "base.json", tmp_path / "bad.json", "--format", "markdown")
    assert code == 3 and "| acc |" in out and "regression" in out
    code, out, _ = run_cli("compare", tmp_path / "base.json", tmp_path / "bad.json", "--format", "json")
    assert code == 3 and json.loads(out)["regressions"] == 1
    assert run_cli("compare", tmp_path / "base.json", tmp_path / "bad.json", "--metric", "acc=0.5")[0] == 0
    (tmp_path / "junk.json").write_text("{not json")
    code, _, err = run_cli("compare", tmp_path / "base.json", tmp_path / "junk.json")
    assert code == 1 and err.startswith("Error: ") and "not a JSON report" in err
    other = make_report("uniformity", metrics={"acc": m(0.8, True)})
    (tmp_path / "other.json").write_text(json.dumps(other))
    code, _, err = run_cli("compare", tmp_path / "base.json", tmp_path / "other.json")
    assert code == 1 and "cannot compare" in err
    code, _, err = run_cli("compare", tmp_path / "base.json", tmp_path / "base.json", "--metric", "acc")
    assert code == 1 and "NAME=TOLERANCE" in err


def test_html_escapes_data_strings(run_cli, tmp_path):
    evil = "<img src=x onerror=alert(1)>"
    rep = make_report(metrics={"acc": m(0.8, True)}, tables={"per_class_gain": [{"class": evil, "gain": 1.0}]},
                      notes=[f"caption {evil}"])
    rep["data"]["spec"] = f"folder:{evil}"
    run = tmp_path / "run" / "invert"
    run.mkdir(parents=True)
    rep["command"] = "invert"
    (run / "invert.json").write_text(json.dumps(rep))
    code, _, err = run_cli("report", tmp_path / "run", "-o", tmp_path / "r.html")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert evil not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<script" not in page.lower()


def test_check_suite_thresholds_and_baseline(run_cli, tmp_path, mtg):
    cache = tmp_path / "c.h5"
    assert run_cli("import", "--pair-array", mtg / "features_clasp.npy", "--out", cache)[0] == 0
    suite = tmp_path / "suite.toml"
    suite.write_text(f'''
[suite]
cache = "{cache}"
out = "{tmp_path / 'runs'}"

[[run]]
command = "uniformity"

[[run]]
command = "gap"
options = {{ projection = "pca", no_plots = true }}

[[run]]
name = "drift-self"
command = "drift"
cache = ["{cache}", "{cache}"]

[thresholds]
"gap.centroid_distance" = {{ max = 2.0 }}
"uniformity.alignment" = {{ max = 5.0 }}
"drift-self.cka_image" = {{ min = 0.999 }}
''')
    code, out, err = run_cli("check", suite, "--format", "markdown", "--summary", tmp_path / "summary.md")
    assert code == 0, err
    assert "no regression" in out and (tmp_path / "summary.md").exists()
    assert (tmp_path / "runs" / "gap" / "gap.json").exists()
    assert (tmp_path / "runs" / "drift-self" / "drift.json").exists()
    code, _, err = run_cli("check", suite, "--baseline", tmp_path / "runs")  # the runs would overwrite it
    assert code == 1 and "an input this run reads" in err
    import shutil

    shutil.copytree(tmp_path / "runs", tmp_path / "base")
    strict = suite.read_text().replace("max = 2.0", "max = 0.5")
    suite.write_text(strict + '\n[tolerances]\n"uniformity_image" = 0.0\n')
    code, out, err = run_cli("check", suite, "--baseline", tmp_path / "base")
    assert code == 3 and "gap (threshold)" in out and "rule: both" in out, err


def test_schema_rejects_malformed_reports():
    from clipscope.errors import ClipscopeError

    rep = make_report()
    validate_report(rep)
    bad = copy.deepcopy(rep)
    bad["metrics"]["centroid_distance"]["ci95"] = [1.0]
    with pytest.raises(ClipscopeError, match="metrics/centroid_distance/ci95"):
        validate_report(bad)
    bad = copy.deepcopy(rep)
    del bad["seed"]
    with pytest.raises(ClipscopeError, match="seed"):
        validate_report(bad)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    from clipscope.cli.main import main

    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_demo_writes_report_and_matches_the_baseline(demo_dir, run_cli):
    """Acceptance (issue 8): the demo runs offline and the project gates itself with compare."""
    page = (demo_dir / "report.html").read_text()
    import re

    for cmd in ("gap", "uniformity", "invert", "blindpairs", "robustness"):
        assert re.search(rf"<section id='run-\d+-{cmd}", page), cmd
    assert "data:image/png;base64," in page
    visible = re.sub(r"data:image/png;base64,[^'\"]+", "", page)
    assert not re.search(r">[^<]*\bNone\b", visible), "a missing value shows as None"
    assert "A = class:red circle" in visible and "B = class:blue circle" in visible  # direction names its groups
    code, out, err = run_cli("compare", REPO / "reports" / "baseline", demo_dir)
    assert code == 0, out + err
    assert "no regression" in out


@pytest.mark.slow
def test_every_command_report_validates(demo_dir, tmp_path, run_cli, mtg):
    """Acceptance (issue 7): the schema test covers every command that writes a report."""
    from clipscope.report import load_report

    found = {p.stem: p for p in demo_dir.rglob("*.json")}
    for name in ("features_convirt.npy", "features_convirt_random.npy"):
        run_cli("import", "--pair-array", mtg / name, "--out", tmp_path / f"{name}.h5")
    assert run_cli("drift", tmp_path / "features_convirt.npy.h5", tmp_path / "features_convirt_random.npy.h5",
                   "--out", tmp_path / "drift", "--no-plots")[0] == 0
    found["drift"] = tmp_path / "drift" / "drift.json"
    from clipscope.cli.main import command_names

    reporting = {"gap", "uniformity", "invert", "blindpairs", "robustness", "drift"}
    assert reporting <= set(command_names())
    for cmd in reporting:
        rep = load_report(found[cmd])
        validate_report(rep)
        assert rep["command"] == cmd
        for name, metric in rep["metrics"].items():  # every number names its source
            assert metric["source"] and f"(source: {metric['source']})" in metric["description"], (cmd, name)
        for art in rep["artifacts"].values():
            assert (found[cmd].parent / art).is_file()


@pytest.mark.slow
def test_demo_cache_matches_cache_schema(demo_dir):
    import jsonschema

    from clipscope.cache import layout
    from clipscope.report import schema as packaged

    schema = packaged("cache")
    for kind in ("report", "cache"):  # reports/schema/ is generated from the packaged schemas
        assert json.loads((REPO / "reports" / "schema" / f"{kind}.schema.json").read_text()) == packaged(kind)
    doc = layout(demo_dir / "cache.h5")
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(doc)
    assert doc["attrs"]["pretrained"] == "bundled"
    assert doc["datasets"]["image/oti_embeddings"]["shape"] == [256, 64]


def test_report_over_two_runs_of_one_command_has_two_sections(run_cli, tmp_path, mtg):
    import re

    code, _, err = run_cli("import", "--pair-array", mtg / "features_clasp.npy", "--out", tmp_path / "c.h5")
    assert code == 0, err
    for name in ("a", "b"):
        code, _, err = run_cli("gap", tmp_path / "c.h5", "--out", tmp_path / "runs" / name, "-q")
        assert code == 0, err
    code, _, err = run_cli("report", tmp_path / "runs", "--baseline", tmp_path / "runs", "-o", tmp_path / "r.html")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    ids = re.findall(r"<section id='([^']+)'", page)
    assert len(ids) == 2 and len(set(ids)) == 2
    assert "gap · a ·" in page and "gap · b ·" in page and "<section id=summary>" in page
    code, out, _ = run_cli("compare", tmp_path / "runs" / "a" / "gap.json", tmp_path / "runs" / "b" / "gap.json",
                           "--format", "html")
    assert code in (0, 3) and out.startswith("<!doctype html>") and "centroid_distance" in out


def test_models_and_cache_commands(run_cli, tmp_path, monkeypatch):
    import json

    code, out, _ = run_cli("models", "--filter", "ViT-B-32", "--json")
    rows = json.loads(out)
    assert code == 0 and any(r["model"] == "ViT-B-32" and r["pretrained"] == "openai" for r in rows)
    code, out, _ = run_cli("models", "--cached")
    assert code == 0 and "clipscope-tiny" in out
    code, _, err = run_cli("gap", "--model", "clipscope-tiny", "--data", "probes:8", "--json", tmp_path / "g.json", "-q")
    assert code == 0, err
    code, out, _ = run_cli("cache", "list", "--json")
    listed = json.loads(out)["caches"]
    assert code == 0 and len(listed) == 1 and listed[0]["model"] == "clipscope-tiny" and listed[0]["images"] == 8
    assert run_cli("cache", "clean")[0] == 2  # says what to remove
    code, out, _ = run_cli("cache", "clean", "--all")
    assert code == 0 and "removed 1" in out
    assert json.loads(run_cli("cache", "list", "--json")[1])["caches"] == []


@pytest.mark.slow
def test_embedding_atlas_renders_the_demo_rows(demo_dir, run_cli, tmp_path):
    """`clipscope explore` on the demo opens Embedding Atlas; loaded in headless Chromium, the page
    counts every row as a point. (Headless Chromium has no WebGPU, so the scatter canvas itself
    says so; the point count, table and charts render.)"""
    import shutil
    import socket
    import subprocess
    import sys
    import time

    pytest.importorskip("embedding_atlas", reason="the atlas extra is not installed (pip install "
                                                  "'clipscope-diagnostics[atlas]'; CI installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (CI installs it)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium executable (CI installs Debian's chromium)")
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "clipscope.cli.main", "explore", str(demo_dir / "cache.h5"),
                               "--runs", str(demo_dir), "--out", str(tmp_path / "atlas"), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(120):  # up to 60 s for the server to answer
            try:
                socket.create_connection(("localhost", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.5)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"http://localhost:{port}/", wait_until="networkidle", timeout=60000)
            page.wait_for_function("document.body.innerText.includes('512 / 512 points')", timeout=60000)
            text = page.inner_text("body")
            page.screenshot(path=str(tmp_path / "atlas.png"))
            browser.close()
        assert "512 / 512 points" in text and "probe-0-000000" in text and "paired_cosine" in text
        assert (tmp_path / "atlas" / "rows.parquet").is_file()
    finally:
        import os
        import signal

        os.killpg(server.pid, signal.SIGTERM)  # clipscope explore and the Embedding Atlas server it started
        server.wait(timeout=30)


def test_grid_captions_wrap_inside_their_panels():
    """Long benchmark captions are wrapped at word boundaries and stay within their panel (#30)."""
    import numpy as np

    from clipscope.report.plots import image_grid_figure

    caps = ["sugarcrepe: swap_att\ntrue: A white dog with a red collar sitting next to a small black cat on a "
            "wooden porch in the afternoon sun\nchose: A red dog with a white collar",
            "Are the butterfly's wings closer to being open or closed? (a) Open (b) Closed\nP(img1)=0.51 wrong",
            "short", "x" * 10]
    fig = image_grid_figure([np.zeros((32, 32, 3), np.uint8)] * 4, caps, title="t", ncols=4)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        text = ax.title
        if not text.get_text():
            continue
        box, panel = text.get_window_extent(renderer), ax.get_window_extent(renderer)
        slack = 0.1 * panel.width  # the title may reach a little into the gap between panels
        assert box.x0 >= panel.x0 - slack and box.x1 <= panel.x1 + slack, text.get_text()
    assert "wooden porch" in fig.axes[0].title.get_text()  # wrapped, not cut mid-word
    import matplotlib.pyplot as plt

    plt.close(fig)
