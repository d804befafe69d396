"""Click commands built from the registry's declarations (:mod:`clipscope.registry`): one per
report-writing command, with its shared and own options and the output options below."""

from __future__ import annotations

import click

from clipscope.registry import GROUPS, RUN, Command, Option

OUTPUT = (
    click.Option(["--out", "out"], default=None, type=click.Path(file_okay=False), metavar="DIR",
                 help="Folder for the JSON report and the plots."),
    click.Option(["--json", "json_out"], default=None, metavar="PATH|-", help="Also write the report here ('-' = stdout)."),
    click.Option(["--no-plots", "no_plots"], is_flag=True, help="Skip the PNGs."),
    click.Option(["--quiet", "-q", "quiet"], is_flag=True, help="No progress bars or summary."),
)


def click_option(opt: Option) -> click.Option:
    """The click option of a declared :class:`Option` (types, bounds and defaults as declared)."""
    kw = dict(default=opt.default, help=opt.help, metavar=opt.metavar, required=opt.required,
              show_default=opt.show_default and opt.default not in (None, (), False))
    bounds = dict(min=opt.min, max=opt.max, min_open=opt.min_open, max_open=opt.max_open)
    if opt.kind == "bool":
        if opt.secondary:
            return click.Option([f"{opt.cli_flag}/{opt.secondary}", opt.name], **kw)
        return click.Option([opt.cli_flag, opt.name], is_flag=True, default=opt.default, help=opt.help)
    if opt.kind == "int":
        kw["type"] = click.IntRange(**bounds) if opt.min is not None or opt.max is not None else int
    elif opt.kind == "float":
        kw["type"] = click.FloatRange(**bounds) if opt.min is not None or opt.max is not None else float
    elif opt.kind == "choice":
        kw["type"] = click.Choice(list(opt.choices))
    elif opt.kind == "path":
        kw["type"] = click.Path(dir_okay=False)
    elif opt.kind == "dir":
        kw["type"] = click.Path(file_okay=False)
    if opt.multiple:
        kw["multiple"] = True
    return click.Option([opt.cli_flag, opt.name], **kw)


def click_command(cmd: Command) -> click.Command:
    """The click command of a declared :class:`Command`."""
    params: list[click.Parameter] = []
    if cmd.inputs == "cache":
        params.append(click.Argument(["cache"], required=False, type=click.Path(dir_okay=False)))
    elif cmd.inputs == "two-caches":
        params += [click.Argument(["old_cache"], required=False, type=click.Path(dir_okay=False)),
                   click.Argument(["new_cache"], required=False, type=click.Path(dir_okay=False))]
    for group in cmd.groups:
        params += [click_option(o) for o in GROUPS[group]]
    params += [*OUTPUT, *(click_option(o) for o in RUN), *(click_option(o) for o in cmd.options)]

    def callback(**values):
        from clipscope.cli.options import run_and_write

        if cmd.inputs == "two-caches":
            old, new = values.pop("old_cache"), values.pop("new_cache")
            if bool(old) != bool(new):
                raise click.UsageError(f"give two caches (OLD NEW), or the models and --data (see clipscope {cmd.name} "
                                       "--help)")
            cache = [old, new] if old else None
        else:
            cache = values.pop("cache", None)
        run_and_write(cmd.name, cache, values)

    return click.Command(cmd.name, params=params, callback=callback, help=cmd.doc, short_help=cmd.help,
                         context_settings={"max_content_width": 100})


def shared_options(*groups: str):
    """A decorator adding the registry's shared option groups to a hand-written click command
    (extract): the same flags, types and help as every report-writing command."""
    def decorate(fn):
        # click collects a command's parameters from __click_params__, last decorator first
        fn.__click_params__ = getattr(fn, "__click_params__", [])
        fn.__click_params__ += [click_option(o) for g in reversed(groups) for o in reversed(GROUPS[g])]
        return fn

    return decorate
