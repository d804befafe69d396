"""`export` and `explore`: the rows behind the numbers, as parquet, in Embedding Atlas or in
TensorBoard's projector."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

RUNS_HELP = "A folder of run reports (e.g. a demo's output): their per-row results become columns."


def _table(cache, runs, projection, seed):
    from clipscope.api import open_cache
    from clipscope.export import rows_table

    with open_cache(cache) as c:
        return rows_table(c, runs=runs, projection=projection, seed=seed)


def _run_reports(runs) -> list[Path]:
    return list(Path(runs).rglob("*.json")) if runs and Path(runs).is_dir() else []


@click.command("export")
@click.argument("cache", type=click.Path(dir_okay=False, exists=True))
@click.option("--runs", default=None, type=click.Path(file_okay=False), help=RUNS_HELP)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The parquet file to write.")
@click.option("--projection", default="pca", show_default=True, type=click.Choice(["pca", "umap"]),
              help="The 2-D projection of all rows (columns x, y).")
@click.option("--seed", default=0, show_default=True, help="Seed of the projection.")
def export_cmd(cache, runs, out, projection, seed):
    """One row per image and per text of a cache, with the per-row results of the runs in
    --runs, as a parquet file (pandas, DuckDB and Embedding Atlas read it as it is).

    \b
    Example:
      clipscope export demo-out/cache.h5 --runs demo-out --out rows.parquet
    """
    from clipscope.export import write_parquet
    from clipscope.fileio import check_writable, guard_outputs

    check_writable(out, folder=False)
    guard_outputs([("--out", out)], inputs=[Path(cache), *_run_reports(runs)])
    table = _table(cache, runs, projection, seed)
    write_parquet(table, out)
    click.echo(f"export: {out}: {table.num_rows} rows ({', '.join(table.column_names[:6])}, ...)")
    _say_empty(table)


def _say_empty(table) -> None:
    """One line on stderr naming the columns no run filled for these rows, grouped by why."""
    import json

    empty = json.loads(table.schema.metadata[b"clipscope"]).get("empty_columns") or {}
    why: dict[str, list[str]] = {}
    for column, reason in empty.items():
        why.setdefault(reason, []).append(column)
    if why:
        click.echo(f"export: {len(empty)} column(s) are empty: "
                   + "; ".join(f"{', '.join(cols)} ({reason})" for reason, cols in why.items()), err=True)


@click.command("explore")
@click.argument("cache", type=click.Path(dir_okay=False, exists=True))
@click.option("--runs", default=None, type=click.Path(file_okay=False), help=RUNS_HELP)
@click.option("--format", "fmt", default="atlas", show_default=True, type=click.Choice(["atlas", "tensorboard"]),
              help="atlas: open the rows in Embedding Atlas (pip install 'clipscope-diagnostics[atlas]'); "
                   "tensorboard: write a projector log to --out.")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Folder for the files (default: a temporary folder for atlas; required for tensorboard).")
@click.option("--projection", default="pca", show_default=True, type=click.Choice(["pca", "umap"]),
              help="The 2-D projection of all rows.")
@click.option("--host", default="localhost", show_default=True, help="atlas: the server's address.")
@click.option("--port", default=5055, show_default=True, type=click.IntRange(1, 65535), help="atlas: the server's port.")
@click.option("--seed", default=0, show_default=True, help="Seed of the projection.")
def explore_cmd(cache, runs, fmt, out, projection, host, port, seed):
    """Look at the rows: Embedding Atlas (search, lasso selection, the per-row results as
    filters) on the export of CACHE, or a TensorBoard projector log (embeddings, metadata and a
    sprite of thumbnails).

    \b
    Examples:
      clipscope explore demo-out/cache.h5 --runs demo-out
      clipscope explore demo-out/cache.h5 --format tensorboard --out tb/ && tensorboard --logdir tb/
    """
    from clipscope.errors import ClipscopeError, UsageError
    from clipscope.export import write_parquet, write_tensorboard
    from clipscope.fileio import check_writable, guard_outputs

    if out is not None:
        check_writable(out, folder=True)
        guard_outputs([("--out", Path(out) / name) for name in ("rows.parquet", "tensors.tsv", "metadata.tsv")],
                      inputs=[Path(cache), *_run_reports(runs)])
    if fmt == "tensorboard":
        if out is None:
            raise UsageError("--format tensorboard writes a log folder: give --out DIR")
        from clipscope.api import open_cache
        from clipscope.data import open_source

        table, source = _table(cache, runs, projection, seed), None
        with open_cache(cache) as c:
            spec = c.attrs.get("data_spec")
        try:
            source = open_source(spec) if spec else None
        except ClipscopeError:
            click.echo(f"explore: the images of {spec} cannot be read here; the log has no sprite", err=True)
        write_tensorboard(table, out, source=source)
        click.echo(f"explore: TensorBoard projector log in {out}: run  tensorboard --logdir {out}")
        return
    atlas = shutil.which("embedding-atlas") or str(Path(sys.executable).with_name("embedding-atlas"))
    if not Path(atlas).exists():
        raise ClipscopeError("explore needs Embedding Atlas: pip install 'clipscope-diagnostics[atlas]' "
                             "(or use --format tensorboard)")
    table = _table(cache, runs, projection, seed)
    folder = Path(out) if out else Path(tempfile.mkdtemp(prefix="clipscope-explore-"))
    try:
        rows = write_parquet(table, folder / "rows.parquet")
        click.echo(f"explore: {table.num_rows} rows from {rows}; Embedding Atlas on http://{host}:{port} (Ctrl-C stops "
                   "it)", err=True)
        cmd = [atlas, str(rows), "--x", "x", "--y", "y", "--text", "text", "--host", host, "--port", str(port),
               "--no-auto-port"]
        code = _serve(cmd)
    finally:
        if out is None:
            shutil.rmtree(folder, ignore_errors=True)
    if code not in (0, -2, 130):
        raise ClipscopeError(f"Embedding Atlas exited with status {code}")


def _serve(cmd: list[str]) -> int:
    """Run the server until it exits or this process is stopped (Ctrl-C, SIGTERM, SIGHUP); it
    never outlives this process: it is stopped on the way out, and on Linux the kernel also sends
    it SIGTERM if this process is killed outright (PR_SET_PDEATHSIG)."""
    import signal

    def stop(signum, frame):
        raise SystemExit(128 + signum)  # unwinds through the finally blocks below

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    proc = subprocess.Popen(cmd, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent dies."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
