"""The ``clipscope`` command: a thin click layer over the library.

Exit codes: 0 ok, 1 error (one line ``Error: ...``; a traceback only with --debug),
2 usage, 3 regression found (compare / check).
"""

from __future__ import annotations

import sys

import click

from clipscope import __version__
from clipscope.errors import ClipscopeError, UsageError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REGRESSION = 3
INTERRUPTED = ("interrupted; nothing written is lost: rerun the same command to resume "
               "(extraction and inversion continue after their last saved batch)")

# The hand-written commands: name -> (module:attribute, one-line help). The report-writing
# commands (gap, uniformity, ...) come from their declarations (clipscope.registry) and are
# listed between "info" and "export".
OTHER_COMMANDS = {
    "extract": ("clipscope.cli.cache_cmds:extract_cmd", "Encode a data set into an HDF5 embedding cache (resumable)."),
    "import": ("clipscope.cli.cache_cmds:import_cmd", "Bring embeddings made elsewhere into a cache."),
    "info": ("clipscope.cli.cache_cmds:info_cmd", "Show what a cache holds: provenance and counts."),
    "export": ("clipscope.cli.export_cmds:export_cmd", "Rows of a cache with per-row results, to parquet."),
    "explore": ("clipscope.cli.export_cmds:explore_cmd", "Look at the rows in Embedding Atlas or TensorBoard's projector."),
    "report": ("clipscope.cli.report_cmds:report_cmd", "One self-contained HTML report of a run folder."),
    "compare": ("clipscope.cli.report_cmds:compare_cmd", "Compare two reports; exit 3 on a regression."),
    "check": ("clipscope.cli.report_cmds:check_cmd", "Run a declared suite and gate it; exit 3 on a regression."),
    "demo": ("clipscope.cli.demo_cmd:demo_cmd", "Offline end-to-end run on the bundled tiny model."),
    "models": ("clipscope.cli.discover_cmds:models_cmd", "Models and weights clipscope can load (and what is cached)."),
    "cache": ("clipscope.cli.discover_cmds:cache_group", "List, locate or clean the content-keyed embedding cache."),
}
_BEFORE_DECLARED = ("extract", "import", "info")


def command_names() -> list[str]:
    """Every command, in listing order."""
    from clipscope.registry import commands

    rest = [n for n in OTHER_COMMANDS if n not in _BEFORE_DECLARED]
    return [*_BEFORE_DECLARED, *commands(), *rest]


class LazyGroup(click.Group):
    """Imports a hand-written command's module only when it runs, so `--help` and simple commands
    start fast; builds a declared command from its declaration."""

    def list_commands(self, ctx):
        return command_names()

    def get_command(self, ctx, name):
        import importlib

        from clipscope.registry import commands

        if name in OTHER_COMMANDS:
            module, attr = OTHER_COMMANDS[name][0].split(":")
            return getattr(importlib.import_module(module), attr)
        if name in commands():
            from clipscope.cli.commands import click_command

            return click_command(commands()[name])
        return None

    def format_commands(self, ctx, formatter):
        from clipscope.registry import commands

        helps = {**{n: h for n, (_, h) in OTHER_COMMANDS.items()}, **{n: c.help for n, c in commands().items()}}
        with formatter.section("Commands"):
            formatter.write_dl([(name, helps[name]) for name in command_names()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="clipscope")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def cli(ctx, debug):
    """Diagnostics for CLIP-style joint image-text embedding spaces.

    \b
    Quick start (offline, bundled tiny model):
      clipscope demo --out demo-out
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv=None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rv = cli.main(args=argv, prog_name="clipscope", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        click.echo(f"Error: {INTERRUPTED}", err=True)
        return EXIT_ERROR
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except UsageError as e:  # raised by the library for options that do not go together
        if debug:
            raise
        click.echo(f"Error: {e}", err=True)
        return EXIT_USAGE
    except ClipscopeError as e:
        if debug:
            raise
        click.echo(f"Error: {e}", err=True)
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - last resort: one line, no traceback unless --debug
        if debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        click.echo(f"Error: unexpected {type(e).__name__}: {msg} (rerun with --debug for the traceback)", err=True)
        return EXIT_ERROR
    return rv if isinstance(rv, int) else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
