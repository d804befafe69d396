"""The tensor input path (#16) on this CPU machine: torchvision's CPU decoder plus tensor
preprocessing against the PIL path, on real photographs, with the fallbacks and provenance."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from clipscope.cache import Cache
from clipscope.data import open_source
from clipscope.errors import ClipscopeError, UsageError
from clipscope.extract import content_key, extract
from clipscope.models import load_encoder
from clipscope.tensor_input import TensorPreprocess, decode_jpegs, looks_like_jpeg, resolve_decode


def photographs() -> list[np.ndarray]:
    """Real photographs that ship with scikit-learn and scikit-image (RGB and greyscale)."""
    import skimage.data as sd
    from sklearn.datasets import load_sample_images

    return [*load_sample_images().images, sd.astronaut(), sd.coffee(), sd.chelsea(), sd.rocket(), sd.camera()]


def jpeg_bytes(a: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Photographs as JPEGs, one as PNG (PIL fallback), a truncated and a corrupt JPEG."""
    d = tmp_path_factory.mktemp("photos") / "imgs"
    d.mkdir()
    photos = photographs()
    for k, a in enumerate(photos):
        (d / f"p{k}.jpg").write_bytes(jpeg_bytes(a))
    Image.fromarray(photos[0]).save(d / "png_photo.png")
    good = jpeg_bytes(photos[1])
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (d / "not_a_jpeg.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 64 + b"\xff\xd9")
    return d


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.mark.parametrize("model,pretrained", [("clipscope-tiny", None), ("ViT-B-32", "none")])
def test_tensor_path_matches_pil_on_photographs(photo_folder, tmp_path, model, pretrained):
    enc = load_encoder(model, pretrained, device="cpu")
    got = {}
    for decode in ("cpu", "tensor"):
        path = tmp_path / f"{decode}.h5"
        extract(open_source(f"images:{photo_folder}"), enc, path, decode=decode, progress=False, batch_size=4)
        with Cache.open(path) as c:
            got[decode] = (c.image_embeddings[:], list(c.image_ids), sorted(c.failed), c.attrs["preprocess"])
    (a, ids_a, failed_a, prep_a), (b, ids_b, failed_b, prep_b) = got["cpu"], got["tensor"]
    assert ids_a == ids_b and len(ids_a) == len(photographs()) + 1  # the PNG is kept through PIL
    assert failed_a == failed_b and [f[0] for f in failed_a] == ["not_a_jpeg.jpg", "truncated.jpg"]
    cos = np.sum(unit(a) * unit(b), axis=1)
    assert cos.min() >= 0.999
    jpeg_rows = [k for k, i in enumerate(ids_a) if i.endswith(".jpg")]
    assert not np.array_equal(a[jpeg_rows], b[jpeg_rows])  # the JPEGs did take the tensor path
    png = ids_a.index("png_photo.png")
    np.testing.assert_array_equal(a[png], b[png])  # the PNG did not
    assert "decode" not in prep_a and prep_b["decode"] == "tensor-cpu"


def test_decoder_and_preprocess_against_pil():
    """Same decoder output as PIL (libjpeg on both sides here); resampling differs by a few levels."""
    import torch

    enc = load_encoder("ViT-B-32", "none", device="cpu")
    prep = TensorPreprocess(enc.preprocess)
    for a in photographs()[:3]:
        data = jpeg_bytes(a)
        assert looks_like_jpeg(data) and not looks_like_jpeg(data[:-10])
        img = decode_jpegs([torch.frombuffer(bytearray(data), dtype=torch.uint8)], "cpu")[0]
        pil = Image.open(io.BytesIO(data)).convert("RGB")
        np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), np.asarray(pil))
        diff = (prep([img])[0] - enc.preprocess(pil)).abs()
        assert diff.mean() < 0.01 and diff.max() < 0.1  # normalised units: ~0.004 per grey level


def test_a_damaged_jpeg_in_a_batch_leaves_the_others_decoded():
    import torch

    good = [torch.frombuffer(bytearray(jpeg_bytes(a)), dtype=torch.uint8) for a in photographs()[:2]]
    bad = torch.frombuffer(bytearray(b"\xff\xd8\xff" + bytes(100) + b"\xff\xd9"), dtype=torch.uint8)
    out = decode_jpegs([good[0], bad, good[1]], "cpu")
    assert out[1] is None and out[0] is not None and out[2] is not None


def test_zero_shot_accuracy_on_probes_is_unchanged(tmp_path):
    """The bundled model's probe accuracy, with the probes written as JPEG files and read by both paths."""
    src = open_source("probes:120")
    root = tmp_path / "probes"
    for i in range(len(src.image_ids)):
        d = root / src.classnames[src.labels[i]].replace(" ", "_")
        d.mkdir(parents=True, exist_ok=True)
        src.load_image(i).save(d / f"{i:04d}.jpg", quality=95)
    enc = load_encoder("clipscope-tiny", device="cpu")
    acc = {}
    for decode in ("cpu", "tensor"):
        path = tmp_path / f"{decode}.h5"
        extract(open_source(f"folder:{root}"), enc, path, decode=decode, progress=False)
        with Cache.open(path) as c:
            pred = np.argmax(unit(c.image_embeddings[:]) @ unit(c.text_embeddings[:]).T, axis=1)
            acc[decode] = float(np.mean(pred == c.image_labels))
    assert acc["cpu"] > 1.5 / len(src.classnames)  # the bundled model does better than chance
    assert acc["tensor"] == acc["cpu"]


def test_the_input_path_is_part_of_the_content_key_and_the_resume_check(photo_folder, tmp_path):
    enc = load_encoder("clipscope-tiny", device="cpu")
    src = open_source(f"images:{photo_folder}")
    assert content_key(enc, src, decode="cpu") == content_key(enc, src, decode="auto")  # auto is PIL on a CPU
    assert content_key(enc, src, decode="tensor") != content_key(enc, src, decode="cpu")
    path = tmp_path / "c.h5"
    extract(src, enc, path, decode="cpu", progress=False)
    with pytest.raises(ClipscopeError, match="preprocess"):
        extract(src, enc, path, decode="tensor", progress=False)


def test_decode_choices_fail_clearly():
    enc = load_encoder("clipscope-tiny", device="cpu")
    files = open_source("probes:4")
    assert resolve_decode("auto", enc, files) is None  # in-memory images: PIL
    with pytest.raises(UsageError, match="CUDA"):
        resolve_decode("gpu", enc, files)
    with pytest.raises(UsageError, match="in memory"):
        resolve_decode("tensor", enc, files)
    with pytest.raises(UsageError, match="use one of"):
        resolve_decode("fast", enc, files)


def test_an_unknown_transform_keeps_the_pil_path(photo_folder):
    from dataclasses import replace

    from torchvision import transforms as T

    enc = load_encoder("clipscope-tiny", device="cpu")
    odd = replace(enc, preprocess=T.Compose([T.Grayscale(3), *enc.preprocess.transforms]))
    src = open_source(f"images:{photo_folder}")
    with pytest.raises(ClipscopeError, match="Grayscale"):
        resolve_decode("tensor", odd, src)


def test_cli_decode_gpu_without_cuda_is_a_usage_error(run_cli, photo_folder, tmp_path):
    code, out, err = run_cli("extract", "--model", "clipscope-tiny", "--data", f"images:{photo_folder}",
                             "--decode", "gpu", "--out", tmp_path / "c.h5")
    assert code == 2 and "--decode gpu needs the model on a CUDA device" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "c.h5").exists()
