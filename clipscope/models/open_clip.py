"""open_clip models: architecture names, ``hf-hub:`` and ``local-dir:``, the bundled model."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from clipscope.errors import ClipscopeError
from clipscope.models import (
    BUNDLED,
    Encoder,
    _offline_error,
    default_pretrained,
    file_sha256,
    import_open_clip,
    load_weights_file,
    unknown_model_error,
)


def load(model: str, pretrained, device: str, precision: str, weights=None) -> Encoder:
    return _load_open_clip(model, pretrained, device, precision, weights)


def image_features(model, pixels):
    return model.encode_image(pixels)


def text_features(model, tokens, device):
    return model.encode_text(tokens.to(device))


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
        raise unknown_model_error(model, open_clip.list_models())
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
        raise unknown_model_error(model, open_clip.list_models())
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


def _embed_dim(net) -> int:
    proj = getattr(net, "text_projection", None)
    if proj is not None:
        return int(proj.shape[1] if not hasattr(proj, "out_features") else proj.out_features)
    return int(getattr(net.visual, "output_dim", 0) or 0)


