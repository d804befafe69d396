"""A command's result as the library returns it: :class:`Report` (metrics with intervals, units
and sources, tables, notes, provenance and its figures, drawn when saved) and :class:`Metric`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Metric:
    """One reported number: value, 95% interval, direction, and what it is (with its source)."""

    value: float | None
    ci95: list[float] | None = None
    higher_is_better: bool | None = None
    description: str = ""
    source: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> Metric:
        known = {"value", "ci95", "higher_is_better", "description", "source"}
        return cls(d.get("value"), d.get("ci95"), d.get("higher_is_better"), d.get("description", ""), d.get("source"),
                   {k: v for k, v in d.items() if k not in known})


@dataclass
class Report:
    """A command's result: metrics, tables, notes, provenance and its figures (as small specs,
    drawn when the report is saved). ``to_dict()`` is the JSON report (schema-validated)."""

    command: str
    model: dict
    data: dict
    seed: int
    config: dict
    metrics: dict
    tables: dict
    notes: list
    figures: list = field(default_factory=list, repr=False)  # (plot function, args, kwargs) specs
    figure_files: dict = field(default_factory=dict)  # figure name -> PNG file name
    summary_keys: tuple = ()
    _dict: dict | None = field(default=None, repr=False)

    def to_dict(self, *, with_figures: bool = True) -> dict:
        """The JSON report (as written to ``<command>.json``), validated against the schema."""
        if self._dict is None:
            from clipscope.report import build_report, validate_report

            self._dict = build_report(self.command, model=self.model, data=self.data, seed=self.seed, config=self.config,
                                      metrics={k: _metric_dict(m) for k, m in self.metrics.items()},
                                      tables=self.tables, artifacts=dict(self.figure_files), notes=self.notes)
            validate_report(self._dict)
            unsourced = [k for k, m in self._dict["metrics"].items() if "source" not in m]
            if unsourced:  # a programming error: every number says where it comes from
                raise RuntimeError(f"metrics without a registered source: {', '.join(unsourced)} "
                                   "(clipscope/metric_specs.py)")
        if with_figures:
            return self._dict
        return {**self._dict, "artifacts": {}}

    def to_json(self, *, with_figures: bool = True) -> str:
        from clipscope.report import dumps

        return dumps(self.to_dict(with_figures=with_figures))

    def save(self, out_dir, *, plots: bool = True, progress: bool = False) -> Path:
        """Write ``<command>.json`` (atomically) and, with ``plots``, the PNGs into ``out_dir``
        (a progress bar on stderr with ``progress``). Returns the JSON's path."""
        from clipscope.fileio import atomic_write_text
        from clipscope.report import plots as plotting

        out_dir = Path(out_dir)
        if plots and self.figures:
            plotting.draw(self.figures, out_dir, progress=progress)
        path = out_dir / f"{self.command}.json"
        atomic_write_text(path, self.to_json(with_figures=plots))
        from clipscope.registry import commands

        declared = commands().get(self.command)
        if declared is not None and declared.artifacts is not None:  # e.g. direction's .npy vectors
            declared.artifacts(self, out_dir)
        return path

    def summary(self, out=None) -> str:
        """A few lines for a console: the headline metrics, notes and where the report went."""
        r = self.to_dict()
        lines = [f"{self.command}: {r['model']['name']} (pretrained: {r['model']['pretrained']}) on {r['data'].get('spec')}"]
        for k, v in r["metrics"].items():  # every metric, the headline ones first
            if v["value"] is None:
                lines.append(f"  {k:<32} n/a (see the notes)")
                continue
            ci = f"  [{v['ci95'][0]:.4f}, {v['ci95'][1]:.4f}]" if v["ci95"] else ""
            unit = {"%": " %", "degrees": " deg", "nats": " nats"}.get(v.get("unit") or "", "")
            value = f"{int(v['value'])}" if v.get("unit") == "count" else f"{v['value']:.4f}"
            lines.append(f"  {k:<32} {value}{unit}{ci}")
        lines += [f"  note: {n}" for n in r.get("notes", [])]
        if out is not None:
            lines.append(f"  report: {Path(out) / (self.command + '.json')}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The report's HTML card (metrics, provenance, notes, tables), for Jupyter."""
        from clipscope.report.html import CSS, section

        css = CSS.replace("body{", ".clipscope{")  # scoped: the notebook page keeps its own styles
        return f"<div class=clipscope><style>{css}</style>{section(self.to_dict(with_figures=False), None, None)}</div>"


def _metric_dict(m) -> dict:
    if isinstance(m, Metric):
        return {"value": m.value, "ci95": m.ci95, "higher_is_better": m.higher_is_better,
                "description": m.description, **({"source": m.source} if m.source else {}), **m.extra}
    return m
