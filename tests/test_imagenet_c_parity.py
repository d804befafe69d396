"""ImageNet-C parity: every corruption and severity against a transcription of
make_imagenet_c.py (tests/imagenet_c_reference.py) on the same random draws, on a real
photograph: max abs difference <= 1/255 before the published JPEG step."""

from __future__ import annotations

import io

import imagenet_c_reference as ref
import numpy as np
import pytest
from PIL import Image

from clipscope.robustness.corruptions import corrupt, motion_blur_tensor, publish

SEVERITIES = (1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def photo():
    """skimage's astronaut, resized to 256 and centre-cropped to 224 (the ImageNet-C protocol)."""
    import skimage.data

    return Image.fromarray(skimage.data.astronaut()).resize((256, 256), Image.BILINEAR).crop((16, 16, 240, 240))


def _max_diff(photo, name, sev, reference, **kw):
    seed = 1000 + sev
    np.random.seed(seed)  # the reference draws from numpy's global legacy RandomState
    expected = np.uint8(reference())
    got = corrupt(np.asarray(photo), name, sev, seed=seed, published=False, **kw)
    return int(np.abs(expected.astype(int) - got.astype(int)).max())


@pytest.mark.parametrize("name", sorted(ref.FUNCTIONS))
@pytest.mark.parametrize("sev", SEVERITIES)
def test_corruption_matches_the_reference(photo, name, sev):
    fn = ref.FUNCTIONS[name]
    seed = 1000 + sev
    reference = (lambda: fn(photo, sev, seed=seed)) if name == "impulse_noise" else (lambda: fn(photo, sev))
    assert _max_diff(photo, name, sev, reference) <= 1


def _our_motion_blur(layer_u8, radius, sigma, angle):
    import torch

    t = torch.from_numpy(layer_u8[None, None].astype(np.float64) / 255)
    return np.floor(motion_blur_tensor(t, radius, sigma, [angle])[0, 0].numpy() * 255 + 1e-4)


@pytest.mark.parametrize("sev", SEVERITIES)
def test_snow_matches_the_reference_around_its_motion_blur(photo, sev):
    """Everything in snow but ImageMagick's blur kernel (checked against ImageMagick below)."""
    assert _max_diff(photo, "snow", sev, lambda: ref.snow(photo, sev, motion_blur=_our_motion_blur)) <= 1


@pytest.mark.parametrize("sev", SEVERITIES)
def test_frost_with_the_reference_photographs(photo, sev, tmp_path_factory):
    """--frost-dir follows the reference exactly; stand-in photographs of the reference's sizes
    and formats (its own are not redistributed here) exercise the same code path."""
    folder = tmp_path_factory.getbasetemp() / "frost"
    if not folder.exists():
        folder.mkdir()
        rng = np.random.default_rng(0)
        for k, name in enumerate(ref_frost_names()):
            arr = rng.integers(0, 256, (300 + 20 * k, 320 + 10 * k, 3), dtype=np.uint8)
            Image.fromarray(arr).save(folder / name, quality=95) if name.endswith(".jpg") else Image.fromarray(arr).save(folder / name)
    assert _max_diff(photo, "frost", sev, lambda: ref.frost(photo, sev, folder=folder), frost_dir=folder) <= 1


def ref_frost_names():
    from clipscope.robustness.corruptions import FROST_FILES

    return FROST_FILES


def _wand():
    try:
        import ctypes

        from wand.api import library
        from wand.image import Image as WandImage
    except (ImportError, OSError) as e:  # Wand needs ImageMagick's shared library (CI installs it)
        pytest.skip(f"ImageMagick/Wand not available here ({e}); CI installs it (libmagickwand)")
    library.MagickMotionBlurImage.argtypes = (ctypes.c_void_p, ctypes.c_double, ctypes.c_double, ctypes.c_double)
    return library, WandImage


def _wand_motion_blur(layer_u8, radius, sigma, angle):
    import cv2

    library, WandImage = _wand()
    buf = io.BytesIO()
    Image.fromarray(layer_u8).save(buf, format="PNG")
    with WandImage(blob=buf.getvalue()) as im:
        library.MagickMotionBlurImage(im.wand, radius, sigma, angle)
        out = cv2.imdecode(np.frombuffer(im.make_blob(), np.uint8), cv2.IMREAD_UNCHANGED)
    return out[..., [2, 1, 0]] if out.ndim == 3 else out


@pytest.mark.parametrize("sev", SEVERITIES)
def test_motion_blur_and_snow_match_imagemagick(photo, sev):
    """The reimplemented MotionBlurImage against ImageMagick itself (the reference's Wand call)."""
    _wand()
    c = [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)][sev - 1]

    def reference_motion():
        return _wand_motion_blur(np.asarray(photo), c[0], c[1], np.random.uniform(-45, 45)).astype(np.float64)

    assert _max_diff(photo, "motion_blur", sev, reference_motion) <= 1
    assert _max_diff(photo, "snow", sev, lambda: ref.snow(photo, sev, motion_blur=_wand_motion_blur)) <= 1


def test_published_round_trip_is_uint8_truncation_then_jpeg85(photo):
    import torch

    x = torch.from_numpy(np.asarray(photo, np.float32) / 255 + 0.0019).clamp(0, 1).permute(2, 0, 1)[None]
    got = (publish(x)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    trunc = np.uint8(np.clip(np.asarray(photo, np.float64) / 255 + 0.0019, 0, 1) * 255)
    buf = io.BytesIO()
    Image.fromarray(trunc).save(buf, "JPEG", quality=85, optimize=True)
    expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_glass_blur_copies_rather_than_swaps():
    """The reference's tuple assignment on numpy views: x[h, w] takes x[h', w']'s value and
    x[h', w'] keeps its own. A two-pixel case shows it."""
    x = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
    h, w, hp, wp = 0, 1, 0, 0
    x[h, w], x[hp, wp] = x[hp, wp], x[h, w]
    assert x.tolist() == [[[0, 1, 2], [0, 1, 2]]]  # a copy: the first pixel was not overwritten
