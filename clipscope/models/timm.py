"""timm image encoders: the vision-only references of blind-pair mining."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from clipscope.errors import ClipscopeError
from clipscope.models import Encoder, _offline_error, _set_hub_mode, file_sha256, load_weights_file


def load(name: str, pretrained, device: str, precision: str, weights=None) -> Encoder:
    return _load_timm(name, pretrained, device, precision)


def image_features(model, pixels):
    return model(pixels)


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


