"""The tensor input path: JPEG bytes decoded in batches by torchvision (nvJPEG on CUDA, libjpeg
on CPU), then resized, cropped and normalised as tensors on the encoder's device.

The steps are the model's own preprocessing, read off its torchvision ``Compose`` (open_clip's
and timm's eval transforms): ``Resize`` and ``CenterCrop`` run on uint8 tensors exactly as they
are configured (size, interpolation, antialias), the conversion steps become a division by 255,
and ``Normalize`` keeps its mean and std. A transform this module does not know makes the path
unavailable (``auto`` then uses PIL). Pixels are close to PIL's but not bit-identical (decoders
and resampling kernels differ), so a cache records which path made it (``preprocess.decode``).

Only well-formed JPEGs (SOI at the start, EOI at the end) take this path. Anything else, and any
JPEG that torchvision cannot decode cleanly (an error or a warning), is decoded by PIL, file by
file, so an unreadable input fails with the same reason on both paths.
"""

from __future__ import annotations

import warnings

from clipscope.errors import ClipscopeError, UsageError

DECODE_CHOICES = ("auto", "gpu", "cpu", "tensor")
_SOI, _EOI = b"\xff\xd8\xff", b"\xff\xd9"


def looks_like_jpeg(data: bytes) -> bool:
    """A complete JPEG stream: starts with SOI and ends with EOI (trailing NULs allowed). A
    truncated file lacks EOI and goes to PIL, which refuses it as the PIL path does."""
    return data[:3] == _SOI and data.rstrip(b"\0")[-2:] == _EOI


class TensorPreprocess:
    """The encoder's eval transform, applied to uint8 CHW tensors on any device."""

    def __init__(self, transform):
        from torchvision import transforms as T

        steps = list(getattr(transform, "transforms", [transform]))
        self.geometry, self.mean, self.std = [], None, None
        for step in steps:
            name = type(step).__name__
            if isinstance(step, (T.Resize, T.CenterCrop)):
                if self.mean is not None:
                    raise UnsupportedPreprocess(f"{name} after Normalize")
                self.geometry.append(step)
            elif name in ("MaybeConvertMode", "MaybeToTensor", "ToTensor", "PILToTensor", "ConvertImageDtype") or \
                    getattr(step, "__name__", "") == "_convert_to_rgb":
                continue  # the decoder gives RGB uint8; the division by 255 happens before Normalize
            elif isinstance(step, T.Normalize):
                self.mean, self.std = list(map(float, step.mean)), list(map(float, step.std))
            else:
                raise UnsupportedPreprocess(f"the step {name} has no tensor equivalent here")
        if self.mean is None:
            self.mean, self.std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]

    def __call__(self, images: list):
        """uint8 CHW tensors (any sizes, one device) -> a float32 NCHW batch, normalised."""
        import torch

        out = []
        for im in images:
            for step in self.geometry:
                im = step(im)
            out.append(im)
        batch = torch.stack(out).float().div_(255.0)
        mean = torch.tensor(self.mean, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, -1, 1, 1)
        return batch.sub_(mean).div_(std)


class UnsupportedPreprocess(Exception):
    """The encoder's preprocessing has a step the tensor path cannot reproduce."""


def tensor_preprocess(encoder) -> TensorPreprocess | None:
    try:
        return TensorPreprocess(encoder.preprocess)
    except UnsupportedPreprocess:
        return None


def resolve_decode(decode: str, encoder, source) -> str | None:
    """The input path an extraction takes: ``None`` for PIL in DataLoader workers, or
    ``"tensor-<device type>"``.

    ``auto`` takes the tensor path on CUDA when the source has file bytes and the preprocessing
    translates; ``gpu`` requires all three; ``tensor`` runs the tensor path on whatever device
    the encoder is on (torchvision's CPU decoder on a CPU: parity checks, benchmarks); ``cpu``
    is PIL."""
    if decode not in DECODE_CHOICES:
        raise UsageError(f"--decode {decode}: use one of {', '.join(DECODE_CHOICES)}")
    if decode == "cpu":
        return None
    device = str(encoder.device).split(":")[0]
    has_bytes = getattr(source, "load_bytes", None) is not None
    if decode == "auto":
        return f"tensor-{device}" if device == "cuda" and has_bytes and tensor_preprocess(encoder) else None
    if decode == "gpu" and device != "cuda":
        raise UsageError(f"--decode gpu needs the model on a CUDA device (it is on {encoder.device}); "
                         "use --decode cpu or auto")
    if not has_bytes:
        raise UsageError(f"--decode {decode} reads image files, and {source.spec} has none (its images are made "
                         "in memory): use --decode cpu or auto")
    try:
        TensorPreprocess(encoder.preprocess)
    except UnsupportedPreprocess as e:
        raise ClipscopeError(f"--decode {decode}: this model's preprocessing cannot run as tensors ({e}); "
                             "use --decode cpu or auto") from None
    return f"tensor-{device}"


def decode_jpegs(datas: list, device: str) -> list:
    """Decode uint8 byte tensors to uint8 RGB CHW tensors on ``device``; an entry that fails
    (error or decoder warning) is ``None``. One batched call; on failure, file by file to find
    which."""
    from torchvision.io import ImageReadMode, decode_jpeg

    def clean(batch):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # libjpeg's "corrupt data" warnings mean a damaged image
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points at TorchCodec
            out = decode_jpeg(batch, mode=ImageReadMode.RGB, device=device)
        return out if isinstance(out, list) else [out]

    if not datas:
        return []
    try:
        return clean(list(datas))
    except Exception:  # noqa: BLE001 - any decoder failure sends the file to PIL
        out = []
        for d in datas:
            try:
                out.append(clean([d])[0])
            except Exception:  # noqa: BLE001
                out.append(None)
        return out
