"""Encoder loading: one entry point, :func:`load_encoder`, whatever library the model comes from.

A model name is resolved by its prefix against :data:`FAMILIES` (one module each: open_clip,
timm, transformers); the unknown-model error and ``clipscope models`` are written from the same
table. Model names:

- any open_clip architecture (``ViT-B-32``), with ``pretrained`` an open_clip tag, a local
  checkpoint file (``.pt``/``.bin``/``.safetensors``, loaded with ``weights_only=True``) or
  ``none`` (random init, recorded as such);
- ``hf-hub:org/repo`` and ``local-dir:PATH`` (open_clip's own schemas);
- ``clipscope-tiny``: the bundled tiny CLIP (default weights ``bundled``);
- ``timm:NAME``: an image-only timm reference encoder (for blind-pair mining);
- ``transformers:ORG/NAME`` or ``transformers:PATH``: a Hugging Face transformers model exposing
  ``get_image_features`` / ``get_text_features`` (CLIPModel, SiglipModel, Siglip2, AutoModel
  classes), with its own image processor and tokenizer (``pip install
  'clipscope-diagnostics[transformers]'``); ``pretrained`` is the hub revision.

The result is an :class:`Encoder` with ``encode_images``, ``encode_texts`` (raw features),
``embed_images``, ``embed_texts`` (L2-normalised, what analyses use), ``preprocess`` and
``provenance``, so no command needs to know which library the encoder came from.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clipscope.errors import ClipscopeError

ASSETS = Path(__file__).resolve().parent / "assets"
BUNDLED = {"clipscope-tiny": ASSETS / "clipscope-tiny.safetensors"}
_HUB_MODE_SET = False


@dataclass(frozen=True)
class Family:
    """A kind of model: the names it takes, how it loads and runs, and what the docs say of it."""

    kind: str
    prefix: str  # "" for open_clip architecture names
    example: str
    about: str
    load: Callable  # load(name without the prefix, pretrained, device, precision, weights) -> Encoder
    image_features: Callable  # image_features(model, pixels) -> torch features
    text_features: Callable | None = None  # text_features(model, tokens, device) -> torch features


def _family_table():
    from clipscope.models import open_clip as oc
    from clipscope.models import timm as tm
    from clipscope.models import transformers as tr

    return (
        Family("transformers", "transformers:", "transformers:ORG/NAME|PATH",
               "a Hugging Face transformers model with its own processor and tokenizer (extra: transformers)",
               tr.load, tr.image_features, tr.text_features),
        Family("timm", "timm:", "timm:NAME", "an image-only timm encoder, as a blind-pair reference",
               tm.load, tm.image_features),
        Family("open_clip", "hf-hub:", "hf-hub:ORG/REPO", "an open_clip model on the Hugging Face hub",
               oc.load, oc.image_features, oc.text_features),
        Family("open_clip", "local-dir:", "local-dir:PATH", "an open_clip model folder (open_clip_config.json)",
               oc.load, oc.image_features, oc.text_features),
        Family("open_clip", "", "ViT-B-32", "any open_clip architecture; clipscope-tiny is bundled",
               oc.load, oc.image_features, oc.text_features),
    )


class _Families:
    """The family table, built on first use (its modules import their libraries lazily)."""

    def __iter__(self):
        global _TABLE
        if _TABLE is None:
            _TABLE = _family_table()
        return iter(_TABLE)


_TABLE = None
FAMILIES = _Families()


def family_of(model: str) -> Family:
    """The family whose prefix the model name starts with (open_clip names have none)."""
    return next(f for f in FAMILIES if model.startswith(f.prefix))


def accepted_names() -> str:
    """How model names are written, for errors and listings: from the family table."""
    return ", ".join(f"{f.example} ({f.about})" for f in FAMILIES)


def _set_hub_mode() -> None:
    """Decide online/offline once, before huggingface_hub is first imported.

    huggingface_hub reads HF_HUB_OFFLINE at import time; offline, without it, every download
    retries for about 30 s before failing. A quick connection probe makes offline runs fail fast.
    """
    global _HUB_MODE_SET
    if _HUB_MODE_SET or "HF_HUB_OFFLINE" in os.environ:
        _HUB_MODE_SET = True
        return
    if not _hub_reachable(PROBE_SECONDS):
        os.environ["HF_HUB_OFFLINE"] = "1"
    _HUB_MODE_SET = True


PROBE_SECONDS = 2.0


def _hub_reachable(seconds: float) -> bool:
    """Whether huggingface.co answers a TCP connection within ``seconds``, name lookup included
    (a socket timeout does not bound getaddrinfo, which can stall for many seconds on a loaded or
    offline machine): the probe runs in a daemon thread that is abandoned at the deadline."""
    import threading

    result = []

    def probe():
        try:
            socket.create_connection(("huggingface.co", 443), timeout=seconds).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True, name="clipscope-hub-probe")
    thread.start()
    thread.join(seconds)
    return bool(result and result[0])


def import_open_clip():
    _set_hub_mode()
    import open_clip

    registered = {p.stem for p in ASSETS.glob("*.json") if not p.name.endswith(".train.json")}
    if not registered <= set(open_clip.list_models()):
        for cfg in ASSETS.glob("*.json"):
            if not cfg.name.endswith(".train.json"):
                open_clip.add_model_config(cfg)
    return open_clip


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class Encoder:
    """A loaded encoder: call ``encode_images`` on preprocessed batches, ``encode_texts`` on strings."""

    model: object
    preprocess: object
    tokenizer: object | None
    device: str
    precision: str
    provenance: dict = field(default_factory=dict)
    kind: str = "open_clip"

    @property
    def family(self) -> Family:
        return next(f for f in FAMILIES if f.kind == self.kind)

    @property
    def has_text(self) -> bool:
        return self.tokenizer is not None

    @property
    def logit_scale(self) -> float:
        ls = getattr(self.model, "logit_scale", None)
        return float(ls.exp().item()) if ls is not None else 100.0

    def encode_images(self, pixels):
        """Raw (unnormalised) image features, float32 torch tensor on CPU."""
        host, ready = self.encode_images_to_host(pixels)
        ready()
        return host

    def encode_images_to_host(self, pixels):
        """Start encoding a batch; returns ``(host tensor, ready)``: the float32 features are
        valid in the host tensor once ``ready()`` returns. On CUDA the copy into pinned memory
        runs behind the next batch's work; elsewhere ``ready`` is a no-op."""
        import torch

        from clipscope.runtime import autocast

        with torch.inference_mode(), autocast(self.precision, self.device):
            x = pixels.to(self.device, non_blocking=True)
            feats = self.family.image_features(self.model, x)
            if not self.device.startswith("cuda"):
                return feats.float().cpu(), lambda: None
            host = torch.empty(feats.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(feats.float(), non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        return host, done.synchronize

    def embed_images(self, pixels):
        """L2-normalised image embeddings of preprocessed pixels, float32 numpy (what every
        analysis uses)."""
        from clipscope.linalg import l2_normalize

        return l2_normalize(self.encode_images(pixels).numpy())

    def embed_pil(self, images):
        """:meth:`embed_images` of PIL images through the model's own preprocessing."""
        import torch

        return self.embed_images(torch.stack([self.preprocess(im) for im in images]))

    def embed_texts(self, texts: list[str], batch_size: int = 64):
        """L2-normalised text embeddings of any number of texts, in batches, float32 numpy."""
        from clipscope.linalg import l2_normalize

        return l2_normalize(self.encode_texts_batched(texts, batch_size))

    def encode_texts_batched(self, texts: list[str], batch_size: int = 64):
        """Raw text features of any number of texts, in batches, as one float32 array."""
        import numpy as np

        if not len(texts):
            return np.zeros((0, int(self.provenance.get("embed_dim") or 0)), np.float32)
        return np.concatenate([self.encode_texts(texts[i:i + batch_size]).numpy() for i in range(0, len(texts), batch_size)])

    def encode_texts(self, texts: list[str]):
        import torch

        from clipscope.runtime import autocast

        if not self.has_text:
            raise ClipscopeError(f"{self.provenance.get('model')} is an image-only encoder; it cannot encode texts")
        with torch.inference_mode(), autocast(self.precision, self.device):
            feats = self.family.text_features(self.model, self.tokenizer(list(texts)), self.device)
        return feats.float().cpu()


def default_pretrained(model: str) -> str:
    """The default weights: 'bundled' for bundled models, else open_clip's first tag."""
    if model in BUNDLED:
        return "bundled"
    if family_of(model).prefix:
        return "default"
    open_clip = import_open_clip()
    tags = open_clip.list_pretrained_tags_by_model(model)
    return tags[0] if tags else "none"


def unknown_model_error(model: str, names: list[str]) -> ClipscopeError:
    close = difflib.get_close_matches(model, names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ClipscopeError(f"unknown model {model!r}{hint}; pass {', '.join(f.example for f in FAMILIES)} or "
                          f"{', '.join(BUNDLED)}")


def _offline_error(model: str, pretrained: str, exc: Exception, flag: str = "--pretrained") -> ClipscopeError:
    if model.startswith("hf-hub:"):
        return ClipscopeError(
            f"could not fetch {model} ({type(exc).__name__}; offline?): download the repository elsewhere and "
            "pass --model local-dir:PATH, or use an open_clip name with --pretrained none for random init")
    return ClipscopeError(
        f"could not fetch weights {pretrained!r} for {model} ({type(exc).__name__}; offline?): "
        + (f"pass the downloaded file with {flag} {pretrained} --weights PATH (keeps the tag's settings), "
           if flag == "--pretrained" else f"pass a local checkpoint file with {flag} PATH, ")
        + f"copy a Hugging Face cache that holds it from another machine (the tag then works as is), or {flag} none "
        "for random init")


def load_encoder(model: str, pretrained: str | None = None, *, device: str = "auto",
                 precision: str = "auto", init_seed: int = 0, weights: str | os.PathLike | None = None) -> Encoder:
    """Load an encoder by name. See the module docstring for the accepted names.

    ``weights``: a local checkpoint file holding the weights of the open_clip tag ``pretrained``
    (e.g. ``pretrained="openai", weights="ViT-B-32.pt"``): the tag's settings (QuickGELU,
    mean, std, interpolation, resize mode) are applied and the file is loaded instead of a
    download. Random init (``pretrained='none'``) is seeded with ``init_seed``, so the same
    "random" model comes back in every process: a resumed extraction and a rerun see the same
    weights.
    """
    import torch

    from clipscope.runtime import resolve_device

    device = resolve_device(device)
    family = family_of(model)
    if weights is not None and family.kind != "open_clip":
        raise ClipscopeError(f"--weights applies to open_clip models; for {family.prefix[:-1]}: "
                             + ("give the model folder" if family.kind == "transformers"
                                else "pass the file as --reference-pretrained"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        name = model if family.kind == "open_clip" else model[len(family.prefix):]
        enc = family.load(name, pretrained, device, precision, weights)
    if enc.provenance["pretrained"] == "none":
        enc.provenance["init_seed"] = int(init_seed)
    return enc


def load_weights_file(load, path: Path) -> None:
    """Call ``load(path)``; a checkpoint that weights-only loading refuses gets a one-line error
    that says so (it is not a network problem), and so does an unreadable file."""
    import pickle

    unsafe = ClipscopeError(f"checkpoint {path} was refused as unsafe: it holds pickled Python objects, and clipscope "
                            "loads checkpoints with weights_only=True; save a plain state dict "
                            "(torch.save(model.state_dict(), ...)) or safetensors")
    try:
        load(str(path))
    except pickle.UnpicklingError:
        raise unsafe from None
    except RuntimeError as e:
        if "Weights only load failed" in str(e) or "Unsupported global" in str(e):  # timm wraps the pickle error
            raise unsafe from None
        if "size mismatch" in str(e) or "Missing key" in str(e) or "Unexpected key" in str(e):
            raise
        raise ClipscopeError(f"could not read checkpoint {path}: {str(e).splitlines()[0][:200]}") from None


