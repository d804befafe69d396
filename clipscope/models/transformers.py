"""Hugging Face transformers models: anything with ``get_image_features`` and
``get_text_features``, with the model's own image processor and tokenizer."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from clipscope.errors import ClipscopeError
from clipscope.models import Encoder, _set_hub_mode, file_sha256


def load(name: str, revision, device: str, precision: str, weights=None) -> Encoder:
    return _load_transformers(name, revision, device, precision)


def image_features(model, pixels):
    return _features(model.get_image_features(pixel_values=pixels))


def text_features(model, tokens, device):
    return _features(model.get_text_features(**tokens.to(device)))


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
    """Texts -> the tensors the text tower was trained on: SigLIP's texts padded to the maximum
    length and passed without an attention mask (big_vision's text encoder, and open_clip's
    SigLIP, attend over the padding: a mask changes the embeddings); CLIP's padded to the longest
    with the tokenizer's mask (its causal mask makes the padding invisible to the pooled token)."""

    def __init__(self, tokenizer, padding, max_length, mask: bool = True):
        self.tokenizer, self.padding, self.max_length, self.mask = tokenizer, padding, max_length, mask

    def __call__(self, texts):
        batch = self.tokenizer(list(texts), padding=self.padding, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        if not self.mask:
            batch.pop("attention_mask", None)
        return batch


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
    except ImportError as e:  # e.g. SigLIP's sentencepiece tokenizer without sentencepiece
        raise ClipscopeError(f"transformers:{name}: its tokenizer needs a package that is not installed ({e}); "
                             "pip install 'clipscope-diagnostics[transformers]'") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # transformers' many ways to say "cannot"
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
                                             "text_attention_mask": not siglip, "text_max_length": max_length},
                                            default=str)),
    }
    return Encoder(net, TransformersImages(image_processor),
                   TransformersTexts(tokenizer, "max_length" if siglip else True, max_length, mask=not siglip), device,
                   precision, provenance, kind="transformers")


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
