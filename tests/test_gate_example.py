"""The shipped release gate works as shipped: examples/release-suite.toml passes against
reports/baseline with the unchanged model, and examples/github-workflow.yml's steps (as far as
they run offline) leave a summary to post on every exit path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow  # real processes: the whole suite runs (~30 s)
BIN = Path(sys.executable).parent


def _env(tmp_path) -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
            "CLIPSCOPE_CACHE_DIR": str(tmp_path / "content-cache")}


def test_the_example_suite_passes_against_the_shipped_baseline(tmp_path):
    p = subprocess.run([str(BIN / "clipscope"), "check", "examples/release-suite.toml", "--out", str(tmp_path / "runs"),
                        "--format", "markdown", "--summary", str(tmp_path / "summary.md")], cwd=REPO,
                       env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    summary = (tmp_path / "summary.md").read_text()
    assert "clipscope compare: no regression" in summary and "rule: both" in summary
    for run in ("gap", "uniformity", "blindpairs", "compose", "direction"):  # every command gated
        assert f"| {run}/{run} |" in summary, run
    assert "not run" in summary  # the baseline's noise-model metrics: not asked for, not missing
    assert "clipscope.run(" not in p.stderr and "check: gap (gap) done" in p.stderr


def _workflow_steps():
    import yaml

    flow = yaml.safe_load((REPO / "examples" / "github-workflow.yml").read_text())
    steps = {s.get("name"): s for s in flow["jobs"]["gate"]["steps"]}
    assert "vars." not in (REPO / "examples" / "github-workflow.yml").read_text(), "nothing unexplained"
    assert flow["env"]["CLIPSCOPE"].startswith("clipscope-diagnostics @ ")
    return steps


@pytest.mark.parametrize("case", ["passes", "error"])
def test_the_workflow_leaves_a_summary_on_every_exit_path(tmp_path, case):
    steps = _workflow_steps()
    suite = (REPO / "examples" / "release-suite.toml").read_text()
    baseline = REPO / "reports" / "baseline" if case == "passes" else tmp_path / "no-such-baseline"
    (tmp_path / "suite.toml").write_text(suite.replace('"reports/baseline"', f'"{baseline}"'))
    out = tmp_path / "github-output"
    env = {**_env(tmp_path), "GITHUB_OUTPUT": str(out)}
    run = steps["Run the suite"]["run"]
    p = subprocess.run(["bash", "-e", "-c", run], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr  # the step itself records the code and goes on
    code = dict(line.split("=", 1) for line in out.read_text().split())["code"]
    posted = tmp_path / steps["Post the summary"]["with"]["path"]
    assert steps["Post the summary"]["if"] == "always()" and posted.exists()
    if case == "passes":
        assert code == "0" and "no regression" in posted.read_text()
    else:
        assert code == "1" and "error" in posted.read_text() and "no-such-baseline" in posted.read_text()
        assert steps["Fail on a regression or an error"]["if"] == "steps.check.outputs.code != '0'"
