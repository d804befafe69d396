"""Reports: the one JSON schema, the writer, plots, HTML and comparison."""

from __future__ import annotations

import json
import math
import os
from functools import cache
from pathlib import Path

import numpy as np

from clipscope.errors import ClipscopeError
from clipscope.fileio import atomic_write_text  # noqa: F401  (re-exported: the writers' one helper)

SCHEMA_VERSION = 1


@cache
def schema(name: str = "report") -> dict:
    """A JSON schema shipped inside the package (``report`` or ``cache``), read with
    importlib.resources so it works from a wheel; reports/schema/ holds a generated copy."""
    from importlib.resources import files

    doc = json.loads(files("clipscope.report").joinpath("schemas", f"{name}.schema.json").read_text(encoding="utf-8"))
    if name == "report":  # the commands a report may come from: the declared ones (clipscope.registry)
        from clipscope.registry import commands

        doc["properties"]["command"]["enum"] = ["extract", *commands()]
    return doc


def report_schema() -> dict:
    return schema("report")


def _clean(obj):
    """JSON-safe: numpy scalars and arrays to Python, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def model_block(provenance: dict) -> dict:
    p = dict(provenance or {})
    name = p.pop("model", None) or p.pop("name", None) or "unknown"
    pre = p.pop("pretrained", None)
    return {"name": str(name), "pretrained": "none" if pre in (None, "none", "") else str(pre), **p}


def build_report(command: str, *, model: dict, data: dict, seed: int, config: dict, metrics: dict,
                 tables: dict | None = None, artifacts: dict | None = None, notes: list[str] | None = None) -> dict:
    from clipscope import __version__
    from clipscope.runtime import utc_now

    metrics = {name: with_spec(name, m) for name, m in metrics.items()}
    report = {
        "schema_version": SCHEMA_VERSION,
        "clipscope_version": __version__,
        "command": command,
        "created_utc": utc_now(),
        "model": model,
        "data": data,
        "seed": int(seed),
        "config": config,
        "metrics": metrics,
        "tables": tables or {},
        "artifacts": artifacts or {},
    }
    if notes:
        report["notes"] = list(notes)
    return _clean(report)


def with_spec(name: str, m: dict) -> dict:
    """The metric joined to its spec (:mod:`clipscope.metric_specs`): what it measures (with the
    run's ``detail``) and its source in the description, its direction, unit and source. A metric
    with no spec is left as it is (writing such a report is refused)."""
    from clipscope.metric_specs import describe, spec_of

    spec = spec_of(name)
    if spec is None or ("source" in m and "detail" not in m):  # no spec, or joined already
        return m
    out = {k: v for k, v in m.items() if k != "detail"}
    text, direction = describe(name, m.get("detail"))
    out.update(description=f"{text} (source: {spec.source})", higher_is_better=direction, source=spec.source,
               unit=spec.unit)
    return out


def validate_report(report: dict, where: str = "report") -> None:
    """Raise ClipscopeError naming the first schema violation (``where``: the file, for messages)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(report_schema(), format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        at = "/".join(str(p) for p in e.path) or "(root)"
        raise ClipscopeError(f"{where} does not match report schema v{SCHEMA_VERSION} at {at}: {e.message}")


def dumps(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=False, allow_nan=False) + "\n"


def load_report(path: str | os.PathLike, *, validate: bool = False) -> dict:
    """Read a report; ``validate`` checks it against the schema (one-line error naming the file)."""
    p = Path(path)
    try:
        report = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClipscopeError(f"no report at {p}") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ClipscopeError(f"{p} is not a JSON report ({e}); pass a <command>.json written by clipscope") from None
    if not isinstance(report, dict) or "schema_version" not in report:
        raise ClipscopeError(f"{p} is not a clipscope report (no schema_version)")
    version = report["schema_version"]
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        raise ClipscopeError(f"{p} uses report schema {version!r}; this clipscope reads {SCHEMA_VERSION}"
                             + ("; it was made by a newer clipscope: upgrade clipscope" if newer else ""))
    if validate:
        validate_report(report, str(p))
    return report


def reports_under(folder: str | os.PathLike, *, validate: bool = False) -> list[tuple[dict, Path]]:
    """Every clipscope report (a JSON with schema_version and command) below a folder, sorted
    by path; other JSON files are ignored, a report of another schema version is an error."""
    out = []
    for p in sorted(Path(folder).rglob("*.json")):
        try:
            head = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(head, dict) and "schema_version" in head and "command" in head:
            out.append((load_report(p, validate=validate), p))
    return out
