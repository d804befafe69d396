"""The registry of commands (clipscope/registry.py) is the one declaration everything reads:
a conformance walk over it, the library surface, and the package's import layering."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

import click
import numpy as np
import pytest
from conftest import REPO

import clipscope
from clipscope.registry import GROUPS, RUN, commands


def test_every_command_is_declared_once_and_everything_derives_from_it():
    from clipscope.cli.commands import OUTPUT
    from clipscope.cli.main import cli, command_names
    from clipscope.report import schema
    from clipscope.suite import suite_commands

    declared = commands()
    assert list(declared) == ["gap", "uniformity", "invert", "blindpairs", "robustness", "drift", "compose", "direction"]
    enum = schema("report")["properties"]["command"]["enum"]
    assert set(enum) == set(declared) | {"extract"}, "the report schema's commands"
    assert set(suite_commands()) == set(declared), "check suites take every command that writes a report"
    names = command_names()
    ctx = click.Context(cli)
    for name, cmd in declared.items():
        assert name in names and cmd.help and "Example" in cmd.doc and cmd.outputs and cmd.summary
        page = (REPO / "commands" / f"{name}.md").read_text()
        assert cmd.outputs in page, f"commands/{name}.md is stale (python tools/gen_command_docs.py)"
        if cmd.docs:
            assert cmd.docs.strip().splitlines()[0] in page
        # the CLI's options are the declaration's: its groups', the run's, its own, and the output options
        built = cli.get_command(ctx, name)
        flags = {p.name for p in built.params if isinstance(p, click.Option)}
        want = {o.name for g in cmd.groups for o in GROUPS[g]} | {o.name for o in (*RUN, *cmd.options)}
        want |= {o.name for o in OUTPUT}
        assert flags == want, name
        for opt in cmd.options:
            assert f"`{opt.cli_flag}`" in page, (name, opt.cli_flag)


def test_every_default_is_written_once():
    """A declared option's default lives in its Option: the run functions take every option
    without one (no second copy to drift), and the click option shows the declared one."""
    from clipscope.cli.commands import click_option

    for name, cmd in commands().items():
        params = inspect.signature(cmd.run).parameters
        for opt in cmd.options:
            assert opt.name in params, (name, opt.name)
            assert params[opt.name].default is inspect.Parameter.empty, f"{name}.run repeats the default of {opt.name}"
            if opt.kind != "bool" and not opt.multiple:
                assert click_option(opt).default == opt.default, (name, opt.name)


def test_the_library_validates_options_against_their_declarations():
    from clipscope.errors import UsageError

    cache = clipscope.from_arrays(*_arrays())
    cases = [({"sweep_max_rows": 3}, "outside its range"), ({"projection": "tsne"}, "use one of pca, umap"),
             ({"noise_model": "yes"}, "not true or false"), ({"bootstrap": 10}, "takes no option bootstrap"),
             ({"weights": "x.pt", "model": None}, None)]
    for options, message in cases[:4]:
        with pytest.raises(UsageError, match=message):
            clipscope.run("gap", cache, plots=False, **options)
    with pytest.raises(UsageError, match="unknown command 'gapp'"):
        clipscope.run("gapp", cache)
    with pytest.raises(UsageError, match="drift takes no option weights"):  # drift's models are --old/--new-model
        clipscope.run("drift", [cache, cache], weights="x.pt")


def _arrays(n=60, d=12, seed=0):
    rng = np.random.default_rng(seed)
    I = rng.normal(size=(n, d)).astype(np.float32)
    return I, (I + rng.normal(size=(n, d))).astype(np.float32)


def test_one_in_memory_cache_serves_several_runs():
    cache = clipscope.from_arrays(*_arrays())
    gap = clipscope.run("gap", cache, plots=False)
    uni = clipscope.run("uniformity", cache, plots=False)
    drift = clipscope.run("drift", [cache, clipscope.from_arrays(*_arrays(seed=1))], plots=False)
    again = clipscope.run("gap", cache, plots=False)
    assert gap.metrics["centroid_distance"].value == again.metrics["centroid_distance"].value
    assert "uniformity_image" in uni.metrics and "cka_image" in drift.metrics
    assert cache.n_images == 60  # still open


def test_dir_lists_the_public_api():
    public = {n for n in dir(clipscope) if not n.startswith("_")}
    assert {"run", "check", "from_arrays", "open_cache", "Report", "Metric", "Cache", "demo", "ClipscopeError"} <= public
    assert callable(clipscope.check) and callable(clipscope.run)


def test_a_new_metric_is_its_function_and_its_spec(monkeypatch):
    """Registering a spec with compute= adds the metric to its command's report; an error in
    the function is an error of the run, not a silently missing number."""
    from clipscope import metric_specs
    from clipscope.metric_specs import MetricSpec

    def mean_image_norm(inputs):
        return float(np.linalg.norm(inputs["I"], axis=1).mean()), None

    spec = MetricSpec("mean_image_norm", "gap", metric_specs.CLIPSCOPE, compute=mean_image_norm, needs=("I",),
                      description="mean norm of the image rows (1 for normalised rows)", higher_is_better=None)
    monkeypatch.setattr(metric_specs, "SPECS", [*metric_specs.SPECS, spec])
    monkeypatch.setattr(metric_specs, "_COMPILED", [*metric_specs._COMPILED,
                                                    (__import__("re").compile(spec.pattern), spec)])
    r = clipscope.run("gap", clipscope.from_arrays(*_arrays()), plots=False)
    assert r.metrics["mean_image_norm"].value == pytest.approx(1.0, abs=1e-6)
    assert r.metrics["mean_image_norm"].source == metric_specs.CLIPSCOPE

    def broken(inputs):
        raise ValueError("a bug in the metric")

    monkeypatch.setattr(metric_specs, "SPECS", [*metric_specs.SPECS[:-1], MetricSpec("mean_image_norm", "gap", "x",
                                                                                      compute=broken)])
    with pytest.raises(ValueError, match="a bug in the metric"):
        clipscope.run("gap", clipscope.from_arrays(*_arrays()), plots=False)


LOWER = ("clipscope/analysis", "clipscope/tasks")
UPPER = ("clipscope.api", "clipscope.cli")


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_no_upward_imports_from_analysis_or_tasks():
    """analysis/ (pure functions) and tasks/ never reach up into the library front (api) or the CLI;
    analysis/ does not reach into tasks/ either."""
    for folder in LOWER:
        for path in sorted((REPO / folder).glob("*.py")):
            bad = [m for m in _imports(path) if m.startswith(UPPER) or m == "clipscope.api"]
            if folder.endswith("analysis"):
                bad += [m for m in _imports(path) if m.startswith("clipscope.tasks")]
            assert not bad, (path.name, bad)


def test_the_direction_pilot_lives_in_three_files():
    """Everything about `direction` is in its task module, its analysis module and its metric
    specs: no other package file names it."""
    mentions = []
    for path in sorted((REPO / "clipscope").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel in ("clipscope/tasks/direction.py", "clipscope/analysis/direction.py", "clipscope/metric_specs.py",
                   "clipscope/demo.py"):  # the demo uses every command; it declares none
            continue
        text = path.read_text()
        if '"direction"' in text or "'direction'" in text or "tasks.direction" in text:
            mentions.append(rel)
    assert mentions == [], mentions
    packaged = json.loads((REPO / "clipscope" / "report" / "schemas" / "report.schema.json").read_text())
    assert packaged["properties"]["command"]["enum"] == []  # filled from the registry when loaded


def test_a_metric_is_described_in_its_spec_alone():
    """What a metric measures and which way is better live in its spec; tasks and analyses give
    values, intervals and the run's details only."""
    import re

    for folder in ("clipscope/tasks", "clipscope/analysis"):
        for path in sorted((REPO / folder).glob("*.py")):
            text = path.read_text()
            assert not re.search(r"higher_is_better\s*=", text), path.name
            assert not re.search(r"\bmetric\([^)]*description=", text, re.S), path.name


def test_export_columns_come_from_the_declarations():
    """A command's per-row results are declared with it; export's schema is the cache's columns
    plus those, each name once, each filled by its command's row_values."""
    from clipscope.export import BASE, schema
    from clipscope.registry import commands

    names = [c[0] for c in schema()]
    assert len(names) == len(set(names))
    declared = [(c[0], cmd.name) for cmd in commands().values() for c in cmd.row_columns]
    assert [(n, s) for n, _, _, s in schema()][len(BASE):] == declared
    for cmd in commands().values():
        assert bool(cmd.row_columns) == (cmd.row_values is not None), cmd.name
