"""The registry of report-writing commands: one declaration each, everything else derived.

Each task module (``clipscope/tasks/<name>.py``) declares one :class:`Command`: its name, help,
inputs, its :class:`Option` s (type, default, bounds, help: written once), how to run it, its
outputs and its per-row columns. From these declarations come the click commands
(:mod:`clipscope.cli.commands`), :func:`clipscope.run`'s validation, the ``commands/*.md`` pages
(tools/gen_command_docs.py), ``check`` suites, the HTML report's order and ``export``'s columns;
tests/test_registry.py checks the report schema's command list and the docs against them.

Adding a command: its task module (the declaration and ``run``), its analysis functions, its
metric specs (:mod:`clipscope.metric_specs`). Adding an option: one :class:`Option` in its
command's declaration.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clipscope.errors import UsageError

_UNSET = object()


@dataclass(frozen=True)
class Option:
    """One option of a command: the Python name (``noise_model``) and, derived from it, the CLI
    flag (``--noise-model``); its type, default, bounds and help."""

    name: str
    kind: str = "str"  # str, int, float, bool (a flag), choice, path (a file the run reads), dir
    default: Any = None
    help: str = ""
    choices: tuple = ()
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    multiple: bool = False  # repeatable on the CLI; a list in the library
    metavar: str | None = None
    flag: str | None = None  # the CLI flag when it is not --<name with dashes>
    secondary: str | None = None  # a bool's --no-... form (then it is not a plain flag)
    required: bool = False
    show_default: bool = True

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, value, command: str):
        """``value`` when it fits the declaration (numbers coerced), else a one-line usage error."""
        what = f"{command} {self.cli_flag}"
        if value is None:
            if self.required:
                raise UsageError(f"{what} is required")
            return None
        if self.multiple:
            values = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else list(value)
            return [self._one(v, what) for v in values]
        return self._one(value, what)

    def _one(self, v, what: str):
        if self.kind == "bool":
            if not isinstance(v, bool):
                raise UsageError(f"{what}: {v!r} is not true or false")
            return v
        if self.kind in ("int", "float"):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (self.kind == "int" and not float(v).is_integer()):
                raise UsageError(f"{what}: {v!r} is not {'an integer' if self.kind == 'int' else 'a number'}")
            v = int(v) if self.kind == "int" else float(v)
            if not math.isfinite(v):
                raise UsageError(f"{what}: {v!r} is not a finite number")
            lo_bad = self.min is not None and (v <= self.min if self.min_open else v < self.min)
            hi_bad = self.max is not None and (v >= self.max if self.max_open else v > self.max)
            if lo_bad or hi_bad:
                raise UsageError(f"{what}: {v} is outside its range {self.range_text()}")
            return v
        if self.kind == "choice":
            if v not in self.choices:
                raise UsageError(f"{what}: {v!r}; use one of {', '.join(map(str, self.choices))}")
            return v
        if not isinstance(v, (str, bytes)) and not hasattr(v, "__fspath__"):
            if self.kind == "str" and hasattr(v, "__len__"):  # e.g. deltas as a list, prompt sets as dicts
                return v
            raise UsageError(f"{what}: {v!r} is not text")
        return v

    def range_text(self) -> str:
        lo = "" if self.min is None else f"{'>' if self.min_open else '>='} {self.min:g}"
        hi = "" if self.max is None else f"{'<' if self.max_open else '<='} {self.max:g}"
        return " and ".join(x for x in (lo, hi) if x)


@dataclass(frozen=True)
class Command:
    """A command that writes a report (see the module docstring)."""

    name: str
    help: str  # one line, for `clipscope --help`
    doc: str  # the command's --help text, examples included
    run: Callable  # run(ctx, cache, **options) -> Report
    options: tuple[Option, ...] = ()
    inputs: str = "cache"  # cache (a CACHE argument, or --model/--data), two-caches (drift), model (no cache)
    groups: tuple[str, ...] = ("model", "encoding", "data")  # the shared option groups it takes
    outputs: str = ""  # the docs page's Outputs section
    docs: str = ""  # more of the docs page (published numbers, schemas, how to reproduce)
    order: int = 50  # place in listings and in the HTML report
    summary: tuple[str, ...] = ()  # headline metrics, in order
    title_config: tuple[tuple[str, str], ...] = ()  # (config key, its label): settings that tell runs apart
    suite_data: bool = True  # a suite's data spec is its input (compose: benchmark files are)
    model_with_cache: bool = False  # runs the model on a given cache too (invert optimises through it)
    artifacts: Callable | None = None  # artifacts(report, out_dir): files besides the JSON and PNGs
    row_columns: tuple = ()  # per-row columns for export: (name, arrow type name, meaning)
    row_values: Callable | None = None  # row_values(report or None, cache, rows) -> {column: (image values, text values)}

    @property
    def own(self) -> dict[str, Option]:
        return {o.name: o for o in self.options}

    def accepted(self) -> dict[str, Option]:
        """Every option it takes: its groups' and its own."""
        out = {}
        for g in self.groups:
            out.update({o.name: o for o in GROUPS[g]})
        out.update(self.own)
        return out


MODEL = (
    Option("model", metavar="NAME", show_default=False,
           help="open_clip name (ViT-B-32), hf-hub:org/repo, local-dir:PATH, transformers:ORG/NAME|PATH, or "
                "clipscope-tiny (bundled)."),
    Option("pretrained", metavar="TAG|PATH|none", show_default=False,
           help="open_clip tag, local checkpoint file, or 'none' (random init); for transformers: the hub revision. "
                "Default: the model's first tag."),
    Option("weights", kind="path", metavar="PATH", show_default=False,
           help="Local checkpoint of the tag named by --pretrained (keeps its QuickGELU/mean/std/resize)."),
)
ENCODING = (
    Option("device", default="auto", help="auto, cpu, cuda, cuda:N or mps."),
    Option("precision", kind="choice", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
           help="auto: fp32 on CPU, autocast on GPU."),
    Option("batch_size", kind="int", default=64, min=1, help="Items per batch."),
    Option("workers", kind="int", min=0, show_default=False, help="DataLoader workers (default: 0 on CPU, up to 8 on GPU)."),
    Option("decode", kind="choice", default="auto", choices=("auto", "gpu", "cpu", "tensor"),
           help="Image input path: gpu decodes JPEG batches on the GPU and preprocesses there; cpu uses PIL in the "
                "workers; auto is gpu when the model is on CUDA; tensor is the GPU path on any device (torchvision's "
                "CPU decoder on a CPU)."),
)
DATA = (
    Option("data", metavar="SPEC", show_default=False,
           help="folder:DIR, images:DIR, captions:FILE, coco:ANN.json[:DIR], wds:PATTERN or probes[:N[:SEED]]."),
    Option("verify", kind="bool", default=False,
           help="Key the cache on each input file's SHA-256 (default: size, mtime, ctime and inode)."),
    Option("classnames", kind="path", metavar="FILE", show_default=False,
           help="Class names of folder: data (JSON folder->name, or 'folder name' lines). Default: ImageNet's names "
                "when the folders are WordNet ids, else the folder names."),
)
# Every report-writing command takes these; the CLI adds its own output options (cli.commands).
RUN = (Option("seed", kind="int", default=0, help="Seed for every random choice."),)
GROUPS = {"model": MODEL, "encoding": ENCODING, "data": DATA, "run": RUN}


_REGISTRY: dict[str, Command] | None = None


def commands() -> dict[str, Command]:
    """Every declared command, in listing order (task modules are discovered, not listed)."""
    global _REGISTRY
    if _REGISTRY is None:
        import clipscope.tasks as tasks

        found = []
        for info in pkgutil.iter_modules(tasks.__path__):
            module = importlib.import_module(f"clipscope.tasks.{info.name}")
            if isinstance(getattr(module, "COMMAND", None), Command):
                found.append(module.COMMAND)
        _REGISTRY = {c.name: c for c in sorted(found, key=lambda c: (c.order, c.name))}
    return _REGISTRY


def command(name: str) -> Command:
    found = commands()
    if name not in found:
        raise UsageError(f"unknown command {name!r}; use {', '.join(found)}")
    return found[name]


def resolve(cmd: Command, given: dict) -> dict:
    """Every option of ``cmd``: the given values checked against their declarations, the rest
    at their declared defaults. Unknown names are a usage error naming the command's options."""
    accepted = {**cmd.accepted(), **{o.name: o for o in RUN}}
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise UsageError(f"{cmd.name} takes no option {', '.join(unknown)} (its options: {', '.join(accepted)})")
    out = {}
    for name, opt in accepted.items():
        value = given.get(name, _UNSET)
        out[name] = opt.default if value is _UNSET else opt.check(value, cmd.name)
        if value is _UNSET and opt.required:
            raise UsageError(f"{cmd.name} needs {opt.cli_flag}")
    return out
