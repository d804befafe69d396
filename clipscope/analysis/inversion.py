"""Modality inversion: OTI and OVI (Mistretta et al., ICLR 2025, "Cross the Gap: Exposing the
Intra-modal Misalignment in CLIP via Modality Inversion"; reference code miccunifi/Cross-the-Gap).

OTI (optimisation-based textual inversion) maps an image feature into the text encoder: per
image, R learnable pseudo-token embeddings (init N(0, 0.02^2)) replace the placeholder in a
template ("a photo of {}") in the token-embedding space, and the text encoder runs as usual
(positional embedding, transformer, final layer norm, end-of-text pooling, projection).

OVI (optimisation-based visual inversion) maps a text feature into the image encoder: per text,
R learnable tokens in the ViT patch-token space, repeated by nearest interpolation to fill every
patch position, then class token, positional embedding, ln_pre, transformer, pooling/ln_post and
projection (the patch convolution is bypassed).

Both minimise ``mean_i (1 - cos(f(tokens_i), target_i))`` (the reference's
CosineEmbeddingLoss with target 1) with AdamW; targets and outputs are L2-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipscope.errors import ClipscopeError

PLACEHOLDER = "£"


@dataclass(frozen=True)
class InversionConfig:
    """Defaults equal the reference's configs (configs/oti/*.yaml, configs/ovi/*.yaml)."""

    tokens: int = 1
    steps: int = 150
    lr: float = 2e-2
    weight_decay: float = 0.01
    batch_size: int = 64
    seed: int = 42
    init_std: float = 0.02
    template: str = "a photo of {}"


OTI_DEFAULTS = InversionConfig(steps=150)
OVI_DEFAULTS = InversionConfig(steps=1000)


def _text_parts(model):
    """(token_embedding, positional_embedding, transformer, attn_mask, ln_final, projection, pool_type, eos_id)."""
    import open_clip

    if isinstance(model, open_clip.model.CLIP):
        return (model.token_embedding, model.positional_embedding, model.transformer, model.attn_mask,
                model.ln_final, model.text_projection, model.text_pool_type, getattr(model, "text_eos_id", None))
    text = getattr(model, "text", None)
    if isinstance(text, open_clip.transformer.TextTransformer) and getattr(text, "cls_emb", None) is None:
        return (text.token_embedding, text.positional_embedding, text.transformer, text.attn_mask,
                text.ln_final, text.text_projection, text.pool_type, getattr(text, "eos_id", None))
    raise ClipscopeError(f"OTI needs an open_clip text transformer (CLIP or CustomTextCLIP with a TextTransformer); "
                         f"{type(model).__name__} with {type(text).__name__ if text is not None else 'no'} text tower "
                         "is not supported")


def encode_text_with_pseudo_tokens(model, tokens, pseudo, placeholder_id: int):
    """Text features with the placeholder token embeddings replaced by ``pseudo`` (B, R, width)."""
    import torch
    from open_clip.transformer import text_global_pool

    tok_emb, pos_emb, transformer, attn_mask, ln_final, proj, pool_type, eos_id = _text_parts(model)
    cast = transformer.get_cast_dtype() if hasattr(transformer, "get_cast_dtype") else pseudo.dtype
    x = tok_emb(tokens).to(cast)
    where = tokens == placeholder_id
    counts = where.sum(1)
    if not bool((counts == pseudo.shape[1]).all()):
        raise ClipscopeError(f"the template must hold the placeholder exactly {pseudo.shape[1]} time(s) after tokenisation")
    x = torch.where(where[..., None], torch.zeros_like(x), x)
    x = x.masked_scatter(where[..., None].expand_as(x), pseudo.to(cast).reshape(-1))
    x = x + pos_emb[: x.shape[1]].to(cast)
    x = transformer(x, attn_mask=attn_mask)
    x = ln_final(x)
    x = text_global_pool(x, tokens, pool_type, eos_token_id=eos_id)
    if proj is not None:
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return x


def _vision(model):
    import open_clip

    visual = getattr(model, "visual", None)
    if not isinstance(visual, open_clip.transformer.VisionTransformer):
        raise ClipscopeError(f"OVI needs an open_clip VisionTransformer image tower; this model has "
                             f"{type(visual).__name__} (ResNet and timm towers are not supported)")
    return visual


def vision_token_width(model) -> int:
    return int(_vision(model).class_embedding.shape[-1])


def encode_image_with_pseudo_tokens(model, pseudo):
    """Image features from ``pseudo`` (B, R, width) tokens repeated over every patch position."""
    import torch
    import torch.nn.functional as F

    v = _vision(model)
    b, r, w = pseudo.shape
    n_patches = v.positional_embedding.shape[0] - 1
    patches = F.interpolate(pseudo[:, None], size=(n_patches, w), mode="nearest")[:, 0]
    cls = v.class_embedding.to(patches.dtype).expand(b, 1, w)
    x = torch.cat([cls, patches], dim=1) + v.positional_embedding.to(patches.dtype)
    x = v.patch_dropout(x)
    x = v.ln_pre(x)
    x = v.transformer(x)
    pooled, _ = v._pool(x)
    if v.proj is not None:
        pooled = pooled @ v.proj
    return pooled


def text_token_width(model) -> int:
    return int(_text_parts(model)[0].weight.shape[1])


def invert_batch(model, targets, *, mode: str, config: InversionConfig, tokenizer=None, device: str = "cpu",
                 precision_dtype=None, generator_seed: int = 0, on_step=None):
    """Optimise pseudo tokens for a batch of target features. ``on_step()`` is called after each
    optimisation step (progress reporting).

    Returns ``(features, per_step_cosine)``: the inverted features (B, D) at the last step and
    the cosine of every row at every step (steps, B) — step 0 is the initial tokens.
    """
    import torch
    import torch.nn.functional as F

    targets = F.normalize(targets.to(device).float(), dim=-1)
    b = targets.shape[0]
    width = text_token_width(model) if mode == "oti" else vision_token_width(model)
    gen = torch.Generator().manual_seed(generator_seed)
    init = torch.randn((b, config.tokens, width), generator=gen) * config.init_std
    pseudo = torch.nn.Parameter(init.to(device))
    opt = torch.optim.AdamW([pseudo], lr=config.lr, weight_decay=config.weight_decay)
    if mode == "oti":
        text = config.template.format(" ".join([PLACEHOLDER] * config.tokens))
        tokens = tokenizer([text] * b).to(device)
        placeholder_id = int(tokenizer([PLACEHOLDER])[0][1])

        def forward():
            return encode_text_with_pseudo_tokens(model, tokens, pseudo, placeholder_id)
    else:
        def forward():
            return encode_image_with_pseudo_tokens(model, pseudo)

    use_amp = precision_dtype is not None and device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and precision_dtype == torch.float16)
    history = np.empty((config.steps + 1, b), np.float32)
    for p in model.parameters():
        p.requires_grad_(False)
    for step in range(config.steps + 1):
        with torch.autocast(device.split(":")[0], dtype=precision_dtype, enabled=use_amp):
            feats = F.normalize(forward().float(), dim=-1)
            cos = (feats * targets).sum(-1)
            loss = (1 - cos).mean()
        history[step] = cos.detach().float().cpu().numpy()
        if step == config.steps:
            break
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if on_step is not None:
            on_step()
    return feats.detach().float().cpu(), history
