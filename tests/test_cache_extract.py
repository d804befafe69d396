"""The cache, extraction (incl. resume after SIGKILL), import, and their error paths."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import REPO, make_image_folder, save_image

from clipscope import Cache
from clipscope.errors import ClipscopeError

TINY = ["--model", "clipscope-tiny", "--pretrained", "none", "--workers", "0"]


def assert_one_line_error(code, err, *needles):
    assert code == 1
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_version_and_help_list_commands(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and "clipscope" in out
    code, out, _ = run_cli("--help")
    for name in ("extract", "import", "info", "gap", "uniformity", "invert", "blindpairs", "robustness",
                 "drift", "report", "compare", "check", "demo"):
        assert name in out


def test_extract_folder_with_broken_files(run_cli, image_folder, tmp_path):
    out = tmp_path / "c.h5"
    code, stdout, err = run_cli("extract", *TINY, "--data", f"folder:{image_folder}", "--out", out, "--batch-size", "2")
    assert code == 0, err
    assert "failed 3" in stdout
    with Cache.open(out) as c:
        a = c.attrs
        assert a["model"] == "clipscope-tiny" and a["pretrained"] == "none" and a["embed_dim"] == 64
        assert a["clipscope_schema"] == 1 and a["data_spec"] == f"folder:{image_folder}"
        assert json.loads(json.dumps(a["preprocess"]))["size"] == [64, 64]
        assert c.n_images == 6 and c.image_embeddings.shape == (6, 64)
        assert c.image_ids == ["cat/0.jpg", "cat/1.jpg", "cat/2.jpg", "dog/0.jpg", "dog/1.jpg", "dog/2.jpg"]
        assert c.classnames == ["cat", "dog"]
        assert c.text_captions == ["a photo of a cat.", "a photo of a dog."]
        assert c.image_labels.tolist() == [0, 0, 0, 1, 1, 1]
        assert c.pairs.tolist() == [[0, 0], [1, 0], [2, 0], [3, 1], [4, 1], [5, 1]]
        failed = dict(c.failed)
        assert set(failed) == {"cat/truncated.jpg", "cat/empty.jpg", "dog/notes.jpg"}
        assert "zero-byte" in failed["cat/empty.jpg"]
        assert c.image_embeddings.dtype == np.float32
        norms = np.linalg.norm(c.normalized_image_embeddings(), axis=1)
        np.testing.assert_allclose(norms, 1, atol=1e-5)
        assert c["classes/embeddings"].shape == (2, 64)
    assert not Path(str(out) + ".partial").exists()


def test_extract_matches_direct_encoding(tmp_path):
    """The cache holds the encoder's raw outputs, row for row."""
    import torch

    from clipscope.data import open_source
    from clipscope.extract import extract
    from clipscope.models import load_encoder

    src = open_source("probes:10")
    enc = load_encoder("clipscope-tiny", "none", device="cpu")
    extract(src, enc, tmp_path / "p.h5", batch_size=4, progress=False)
    with torch.inference_mode():
        direct = enc.model.encode_image(torch.stack([enc.preprocess(src.load_image(i)) for i in range(10)]))
        direct_t = enc.model.encode_text(enc.tokenizer(src.texts))
    with Cache.open(tmp_path / "p.h5") as c:
        np.testing.assert_allclose(c.image_embeddings[:], direct.numpy(), atol=1e-5)
        np.testing.assert_allclose(c.text_embeddings[:], direct_t.numpy(), atol=1e-5)


def _datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        # created_utc and cache_id name this write (two writes of the same rows differ in them alone)
        attrs = {k: f.attrs[k] for k in f.attrs if k not in ("created_utc", "cache_id")}
    return out, attrs


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path):
    """Acceptance: kill an extraction with SIGKILL mid-run, rerun, compare with an uninterrupted run."""
    args = [sys.executable, "-m", "clipscope.cli.main", "extract", "--model", "clipscope-tiny", "--pretrained", "none",
            "--data", "probes:96", "--batch-size", "4", "--workers", "0", "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref.h5"
    subprocess.run(args + ["--out", str(ref)], check=True, env=env, cwd=REPO)

    out = tmp_path / "killed.h5"
    state = Path(str(out) + ".partial") / "image.json"
    proc = subprocess.Popen(args + ["--out", str(out)], env=env, cwd=REPO)
    deadline = time.time() + 120
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["rows"] >= 8:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows_at_kill = json.loads(state.read_text())["rows"]
    assert 8 <= rows_at_kill < 96, "the kill must land mid-run"
    assert not out.exists()
    with pytest.raises(ClipscopeError, match="unfinished"):
        Cache.open(out)
    subprocess.run(args + ["--out", str(out)], check=True, env=env, cwd=REPO)
    a, attrs_a = _datasets(ref)
    b, attrs_b = _datasets(out)
    assert attrs_a == attrs_b
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
        if isinstance(a[k], np.ndarray) and a[k].dtype.kind == "f":
            assert a[k].tobytes() == b[k].tobytes(), k


def test_mixing_models_is_refused(run_cli, tmp_path):
    out = tmp_path / "c.h5"
    assert run_cli("extract", *TINY, "--data", "probes:6", "--out", out)[0] == 0
    before = out.read_bytes()
    code, _, err = run_cli("extract", "--model", "ViT-B-32", "--pretrained", "none", "--workers", "0",
                           "--data", "probes:6", "--out", out)
    assert_one_line_error(code, err, "refusing to mix", "--overwrite")
    assert out.read_bytes() == before  # nothing already written is lost
    code, _, err = run_cli("extract", *TINY, "--data", "probes:7", "--out", out)
    assert_one_line_error(code, err, "data_spec")
    code, out_text, _ = run_cli("extract", *TINY, "--data", "probes:6", "--out", out)
    assert code == 0 and "nothing to do" in out_text
    code, _, _ = run_cli("extract", "--model", "ViT-B-32", "--pretrained", "none", "--workers", "0",
                         "--data", "probes:6", "--out", out, "--overwrite")
    assert code == 0
    with Cache.open(out) as c:
        assert c.attrs["model"] == "ViT-B-32"


@pytest.mark.parametrize("args,needles", [
    (["--model", "ViT-B-99", "--pretrained", "none"], ["unknown model", "ViT-B-"]),
    (["--model", "ViT-B-32", "--pretrained", "nosuchtag"], ["unknown pretrained tag", "openai"]),
    (["--model", "ViT-B-32", "--pretrained", "/nonexistent/ckpt.pt"], ["no such checkpoint"]),
    (["--model", "ViT-B-32", "--pretrained", "openai"], ["--pretrained openai --weights PATH", "Hugging Face cache",
                                                        "--pretrained none"]),
    (["--model", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"], ["local-dir:PATH"]),
])
def test_model_errors_are_one_line(run_cli, tmp_path, args, needles):
    t0 = time.time()
    code, _, err = run_cli("extract", *args, "--data", "probes:2", "--out", tmp_path / "c.h5")
    assert_one_line_error(code, err, *needles)
    assert time.time() - t0 < 25, "offline failures must be fast"


def test_checkpoint_file_loads_with_hash(run_cli, tmp_path):
    import torch

    from clipscope.models import load_encoder

    enc = load_encoder("clipscope-tiny", "none", device="cpu")
    ckpt = tmp_path / "w.pt"
    torch.save(enc.model.state_dict(), ckpt)
    code, _, err = run_cli("extract", "--model", "clipscope-tiny", "--pretrained", ckpt, "--workers", "0",
                           "--data", "probes:3", "--out", tmp_path / "c.h5")
    assert code == 0, err
    with Cache.open(tmp_path / "c.h5") as c:
        assert c.attrs["pretrained"] == str(ckpt) and len(c.attrs["weights_sha256"]) == 64
    bad = tmp_path / "bad.pt"
    torch.save({"visual.nonsense": torch.zeros(3)}, bad)
    code, _, err = run_cli("extract", "--model", "clipscope-tiny", "--pretrained", bad, "--workers", "0",
                           "--data", "probes:3", "--out", tmp_path / "d.h5")
    assert_one_line_error(code, err, "does not fit")


@pytest.mark.parametrize("spec,needle", [
    ("nosuch:x", "unknown --data kind"),
    ("folder:/does/not/exist", "no such folder"),
    ("captions:/does/not/exist.csv", "no such file"),
    ("probes:abc", "probes:N"),
])
def test_data_spec_errors(run_cli, tmp_path, spec, needle):
    code, _, err = run_cli("extract", *TINY, "--data", spec, "--out", tmp_path / "c.h5")
    assert_one_line_error(code, err, needle)


def test_captions_source_with_missing_file_and_labels(run_cli, tmp_path):
    for i in range(3):
        save_image(tmp_path / "d" / f"{i}.png", i, fmt="PNG")
    table = tmp_path / "d" / "caps.csv"
    table.write_text("image,caption,label\n0.png,a red thing,red\n0.png,still red,red\n1.png,blue,blue\n"
                     "2.png,green,green\nmissing.png,gone,red\n")
    code, out, err = run_cli("extract", *TINY, "--data", f"captions:{table}", "--out", tmp_path / "c.h5")
    assert code == 0, err
    with Cache.open(tmp_path / "c.h5") as c:
        assert c.image_ids == ["0.png", "1.png", "2.png"]
        assert c.n_texts == 5
        assert c.pairs.tolist() == [[0, 0], [0, 1], [1, 2], [2, 3]]  # the missing image's caption is unpaired
        assert c.classnames == ["blue", "green", "red"] and c.image_labels.tolist() == [2, 0, 1]
        assert [i for i, _ in c.failed] == ["missing.png"]


def test_images_coco_and_wds_sources(tmp_path):
    from clipscope.data import open_source

    for i in range(3):
        save_image(tmp_path / "flat" / f"{i}.jpg", i)
    (tmp_path / "flat" / "1.txt").write_text("caption one\n")
    src = open_source(f"images:{tmp_path / 'flat'}")
    assert src.image_ids == ["0.jpg", "1.jpg", "2.jpg"] and src.texts == ["caption one"]
    assert src.pairs.tolist() == [[1, 0]]

    ann = {"images": [{"id": 7, "file_name": "0.jpg"}, {"id": 3, "file_name": "2.jpg"}],
           "annotations": [{"image_id": 7, "id": 1, "caption": "first"}, {"image_id": 7, "id": 2, "caption": "second"},
                           {"image_id": 3, "id": 3, "caption": "third"}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    src = open_source(f"coco:{tmp_path / 'ann.json'}:{tmp_path / 'flat'}")
    assert src.image_ids == ["2.jpg", "0.jpg"] and src.texts == ["third", "first", "second"]
    assert src.pairs.tolist() == [[0, 0], [1, 1], [1, 2]]
    assert src.load_image(0).size == (40, 32)

    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for i in range(2):
            tar.add(tmp_path / "flat" / f"{i}.jpg", arcname=f"s{i}.jpg")
            (tmp_path / f"s{i}.txt").write_text(f"text {i}")
            tar.add(tmp_path / f"s{i}.txt", arcname=f"s{i}.txt")
    src = open_source(f"wds:{tmp_path}/shard-{{000..000}}.tar")
    assert src.texts == ["text 0", "text 1"] and src.load_image(1).size == (40, 32)


def test_wds_rejects_path_traversal(tmp_path):
    from clipscope.data import open_source

    save_image(tmp_path / "x.jpg", 0)
    shard = tmp_path / "evil.tar"
    with tarfile.open(shard, "w") as tar:
        tar.add(tmp_path / "x.jpg", arcname="../../etc/x.jpg")
    with pytest.raises(ClipscopeError, match="path traversal"):
        open_source(f"wds:{shard}")


def test_import_pair_array_round_trip(mtg, run_cli, tmp_path):
    """Acceptance: the cache's normalised rows equal the array's (already normalised) rows."""
    arr = np.load(mtg / "features_convirt.npy")
    code, _, err = run_cli("import", "--pair-array", mtg / "features_convirt.npy", "--out", tmp_path / "c.h5",
                           "--model-name", "ConVIRT")
    assert code == 0, err
    with Cache.open(tmp_path / "c.h5") as c:
        np.testing.assert_allclose(c.normalized_image_embeddings(), arr[0], atol=1e-6)
        np.testing.assert_allclose(c.normalized_text_embeddings(), arr[1], atol=1e-6)
        np.testing.assert_array_equal(c.image_embeddings[:], arr[0])
        assert c.pairs.tolist() == [[i, i] for i in range(500)]
        assert c.image_ids[:2] == ["0", "1"]
        assert c.attrs["model"] == "ConVIRT" and c.attrs["source"] == "import"


def test_import_errors(run_cli, tmp_path):
    np.save(tmp_path / "bad3.npy", np.zeros((3, 4, 5), np.float32))
    code, _, err = run_cli("import", "--pair-array", tmp_path / "bad3.npy", "--out", tmp_path / "c.h5")
    assert_one_line_error(code, err, "(2, N, D)")
    nan = np.ones((2, 4, 3), np.float32)
    nan[1, 2, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    code, _, err = run_cli("import", "--pair-array", tmp_path / "nan.npy", "--out", tmp_path / "c.h5")
    assert_one_line_error(code, err, "NaN or inf", "row 2")
    np.save(tmp_path / "a.npy", np.ones((4, 3), np.float32))
    np.save(tmp_path / "b.npy", np.ones((4, 5), np.float32))
    code, _, err = run_cli("import", "--image-embeddings", tmp_path / "a.npy", "--text-embeddings", tmp_path / "b.npy",
                           "--out", tmp_path / "c.h5")
    assert_one_line_error(code, err, "3-d", "5-d")
    np.save(tmp_path / "c5.npy", np.ones((5, 3), np.float32))
    code, _, err = run_cli("import", "--image-embeddings", tmp_path / "a.npy", "--text-embeddings", tmp_path / "c5.npy",
                           "--out", tmp_path / "c.h5")
    assert_one_line_error(code, err, "--pairs")
    assert not (tmp_path / "c.h5").exists()
    code, _, err = run_cli("import", "--image-embeddings", tmp_path / "a.npy", "--out", tmp_path / "img.h5")
    assert code == 0, err
    code, _, err = run_cli("import", "--image-embeddings", tmp_path / "a.npy", "--out", tmp_path / "img.h5")
    assert_one_line_error(code, err, "already exists")
    code, _, err = run_cli("import", "--out", tmp_path / "x.h5")
    assert code == 2


def test_cache_open_errors(tmp_path):
    with pytest.raises(ClipscopeError, match="no cache"):
        Cache.open(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_text("junk")
    with pytest.raises(ClipscopeError, match="not an HDF5 cache"):
        Cache.open(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(ClipscopeError, match="not a clipscope cache"):
        Cache.open(tmp_path / "other.h5")


def test_info_lists_failures(run_cli, tmp_path):
    folder = make_image_folder(tmp_path / "imgs", per_class=1)
    run_cli("extract", *TINY, "--data", f"folder:{folder}", "--out", tmp_path / "c.h5")
    code, out, _ = run_cli("info", tmp_path / "c.h5", "--failed")
    assert code == 0
    assert "clipscope-tiny" in out and "pretrained: none" in out and "failed      3" in out
    assert "cat/empty.jpg" in out
    code, out, _ = run_cli("info", tmp_path / "c.h5", "--json")
    assert json.loads(out)["images"] == 2


def test_float16_storage(run_cli, tmp_path):
    code, _, err = run_cli("extract", *TINY, "--data", "probes:4", "--out", tmp_path / "c.h5", "--dtype", "float16")
    assert code == 0, err
    with Cache.open(tmp_path / "c.h5") as c:
        assert c.image_embeddings.dtype == np.float16
        assert c.normalized_image_embeddings().dtype == np.float32


def test_local_dir_model_equals_the_bundled_one(run_cli, tmp_path):
    """local-dir:PATH (open_clip_config.json + checkpoint) loads offline and records the checkpoint's hash."""
    import shutil

    from clipscope.models import ASSETS

    folder = tmp_path / "tiny-local"
    folder.mkdir()
    cfg = json.loads((ASSETS / "clipscope-tiny.json").read_text())
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    shutil.copy(ASSETS / "clipscope-tiny.safetensors", folder / "open_clip_model.safetensors")
    assert run_cli("extract", "--model", "clipscope-tiny", "--data", "probes:6", "--out", tmp_path / "a.h5")[0] == 0
    code, _, err = run_cli("extract", "--model", f"local-dir:{folder}", "--data", "probes:6", "--out", tmp_path / "b.h5")
    assert code == 0, err
    with Cache.open(tmp_path / "a.h5") as a, Cache.open(tmp_path / "b.h5") as b:
        np.testing.assert_array_equal(a.image_embeddings[:], b.image_embeddings[:])
        np.testing.assert_array_equal(a.text_embeddings[:], b.text_embeddings[:])
        assert a.attrs["weights_sha256"] == b.attrs["weights_sha256"]
        assert b.attrs["pretrained"] == f"local-dir:{folder}"
    code, _, err = run_cli("extract", "--model", f"local-dir:{tmp_path}", "--data", "probes:2", "--out", tmp_path / "c.h5")
    assert_one_line_error(code, err, "open_clip_config.json")


def test_offline_error_is_one_line_in_a_real_process(tmp_path):
    """Outside pytest's log capture too: open_clip's own log lines must not precede the error."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "clipscope.cli.main", "extract", "--model", "ViT-B-32", "--data", "probes:2",
                        "--out", str(tmp_path / "c.h5")], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert p.stderr.strip().count("\n") == 0 and p.stderr.startswith("Error: could not fetch weights 'openai'")


def test_import_clip_retrieval_folder(run_cli, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    root = tmp_path / "cr"
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True)
    img = [rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=(2, 8)).astype(np.float32)]
    txt = [rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=(2, 8)).astype(np.float32)]
    for k in range(2):
        np.save(root / "img_emb" / f"img_emb_{k}.npy", img[k])
        np.save(root / "text_emb" / f"text_emb_{k}.npy", txt[k])
        n = len(img[k])
        pq.write_table(pa.table({"image_path": [f"s{k}/{i}.jpg" for i in range(n)],
                                 "caption": [f"caption {k}-{i}" for i in range(n)]}), root / "metadata" / f"metadata_{k}.parquet")
    code, _, err = run_cli("import", "--clip-retrieval", root, "--out", tmp_path / "c.h5", "--model-name", "ViT-L-14")
    assert code == 0, err
    with Cache.open(tmp_path / "c.h5") as c:
        assert c.image_ids == ["s0/0.jpg", "s0/1.jpg", "s0/2.jpg", "s1/0.jpg", "s1/1.jpg"]
        assert c.text_captions[3] == "caption 1-0"
        np.testing.assert_array_equal(c.image_embeddings[:], np.concatenate(img))
        np.testing.assert_array_equal(c.text_embeddings[:], np.concatenate(txt))
        assert c.pairs.tolist() == [[i, i] for i in range(5)]
        first = c.attrs["data_fingerprint"]
    # same content, same fingerprint; other content, another one
    assert run_cli("import", "--clip-retrieval", root, "--out", tmp_path / "d.h5")[0] == 0
    np.save(root / "img_emb" / "img_emb_1.npy", img[1] + 1)
    assert run_cli("import", "--clip-retrieval", root, "--out", tmp_path / "e.h5")[0] == 0
    with Cache.open(tmp_path / "d.h5") as d, Cache.open(tmp_path / "e.h5") as e:
        assert d.attrs["data_fingerprint"] == first != e.attrs["data_fingerprint"]
    code, _, err = run_cli("import", "--clip-retrieval", tmp_path, "--out", tmp_path / "f.h5")
    assert_one_line_error(code, err, "img_emb")
