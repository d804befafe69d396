"""Encoder loading: one entry point, :func:`load_encoder`, whatever library the model comes from.

Model names:
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

The result is an :class:`Encoder` with ``encode_images``, ``encode_texts``, ``preprocess`` and
``provenance``, so no command needs to know which library the encoder came from.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path


from clipscope.errors import ClipscopeError

ASSETS = Path(__file__).resolve().parent / "assets"
BUNDLED = {"clipscope-tiny": ASSETS / "clipscope-tiny.safetensors"}
_HUB_MODE_SET = False


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
            if self.kind == "open_clip":
                feats = self.model.encode_image(x)
            elif self.kind == "transformers":
                feats = _features(self.model.get_image_features(pixel_values=x))
            else:
                feats = self.model(x)
            if not self.device.startswith("cuda"):
                return feats.float().cpu(), lambda: None
            host = torch.empty(feats.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(feats.float(), non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        return host, done.synchronize

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
            tokens = self.tokenizer(list(texts)).to(self.device)
            if self.kind == "transformers":
                feats = _features(self.model.get_text_features(**tokens))
            else:
                feats = self.model.encode_text(tokens)
        return feats.float().cpu()


def default_pretrained(model: str) -> str:
    """The default weights: 'bundled' for bundled models, else open_clip's first tag."""
    if model in BUNDLED:
        return "bundled"
    if model.startswith(("hf-hub:", "local-dir:", "timm:")):
        return "default"
    open_clip = import_open_clip()
    tags = open_clip.list_pretrained_tags_by_model(model)
    return tags[0] if tags else "none"


def _unknown_model_error(model: str, names: list[str]) -> ClipscopeError:
    close = difflib.get_close_matches(model, names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ClipscopeError(f"unknown model {model!r}{hint}; pass an open_clip name (e.g. ViT-B-32), "
                          "hf-hub:org/repo, local-dir:PATH, timm:NAME or clipscope-tiny")


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
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        if model.startswith("transformers:"):
            if weights is not None:
                raise ClipscopeError("--weights applies to open_clip models; for transformers: give the model folder")
            enc = _load_transformers(model[len("transformers:"):], pretrained, device, precision)
        elif model.startswith("timm:"):
            if weights is not None:
                raise ClipscopeError("--weights applies to open_clip models; for timm: pass the file as --reference-pretrained")
            enc = _load_timm(model[5:], pretrained, device, precision)
        else:
            enc = _load_open_clip(model, pretrained, device, precision, weights)
    if enc.provenance["pretrained"] == "none":
        enc.provenance["init_seed"] = int(init_seed)
    return enc


TAG_SETTINGS = ("quick_gelu", "mean", "std", "interpolation", "resize_mode")


def tag_settings(open_clip, model: str, tag: str) -> dict:
    """What an open_clip pretrained tag sets besides its weights (activation and preprocessing)."""
    cfg = open_clip.get_pretrained_cfg(model, tag) or {}
    out = {k: cfg.get(k) for k in TAG_SETTINGS}
    out["quick_gelu"] = bool(out["quick_gelu"])
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


def tag_of_file(open_clip, model: str, sha256: str) -> str | None:
    """The tag whose published file has this SHA-256 (OpenAI's download URLs name it)."""
    for tag in open_clip.list_pretrained_tags_by_model(model):
        if sha256 in (open_clip.get_pretrained_cfg(model, tag) or {}).get("url", "").split("/"):
            return tag
    return None


def _tags_disagree(open_clip, model: str) -> list[str]:
    """The settings in which the model's tags differ (so a bare file's settings are a guess)."""
    tags = open_clip.list_pretrained_tags_by_model(model)
    seen = [tag_settings(open_clip, model, t) for t in tags]
    return [k for k in TAG_SETTINGS if len({json.dumps(s[k]) for s in seen}) > 1]


def _load_open_clip(model: str, pretrained: str | None, device: str, precision: str, weights=None) -> Encoder:
    open_clip = import_open_clip()
    if weights is not None:
        return _load_tag_from_file(open_clip, model, pretrained, Path(weights).expanduser(), device, precision)
    pretrained = pretrained or default_pretrained(model)
    schema = model.split(":", 1)[0] if model.startswith(("hf-hub:", "local-dir:")) else None
    if schema is None and model not in open_clip.list_models():
        raise _unknown_model_error(model, open_clip.list_models())
    weights_path = None
    tag = pretrained
    if schema is not None:
        tag = "default"
        if schema == "local-dir":
            folder = Path(model.split(":", 1)[1]).expanduser()
            if not (folder / "open_clip_config.json").is_file():
                raise ClipscopeError(f"{model}: no open_clip_config.json there; local-dir: needs a folder with "
                                     "open_clip_config.json and a checkpoint (e.g. open_clip_model.safetensors)")
            from open_clip.factory import _find_checkpoint_in_dir

            found = _find_checkpoint_in_dir(folder)
            weights_path = Path(found) if found else None
    elif pretrained.lower() == "none":
        tag = "none"
    elif pretrained == "bundled":
        if model not in BUNDLED:
            raise ClipscopeError(f"{model} has no bundled weights; bundled models: {', '.join(BUNDLED)}")
        weights_path = BUNDLED[model]
        if not weights_path.exists():
            raise ClipscopeError(f"bundled weights {weights_path} are missing; run examples/train_tiny_clip.py "
                                 "or pass --pretrained none")
    elif Path(pretrained).expanduser().is_file():
        weights_path = Path(pretrained).expanduser()
        if model in open_clip.list_models():
            known = tag_of_file(open_clip, model, file_sha256(weights_path))
            if known is not None:  # the file is a tag's published checkpoint: use that tag's settings
                return _load_tag_from_file(open_clip, model, known, weights_path, device, precision,
                                           how=f"the file's SHA-256 is that of open_clip's {model} {known!r}")
    elif os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
        raise ClipscopeError(f"--pretrained {pretrained}: no such checkpoint file")
    else:
        tags = open_clip.list_pretrained_tags_by_model(model) + (["bundled"] if model in BUNDLED else [])
        if pretrained not in tags:
            listed = ", ".join(tags) if tags else "none published"
            raise ClipscopeError(f"unknown pretrained tag {pretrained!r} for {model} (open_clip tags: {listed}); "
                                 "or pass a local checkpoint path, or --pretrained none")
    # open_clip logs its own warnings and errors (random init, failed downloads); the user gets
    # clipscope's one-line error instead.
    logging.disable(logging.CRITICAL)
    try:
        if schema is not None:
            net, _, preprocess = open_clip.create_model_and_transforms(model, device=device)
        elif weights_path is not None:
            # A local file: build the architecture, then load with weights_only=True explicitly
            # (pickled objects in a checkpoint are refused, whatever the library's default).
            net, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=None, device=device)
            load_weights_file(lambda path: open_clip.load_checkpoint(net, path, weights_only=True), weights_path)
        else:
            net, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=None if tag == "none" else tag,
                                                                       device=device)
    except ClipscopeError:
        raise
    except RuntimeError as e:
        if weights_path is not None and ("size mismatch" in str(e) or "Missing key" in str(e) or "Unexpected key" in str(e)):
            raise ClipscopeError(f"checkpoint {weights_path} does not fit {model}: its tensors do not match "
                                 "the architecture; pass the matching --model") from None
        raise _offline_error(model, pretrained, e) from None
    except (OSError, ValueError) as e:
        if weights_path is not None:
            raise ClipscopeError(f"could not read checkpoint {weights_path}: {e}") from None
        raise _offline_error(model, pretrained, e) from None
    except Exception as e:  # huggingface_hub's offline errors have several types across versions
        if type(e).__module__.startswith(("huggingface_hub", "requests", "urllib", "httpx")):
            raise _offline_error(model, pretrained, e) from None
        raise
    finally:
        logging.disable(logging.NOTSET)
    settings_note = None
    if weights_path is not None and schema is None and pretrained != "bundled":
        differ = _tags_disagree(open_clip, model)
        if differ:
            settings_note = (f"a bare checkpoint file: {model}'s architecture defaults were assumed for "
                             f"{', '.join(differ)}, in which its tags differ; if the file came from a tag, pass "
                             f"--pretrained TAG --weights {weights_path}")
    settings = tag_settings(open_clip, model, tag) if schema is None and weights_path is None and tag != "none" else None
    return _finish_open_clip(open_clip, net, preprocess, model,
                             "none" if tag == "none" else (pretrained if schema is None else model),
                             weights_path, device, precision, settings=settings, settings_note=settings_note)


def _load_tag_from_file(open_clip, model: str, tag: str | None, path: Path, device: str, precision: str,
                        how: str | None = None) -> Encoder:
    """Weights of the open_clip tag ``tag`` from a local file, with the tag's own settings."""
    if not path.is_file():
        raise ClipscopeError(f"--weights {path}: no such checkpoint file")
    if model not in open_clip.list_models():
        raise _unknown_model_error(model, open_clip.list_models())
    tags = open_clip.list_pretrained_tags_by_model(model)
    if not tag or tag not in tags:
        listed = ", ".join(tags) if tags else "none published"
        raise ClipscopeError(f"--weights needs --pretrained TAG naming the tag the file came from "
                             f"(open_clip tags of {model}: {listed})")
    settings = tag_settings(open_clip, model, tag)
    logging.disable(logging.CRITICAL)
    try:
        net, _, preprocess = open_clip.create_model_and_transforms(
            model, pretrained=None, device=device, force_quick_gelu=settings["quick_gelu"],
            image_mean=settings["mean"], image_std=settings["std"], image_interpolation=settings["interpolation"],
            image_resize_mode=settings["resize_mode"])
        load_weights_file(lambda p: open_clip.load_checkpoint(net, p, weights_only=True), path)
    except RuntimeError as e:
        raise ClipscopeError(f"checkpoint {path} does not fit {model}: {str(e).splitlines()[0][:160]}; pass the "
                             "matching --model") from None
    finally:
        logging.disable(logging.NOTSET)
    return _finish_open_clip(open_clip, net, preprocess, model, tag, path, device, precision, settings=settings,
                             settings_note=how or f"the settings of open_clip's tag {tag!r}")


def _finish_open_clip(open_clip, net, preprocess, model: str, pretrained: str, weights_path, device: str,
                      precision: str, *, settings: dict | None, settings_note: str | None) -> Encoder:
    net.eval()
    tokenizer = open_clip.get_tokenizer(model)
    cfg = open_clip.get_model_preprocess_cfg(net)
    provenance = {
        "model": model,
        "pretrained": pretrained,
        "weights_file": str(weights_path) if weights_path else None,
        "weights_sha256": file_sha256(weights_path) if weights_path else None,
        "library": "open_clip",
        "open_clip_version": open_clip.__version__,
        "embed_dim": _embed_dim(net),
        "preprocess": json.loads(json.dumps(cfg, default=list)),
    }
    if settings is not None:
        provenance["tag_settings"] = settings
    if settings_note:
        provenance["tag_settings_source"] = settings_note
    return Encoder(net, preprocess, tokenizer, device, precision, provenance)


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


def _embed_dim(net) -> int:
    proj = getattr(net, "text_projection", None)
    if proj is not None:
        return int(proj.shape[1] if not hasattr(proj, "out_features") else proj.out_features)
    return int(getattr(net.visual, "output_dim", 0) or 0)


def _load_timm(name: str, pretrained: str | None, device: str, precision: str) -> Encoder:
    _set_hub_mode()
    import timm

    if not timm.is_model(name.split(".")[0]):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ClipscopeError(f"unknown timm model {name!r}{hint}")
    use_weights = (pretrained or "default").lower() != "none"
    weights_path = None
    if use_weights and pretrained not in (None, "default"):
        if not Path(pretrained).expanduser().is_file():
            raise ClipscopeError(f"--reference-pretrained {pretrained}: no such checkpoint file; give a local file, "
                                 "'default' (timm's weights) or 'none'")
        weights_path = Path(pretrained).expanduser()
    if weights_path is not None:
        net = timm.create_model(name, pretrained=False, num_classes=0)
        try:
            load_weights_file(lambda path: timm.models.load_checkpoint(net, path, strict=False, weights_only=True),
                              weights_path)
        except RuntimeError as e:
            raise ClipscopeError(f"checkpoint {weights_path} does not fit timm:{name}: {str(e).splitlines()[0][:160]}") from None
    else:
        try:
            net = timm.create_model(name, pretrained=use_weights, num_classes=0)
        except Exception as e:
            if use_weights:
                raise _offline_error(f"timm:{name}", pretrained or "default", e, flag="--reference-pretrained") from None
            raise
    net.eval().to(device)
    data_cfg = timm.data.resolve_data_config({}, model=net)
    preprocess = timm.data.create_transform(**data_cfg)
    provenance = {
        "model": f"timm:{name}", "pretrained": (pretrained or "default") if use_weights else "none",
        "weights_file": str(weights_path) if weights_path else None,
        "weights_sha256": file_sha256(weights_path) if weights_path else None,
        "library": "timm", "timm_version": timm.__version__, "embed_dim": int(net.num_features),
        "preprocess": json.loads(json.dumps(data_cfg, default=list)),
    }
    return Encoder(net, preprocess, None, device, precision, provenance, kind="timm")


def _features(out):
    """A get_*_features result: a tensor, or (transformers 5) an output whose pooler_output is
    the projected embedding."""
    import torch

    return out if torch.is_tensor(out) else out.pooler_output


class TransformersImages:
    """PIL image -> the model's own image processor's pixel tensor (picklable, for workers)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image):
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


class TransformersTexts:
    """Texts -> the tokenizer's tensors, padded as the model was trained (SigLIP: to max length)."""

    def __init__(self, tokenizer, padding, max_length):
        self.tokenizer, self.padding, self.max_length = tokenizer, padding, max_length

    def __call__(self, texts):
        return self.tokenizer(list(texts), padding=self.padding, truncation=True, max_length=self.max_length,
                              return_tensors="pt")


def _load_transformers(name: str, revision: str | None, device: str, precision: str) -> Encoder:
    """A transformers model with ``get_image_features`` / ``get_text_features``, from the hub or a
    local folder (``save_pretrained`` of the model, its image processor and its tokenizer)."""
    _set_hub_mode()
    try:
        import transformers
    except ImportError:
        raise ClipscopeError(f"transformers:{name} needs the transformers extra: pip install "
                             "'clipscope-diagnostics[transformers]'") from None
    local = Path(name).expanduser()
    src = str(local) if local.is_dir() else name
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        net = transformers.AutoModel.from_pretrained(src, revision=revision)
        image_processor = transformers.AutoImageProcessor.from_pretrained(src, revision=revision)
        tokenizer = transformers.AutoTokenizer.from_pretrained(src, revision=revision)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = ("no such folder, and " if not local.is_dir() and (name.startswith((".", "/", "~"))) else "")
        raise ClipscopeError(f"transformers:{name}: cannot load it ({hint}{first[:200]}); offline, save the model, "
                             f"its image processor and tokenizer with save_pretrained elsewhere and pass "
                             f"transformers:/path/to/folder") from None
    if not (hasattr(net, "get_image_features") and hasattr(net, "get_text_features")):
        raise ClipscopeError(f"transformers:{name} is a {type(net).__name__}, which has no get_image_features / "
                             "get_text_features; clipscope needs a joint image-text model (CLIPModel, SiglipModel, ...)")
    net.eval().to(device)
    cfg = net.config
    siglip = cfg.model_type.startswith("siglip")
    text_cfg = getattr(cfg, "text_config", None)
    max_length = getattr(text_cfg, "max_position_embeddings", None) or tokenizer.model_max_length
    _check_tokenizer(name, local, tokenizer, cfg)
    weights = weight_files(local) if local.is_dir() else []
    proc = {k: v for k, v in image_processor.to_dict().items()
            if k in ("size", "crop_size", "do_resize", "do_center_crop", "resample", "image_mean", "image_std",
                     "do_rescale", "rescale_factor", "do_normalize", "image_processor_type")}
    provenance = {
        "model": f"transformers:{name}",
        "pretrained": revision or getattr(cfg, "_commit_hash", None) or ("local" if local.is_dir() else "main"),
        "weights_file": str(weights[0]) if len(weights) == 1 else (str(local) if weights else None),
        "weights_sha256": files_sha256(weights) if weights else None,
        "weights_files": len(weights) or None,
        "library": "transformers",
        "transformers_version": transformers.__version__,
        "model_class": type(net).__name__,
        "embed_dim": _transformers_dim(net),
        "preprocess": json.loads(json.dumps({**proc, "text_padding": "max_length" if siglip else "longest",
                                             "text_max_length": max_length}, default=str)),
    }
    return Encoder(net, TransformersImages(image_processor),
                   TransformersTexts(tokenizer, "max_length" if siglip else True, max_length), device, precision,
                   provenance, kind="transformers")


WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.msgpack", "*.h5", "*.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "spiece.model", "tokenizer.model",
                   "sentencepiece.bpe.model")


def weight_files(folder: Path) -> list[Path]:
    """Every file of a model folder that holds (or indexes) weights, sorted: all of them enter
    the content key, so re-saving other weights into a sharded folder changes it."""
    return sorted({p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern) if p.is_file()})


def files_sha256(paths: list[Path]) -> str:
    """One file's SHA-256, or for several the SHA-256 of their names and SHA-256s."""
    if len(paths) == 1:
        return file_sha256(paths[0])
    return hashlib.sha256("".join(f"{p.name}:{file_sha256(p)}\n" for p in paths).encode()).hexdigest()


def _check_tokenizer(name: str, local: Path, tokenizer, cfg) -> None:
    """A tokenizer that does not fit the model maps captions to wrong or identical ids and every
    text metric silently changes: a folder without tokenizer files, or a vocabulary that is
    larger than the model's, or far smaller, is an error."""
    where = f"transformers:{name}"
    fix = "save the model's own tokenizer into the folder (tokenizer.save_pretrained(folder))"
    if local.is_dir() and not any((local / f).is_file() for f in TOKENIZER_FILES):
        raise ClipscopeError(f"{where}: the folder has no tokenizer files ({', '.join(TOKENIZER_FILES)}); {fix}")
    vocab = getattr(getattr(cfg, "text_config", None), "vocab_size", None) or getattr(cfg, "vocab_size", None)
    size = len(tokenizer)
    if vocab and (size > vocab or size < vocab // 2):
        raise ClipscopeError(f"{where}: its tokenizer has {size} tokens and the model's text embedding {vocab}: they do "
                             f"not belong together; {fix}")


def _transformers_dim(net) -> int:
    cfg = net.config
    dim = getattr(cfg, "projection_dim", None)
    if dim:
        return int(dim)
    for sub in ("text_config", "vision_config"):  # SigLIP: no projection, the towers' width
        width = getattr(getattr(cfg, sub, None), "hidden_size", None)
        if width:
            return int(width)
    raise ClipscopeError(f"cannot tell the embedding width of {type(net).__name__}")
