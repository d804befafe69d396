"""Fault injection: kill -9 at every commit point, two writers at once, a full file system,
and a corpus of malformed inputs and reports. Each case asserts the exit code, a one-line
error, and that no cache or report ends up holding wrong data.

Kills use the test hook ``CLIPSCOPE_FAULT=<point>:<n>`` (``clipscope.fileio.fault_point``): the
process sends itself SIGKILL the n-th time it reaches the named point, exactly as ``kill -9``
would, so the test does not race the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # real processes, kills and file systems: CI runs them, `make test-fast` does not
TINY = ["--model", "clipscope-tiny", "--pretrained", "none"]


def cli(*args, env=None, cwd=None, timeout=300):
    """Run clipscope in a real process: (exit code, stdout, stderr)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), **(env or {})}
    p = subprocess.run([sys.executable, "-m", "clipscope.cli.main", *map(str, args)], capture_output=True, text=True,
                       env=full_env, cwd=cwd, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip() and "\r" not in line]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def datasets(path: Path) -> dict:
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if hasattr(obj, "shape") else None)
    return out


def assert_same_cache(a: Path, b: Path) -> None:
    da, db = datasets(a), datasets(b)
    assert sorted(da) == sorted(db)
    for k in da:
        assert np.array_equal(da[k], db[k]), k


def reference_extract(path: Path, spec: str, batch_size: int = 64) -> Path:
    """The uninterrupted run, in this process (only the runs that are killed need their own)."""
    from clipscope.data import open_source
    from clipscope.extract import extract
    from clipscope.models import load_encoder

    extract(open_source(spec), load_encoder("clipscope-tiny", "none"), path, batch_size=batch_size, progress=False)
    return path


def in_process(*args) -> None:
    from clipscope.cli.main import main

    assert main([str(a) for a in args]) == 0


# --------------------------------------------------------------------------- kill -9 at commit points

# rows appended but not committed; just committed (image phase); just committed (text phase); renamed not yet
EXTRACT_KILLS = [("journal-appended", 1), ("journal-committed", 2), ("journal-committed", 3), ("before-replace.h5", 1)]


def test_extract_survives_kill_at_every_commit_point(tmp_path):
    """probes:24 in batches of 8: 3 image and 3 text commits. Each run is killed at the next
    kind of point (rows appended but not committed, just committed, cache written but not yet
    renamed); the final run completes and equals an uninterrupted extraction bit for bit."""
    out = tmp_path / "c.h5"
    args = ["extract", *TINY, "--data", "probes:24", "--batch-size", "8", "--out", out, "-q"]
    for point, n in EXTRACT_KILLS:
        code, _, err = cli(*args, env={"CLIPSCOPE_FAULT": f"{point}:{n}"})
        assert code == -signal.SIGKILL, (point, n, err)
        assert not out.exists(), "a cache appeared before the run finished"
    assert list(tmp_path.glob(".c.h5.*.tmp")), "the kill before the rename leaves its temporary file"
    in_process(*args)  # the resume
    assert not list(tmp_path.glob(".c.h5.*.tmp")), "a later success removes the killed run's temporary file"
    assert not (tmp_path / "c.h5.partial").exists()
    assert_same_cache(out, reference_extract(tmp_path / "ref.h5", "probes:24", batch_size=8))


def invert(cache, out):
    return ["invert", cache, *TINY, "--mode", "oti", "--steps", "3", "--inv-batch-size", "4", "--no-plots", "-q",
            "--out", out]


def test_invert_survives_kill_at_every_commit_point(tmp_path):
    """A kill between appending a batch and committing it, right after a commit, and before the
    cache is replaced: the rerun neither loses nor repeats a batch (12 rows stay 12 rows)."""
    for name in ("c.h5", "ref.h5"):
        reference_extract(tmp_path / name, "probes:12")
    for point, n in (("journal-appended", 2), ("journal-committed", 1), ("before-replace.h5", 1)):
        code, _, err = cli(*invert(tmp_path / "c.h5", tmp_path / "run"), env={"CLIPSCOPE_FAULT": f"{point}:{n}"})
        assert code == -signal.SIGKILL, (point, err)
    in_process(*invert(tmp_path / "c.h5", tmp_path / "run"))
    in_process(*invert(tmp_path / "ref.h5", tmp_path / "ref-run"))
    got, ref = datasets(tmp_path / "c.h5"), datasets(tmp_path / "ref.h5")
    assert got["image/oti_cosine"].shape == (12, 2)
    for k in ("image/oti_embeddings", "image/oti_cosine", "image/oti_curve"):
        assert np.array_equal(got[k], ref[k]), k
    assert not list(tmp_path.glob(".c.h5.*.tmp")) and not (tmp_path / "c.h5.oti.partial").exists()


def test_inversion_never_resumes_across_different_data(tmp_path):
    """invert killed mid-run, the cache re-extracted from other data with --overwrite, invert
    rerun: every row is the new data's inversion (the old partial state is gone)."""
    c = reference_extract(tmp_path / "c.h5", "probes:12")
    code, _, _ = cli(*invert(c, tmp_path / "run"), env={"CLIPSCOPE_FAULT": "journal-committed:2"})
    assert code == -signal.SIGKILL and (tmp_path / "c.h5.oti.partial").exists()
    in_process("extract", *TINY, "--data", "probes:12:5", "--out", c, "--overwrite", "-q")
    assert not (tmp_path / "c.h5.oti.partial").exists(), "--overwrite removes the inversion's partial state"
    in_process(*invert(c, tmp_path / "run"))
    fresh = reference_extract(tmp_path / "fresh.h5", "probes:12:5")
    in_process(*invert(fresh, tmp_path / "fresh-run"))
    assert np.array_equal(datasets(c)["image/oti_embeddings"], datasets(fresh)["image/oti_embeddings"])


def test_partial_inversion_of_other_content_is_discarded(tmp_path):
    """The journal is keyed by the cache's content: a partial state whose manifest names other
    target rows (e.g. a cache replaced by hand) is thrown away, not resumed."""
    from clipscope import Cache
    from clipscope.analysis.inversion import InversionConfig
    from clipscope.data import open_source
    from clipscope.extract import extract
    from clipscope.models import load_encoder
    from clipscope.tasks import invert

    enc = load_encoder("clipscope-tiny", "none")
    extract(open_source("probes:8"), enc, tmp_path / "a.h5", progress=False)
    extract(open_source("probes:8:3"), enc, tmp_path / "b.h5", progress=False)
    cfg = InversionConfig(steps=2, batch_size=4)
    with Cache.open(tmp_path / "a.h5") as a:
        feats_a = invert.run_inversion(a, enc, mode="oti", config=cfg, progress=False)[0]
    # Plant a's finished journal as b's partial state: b must not take a's rows.
    partial = tmp_path / "b.h5.oti.partial"
    partial.mkdir()
    manifest = {"config": {}, "n": 8, "mode": "oti", "cache": {}, "targets_sha256": "0" * 64}
    (partial / "manifest.json").write_text(json.dumps(manifest))
    np.asarray(feats_a, np.float32).tofile(partial / "rows.f32")
    (partial / "rows.json").write_text(json.dumps({"next_index": 8, "rows": 8, "failed": [], "done": False}))
    with Cache.open(tmp_path / "b.h5") as b:
        feats_b = invert.run_inversion(b, enc, mode="oti", config=cfg, progress=False)[0]
    assert not np.allclose(feats_a, feats_b)
    extract(open_source("probes:8:3"), enc, tmp_path / "b2.h5", progress=False)
    with Cache.open(tmp_path / "b2.h5") as b2:
        np.testing.assert_array_equal(feats_b, invert.run_inversion(b2, enc, mode="oti", config=cfg, progress=False)[0])


# --------------------------------------------------------------------------- two writers


def test_two_extract_processes_on_one_cache_take_turns(tmp_path):
    out = tmp_path / "c.h5"
    args = [sys.executable, "-m", "clipscope.cli.main", "extract", *TINY, "--data", "probes:96", "--batch-size", "8",
            "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (tmp_path / "c.h5.partial" / "image.json").exists():  # the first holds the lock and has committed
        assert time.time() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.02)
    first.send_signal(signal.SIGSTOP)  # hold it mid-extraction, lock taken, so the second surely meets it
    err2 = tmp_path / "second.err"
    with open(err2, "w") as fh:
        second = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=fh, text=True, env=env)
        while "waiting for another process" not in err2.read_text():
            assert time.time() < deadline and second.poll() is None, err2.read_text()
            time.sleep(0.05)
        first.send_signal(signal.SIGCONT)
        out2, _ = second.communicate(timeout=300)
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2.read_text()
    assert "already complete" in out2
    assert_same_cache(out, reference_extract(tmp_path / "ref.h5", "probes:96", batch_size=8))


def test_two_analyses_extracting_into_the_content_cache_at_once(tmp_path):
    """Two `gap` runs that extract the same model and data into the content-keyed cache at the
    same time: both succeed with identical numbers, and the shared cache is the right one."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "CLIPSCOPE_CACHE_DIR": str(tmp_path / "cc")}
    runs = [subprocess.Popen([sys.executable, "-m", "clipscope.cli.main", "gap", *TINY, "--data", "probes:64",
                              "--batch-size", "8", "--no-plots", "--json", str(tmp_path / f"{k}.json"),
                              "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for k in (1, 2)]
    for p in runs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    m1, m2 = (json.loads((tmp_path / f"{k}.json").read_text())["metrics"] for k in (1, 2))
    assert m1 == m2
    (cached,) = (tmp_path / "cc").glob("*.h5")
    ref = reference_extract(tmp_path / "ref.h5", "probes:64", batch_size=8)
    assert np.array_equal(datasets(cached)["image/embeddings"], datasets(ref)["image/embeddings"])


def test_a_second_writer_can_hold_no_lock_the_first_holds():
    """The lock itself: a second process cannot take it while the first holds it, and a clean
    release leaves no lock file beside the target."""
    import tempfile

    from clipscope.fileio import exclusive

    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / "c.h5"
        probe = ("import sys; from clipscope.fileio import LockBusy, exclusive\n"
                 "try:\n    with exclusive(sys.argv[1], wait=False):\n        print('got')\n"
                 "except LockBusy:\n    print('busy')\n")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with exclusive(target, quiet=True):
            with exclusive(target, quiet=True):  # the holder re-enters
                held = subprocess.run([sys.executable, "-c", probe, str(target)], capture_output=True, text=True,
                                      env=env)
        free = subprocess.run([sys.executable, "-c", probe, str(target)], capture_output=True, text=True, env=env)
        assert held.stdout.strip() == "busy" and free.stdout.strip() == "got", (held.stderr, free.stderr)
        assert os.listdir(d) == []


def test_a_waiter_on_a_removed_lock_file_takes_the_new_one(tmp_path):
    """Three processes: A holds, B waits on A's file, A releases (removing it) while C takes a
    new file at the same name; B must notice and wait for C, never hold at the same time."""
    script = ("import sys, time; from clipscope.fileio import exclusive\n"
              "with exclusive(sys.argv[1], quiet=True):\n"
              "    open(sys.argv[2], 'a').write(f'in {time.time()}\\n'); time.sleep(0.4)\n"
              "    open(sys.argv[2], 'a').write(f'out {time.time()}\\n')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "log"
    procs = []
    for _ in range(4):
        procs.append(subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "c.h5"), str(log)], env=env))
        time.sleep(0.05)
    for p in procs:
        assert p.wait(60) == 0
    events = [line.split()[0] for line in log.read_text().splitlines()]
    assert events == ["in", "out"] * 4  # never two holders at once
    assert not (tmp_path / "c.h5.lock").exists()


# --------------------------------------------------------------------------- the content key


def test_replaced_image_with_restored_mtime_changes_the_key(tmp_path):
    from conftest import save_image

    from clipscope.data import open_source

    root = tmp_path / "imgs"
    for i in range(3):
        save_image(root / "a" / f"{i}.jpg", seed=i)
    before = open_source(f"folder:{root}").fingerprint
    target = root / "a" / "1.jpg"
    st = target.stat()
    save_image(target, seed=99)  # other pixels...
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...with the old mtime restored
    assert open_source(f"folder:{root}").fingerprint != before
    verified = open_source(f"folder:{root}", verify=True)
    again = open_source(f"folder:{root}", verify=True)
    assert verified.fingerprint == again.fingerprint
    os.utime(target)  # metadata only: the content hash stays
    assert open_source(f"folder:{root}", verify=True).fingerprint == verified.fingerprint


# --------------------------------------------------------------------------- full file system


@pytest.fixture
def small_fs(tmp_path):
    """A 150 KiB tmpfs (root only; skipped with the reason elsewhere)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=150k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip() or 'not root'}): the full-disk test needs one")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_during_extract_keeps_the_journal(small_fs, tmp_path):
    out = small_fs / "c.h5"
    args = ["extract", *TINY, "--data", "probes:300", "--out", out, "-q"]
    code, _, err = cli(*args)
    assert code == 1, err
    line = one_error_line(err)
    assert "no space left" in line and "rerun" in line
    assert not out.exists() and not list(small_fs.glob(".c.h5.*.tmp"))
    assert (small_fs / "c.h5.partial" / "manifest.json").exists()
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_fs)], check=True)
    in_process(*args)
    assert_same_cache(out, reference_extract(tmp_path / "ref.h5", "probes:300"))


def test_full_disk_during_invert_says_so_and_cleans_up(small_fs):
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_fs)], check=True)
    c = reference_extract(small_fs / "c.h5", "probes:120")
    filler = small_fs / "filler"
    free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
    filler.write_bytes(b"\0" * max(0, free - 60_000))  # room for the journal, not for a copy of the cache
    before = datasets(c)
    code, _, err = cli(*invert(c, small_fs / "run"))
    assert code == 1, err
    assert "no space left" in one_error_line(err)
    assert not list(small_fs.glob(".c.h5.*.tmp"))
    after = datasets(c)
    assert sorted(after) == sorted(before) and all(np.array_equal(after[k], before[k]) for k in before)


# --------------------------------------------------------------------------- inputs that must not be lost


def test_non_utf8_file_name_and_bad_captions_are_handled_before_encoding(tmp_path, run_cli):
    from conftest import save_image

    from clipscope import Cache

    root = tmp_path / "imgs"
    save_image(root / "ok.jpg", seed=1)
    raw = os.fsencode(root) + b"/caf\xe9.jpg"  # Latin-1 name: not valid UTF-8
    save_image(Path(os.fsdecode(raw)), seed=2)
    rows = [{"image": "ok.jpg", "caption": "a fine caption"}, {"image": "ok.jpg", "caption": "nul \x00 inside"},
            {"image": "ok.jpg", "caption": None}, {"image": os.fsdecode(b"caf\xe9.jpg"), "caption": "latin name"}]
    table = root / "caps.jsonl"
    table.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8", errors="surrogateescape")
    out = tmp_path / "c.h5"
    code, _, err = run_cli("extract", *TINY, "--data", f"captions:{table}", "--out", out, "-q")
    assert code == 0, err
    with Cache.open(out) as c:
        assert c.text_captions == ["a fine caption", "latin name"]
        assert [os.fsencode(i) for i in c.image_ids] == [b"ok.jpg", b"caf\xe9.jpg"]
        assert c.pairs.tolist() == [[0, 0], [1, 1]]
        reasons = dict(c.failed)
        assert "caption contains a NUL byte" in reasons.values()
        assert "missing caption (null)" in reasons.values()
        assert "None" not in c.text_captions


def test_newer_schema_cache_says_so(tmp_path, run_cli):
    import h5py

    out = tmp_path / "c.h5"
    code, _, err = run_cli("extract", *TINY, "--data", "probes:4", "--out", out, "-q")
    assert code == 0, err
    with h5py.File(out, "a") as f:
        f.attrs["clipscope_schema"] = 99
        del f["pairs"]
    for args in (("info", out), ("gap", out, "--out", tmp_path / "g")):
        code, _, err = run_cli(*args)
        assert code == 1 and "newer clipscope" in one_error_line(err)


def test_interrupt_says_how_to_resume(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    # As at a terminal: SIGINT at its default disposition. A test run started as a background job
    # (`cmd &` without job control, as CI runners may) inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: the extraction would finish and exit 0.
    p = subprocess.Popen([sys.executable, "-m", "clipscope.cli.main", "extract", *TINY, "--data", "probes:4000",
                          "--batch-size", "4", "--out", str(tmp_path / "c.h5")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (tmp_path / "c.h5.partial" / "image.json").exists():
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 1
    assert "rerun the same command to resume" in one_error_line(err)
    assert (tmp_path / "c.h5.partial" / "image.json").exists()


# --------------------------------------------------------------------------- stored crops (gap --subregions)


def captioned_images(root: Path, seed: int, n: int = 6) -> Path:
    """images:DIR data: n random JPEGs with a caption beside each."""
    from conftest import save_image

    for i in range(n):
        save_image(root / f"im{i}.jpg", seed=seed * 100 + i, size=(48, 40))
        (root / f"im{i}.txt").write_text(f"picture number {i} of set {seed}")
    return root


def subregion_run(cache, out, env=None, cwd=None):
    code, stdout, err = cli("gap", cache, "--subregions", "--no-plots", "--json", "-", "-q",
                            "--out", out, env=env, cwd=cwd)
    assert code == 0, err
    return json.loads(stdout)


def crop_numbers(report: dict) -> tuple:
    return tuple(report["metrics"][k]["value"] for k in ("subregion_win_share", "subregion_mean_gain"))


def test_crops_computed_while_the_cache_is_rewritten_are_not_stored(tmp_path):
    """gap --subregions paused just before it stores the crops; meanwhile extract --overwrite
    writes other images into the same cache; the crops of the old images must not land in it."""
    a, b = captioned_images(tmp_path / "a", 1), captioned_images(tmp_path / "b", 2)
    c = tmp_path / "c.h5"
    in_process("extract", *TINY, "--data", f"images:{a}", "--out", c, "-q")
    go = tmp_path / "go"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "CLIPSCOPE_FAULT": f"subregions-before-store:wait:{go}"}
    p = subprocess.Popen([sys.executable, "-m", "clipscope.cli.main", "gap", str(c), "--subregions",
                          "--no-plots", "--json", "-", "-q", "--out", str(tmp_path / "r1")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not Path(str(go) + ".waiting").exists():
        assert p.poll() is None and time.time() < deadline, p.communicate()
        time.sleep(0.1)
    in_process("extract", *TINY, "--data", f"images:{b}", "--out", c, "--overwrite", "-q")
    go.touch()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert any("rewritten while the crops were encoded" in n for n in json.loads(out)["notes"])
    assert "image/crops/embeddings" not in datasets(c)
    fresh = tmp_path / "fresh.h5"
    in_process("extract", *TINY, "--data", f"images:{b}", "--out", fresh, "-q")
    assert crop_numbers(subregion_run(c, tmp_path / "r2")) == crop_numbers(subregion_run(fresh, tmp_path / "r3"))


def test_replaced_images_are_refused_and_nothing_is_stored(tmp_path):
    from conftest import save_image

    a = captioned_images(tmp_path / "a", 1)
    c = tmp_path / "c.h5"
    in_process("extract", *TINY, "--data", f"images:{a}", "--out", c, "-q")
    first = subregion_run(c, tmp_path / "r1")
    again = subregion_run(c, tmp_path / "r2")
    assert crop_numbers(again) == crop_numbers(first)
    assert any("read from the cache" in n for n in again["notes"])
    original = (a / "im0.jpg").read_bytes()
    save_image(a / "im0.jpg", seed=999, size=(48, 40))  # new pixels under the old name
    code, _, err = cli("gap", c, "--subregions", "--no-plots", "-q", "--out", tmp_path / "r3")
    assert code == 1 and "not what" in one_error_line(err) and "re-extract" in err
    (a / "im0.jpg").write_bytes(original)  # restored bytes, but a new file: still not provably the same
    code, _, err = cli("gap", c, "--subregions", "--no-plots", "-q", "--out", tmp_path / "r4")
    assert code == 1, err
    in_process("extract", *TINY, "--data", f"images:{a}", "--out", c, "--overwrite", "-q")
    assert crop_numbers(subregion_run(c, tmp_path / "r5")) == crop_numbers(first)


def test_a_relative_data_spec_is_read_from_where_the_cache_was_made(tmp_path):
    captioned_images(tmp_path / "home" / "imgs", 1)
    captioned_images(tmp_path / "elsewhere" / "imgs", 2)  # same relative name, other images
    c = tmp_path / "home" / "c.h5"
    code, _, err = cli("extract", *TINY, "--data", "images:imgs", "--out", c, "-q", cwd=tmp_path / "home")
    assert code == 0, err
    here = subregion_run(c, tmp_path / "r1", cwd=tmp_path / "home")
    import h5py

    with h5py.File(c, "a") as f:  # drop the stored crops: the second run must encode them again
        del f["image/crops"]
    there = subregion_run(c, tmp_path / "r2", cwd=tmp_path / "elsewhere")
    assert crop_numbers(there) == crop_numbers(here)


def test_subregions_on_a_read_only_cache_and_after_a_killed_store(small_fs, tmp_path):
    """A cache on a file system mounted read-only (chmod does not bind root): the numbers come,
    the crops are not stored, and the run says so. Then a store killed mid-copy: the next run
    removes the copy and stores."""
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_fs)], check=True)
    a = captioned_images(tmp_path / "a", 1)
    c = small_fs / "c.h5"
    in_process("extract", *TINY, "--data", f"images:{a}", "--out", c, "-q")
    before = datasets(c)
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        ro = subregion_run(c, tmp_path / "r1")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    assert any("read-only" in n and "not stored" in n for n in ro["notes"]), ro["notes"]
    assert sorted(datasets(c)) == sorted(before)
    code, _, _ = cli("gap", c, "--subregions", "--no-plots", "-q", "--out", tmp_path / "r2",
                     env={"CLIPSCOPE_FAULT": "before-replace.h5:1"})
    assert code == -signal.SIGKILL
    assert list(small_fs.glob(".c.h5.*.tmp")), "the kill leaves a full-size temporary copy"
    ok = subregion_run(c, tmp_path / "r3")
    assert crop_numbers(ok) == crop_numbers(ro)
    assert not list(small_fs.glob(".c.h5.*.tmp")), "the next store removes the killed one's copy"
    assert "image/crops/embeddings" in datasets(c)
    assert not list(small_fs.glob("*.lock")), "a clean exit leaves no lock file"


# --------------------------------------------------------------------------- explore's server


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_explore_never_leaves_its_server_running(tmp_path, how):
    """A stand-in `embedding-atlas` records its pid and the rows it serves; stopping clipscope
    (SIGTERM, or SIGKILL) must stop it, and SIGTERM also removes the temporary folder."""
    fake = tmp_path / "bin" / "embedding-atlas"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport os, sys, time\n"
                    f"open({str(tmp_path / 'server')!r}, 'w').write(f'{{os.getpid()}} {{sys.argv[1]}}')\n"
                    "time.sleep(600)\n")
    fake.chmod(0o755)
    reference_extract(tmp_path / "c.h5", "probes:16")
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-m", "clipscope.cli.main", "explore", str(tmp_path / "c.h5")], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (tmp_path / "server").exists() or not (tmp_path / "server").read_text().strip():
        assert p.poll() is None and time.time() < deadline, p.communicate()
        time.sleep(0.1)
    pid, rows = (tmp_path / "server").read_text().split()
    p.send_signal(how)
    p.wait(30)

    def alive(pid):
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}/status").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()

    deadline = time.time() + 15
    while alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(pid), "the server outlived clipscope"
    if how == signal.SIGTERM:
        assert not Path(rows).parent.exists(), "the temporary folder was left behind"
