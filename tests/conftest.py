import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the network
os.environ.setdefault("MPLBACKEND", "Agg")
# xdist already runs one worker per core: a worker (and the processes it starts) that also spread
# over every core only thrash; one math thread each is faster in total on the 2-core CI machine
for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

REPO = Path(__file__).resolve().parents[1]
# Real embeddings from the Mind-the-Gap release (MIT), kept in the repository: see its README.
MIND_THE_GAP = REPO / "tests" / "data" / "mind-the-gap"


@pytest.fixture(scope="session")
def mtg():
    """The Mind-the-Gap arrays and their expected metrics (tests/data/mind-the-gap)."""
    assert (MIND_THE_GAP / "expected.json").exists(), f"{MIND_THE_GAP} is part of the repository; restore it with git"
    return MIND_THE_GAP


@pytest.fixture
def run_cli(capsys, monkeypatch, tmp_path):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("CLIPSCOPE_CACHE_DIR", str(tmp_path / "content-cache"))

    def _run(*args):
        from clipscope.cli.main import main

        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def save_image(path: Path, seed: int, size=(40, 32), fmt="JPEG"):
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, fmt)


def make_image_folder(root: Path, classes=("cat", "dog"), per_class=3, broken=True) -> Path:
    """An ImageFolder tree; with ``broken``, add a truncated JPEG, a zero-byte file and a text file named .jpg."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            save_image(root / name / f"{i}.jpg", seed=10 * c + i)
    if broken:
        buf = io.BytesIO()
        from PIL import Image

        Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(buf, "JPEG")
        (root / classes[0] / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        (root / classes[0] / "empty.jpg").write_bytes(b"")
        (root / classes[1] / "notes.jpg").write_text("this is not an image")
    return root


@pytest.fixture
def image_folder(tmp_path):
    return make_image_folder(tmp_path / "imgs")


def expected_metrics(mtg_dir: Path) -> dict:
    return json.loads((mtg_dir / "expected.json").read_text())
