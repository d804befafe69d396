"""A local checkpoint keeps its pretrained tag's configuration (QuickGELU, mean, std, resize)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipscope.errors import ClipscopeError
from clipscope.models import import_open_clip, load_encoder

pytestmark = pytest.mark.slow  # ViT-B-32 models

@pytest.fixture(scope="module")
def quickgelu_checkpoint(tmp_path_factory):
    """A random ViT-B-32-quickgelu (the architecture OpenAI's weights were trained with), saved
    as a plain state dict, and its embeddings of fixed inputs."""
    open_clip = import_open_clip()
    torch.manual_seed(0)
    net = open_clip.create_model("ViT-B-32-quickgelu").eval()
    path = tmp_path_factory.mktemp("ckpt") / "vit-b-32-openai.pt"
    torch.save(net.state_dict(), path)
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    tok = open_clip.get_tokenizer("ViT-B-32")(["a photo of a dog", "a red square"])
    with torch.inference_mode():
        return path, pixels, tok, net.encode_image(pixels).numpy(), net.encode_text(tok).numpy()


def test_tag_and_weights_reproduce_the_quickgelu_model(quickgelu_checkpoint):
    path, pixels, tok, img, txt = quickgelu_checkpoint
    enc = load_encoder("ViT-B-32", "openai", weights=path, device="cpu")
    np.testing.assert_array_equal(enc.encode_images(pixels).numpy(), img)
    np.testing.assert_array_equal(enc.model.encode_text(tok).detach().numpy(), txt)
    p = enc.provenance
    assert p["pretrained"] == "openai" and p["weights_sha256"] and p["tag_settings"]["quick_gelu"] is True
    assert p["preprocess"]["interpolation"] == "bicubic"


def test_bare_file_says_what_it_assumed_and_differs(quickgelu_checkpoint):
    path, pixels, _, img, _ = quickgelu_checkpoint
    enc = load_encoder("ViT-B-32", str(path), device="cpu")
    assert "quick_gelu" in enc.provenance["tag_settings_source"] and "--weights" in enc.provenance["tag_settings_source"]
    assert not np.allclose(enc.encode_images(pixels).numpy(), img, atol=1e-4)  # GELU instead of QuickGELU


def test_bare_file_with_a_published_hash_gets_its_tag(quickgelu_checkpoint, monkeypatch):
    from clipscope.models import file_sha256

    path, pixels, _, img, _ = quickgelu_checkpoint
    open_clip = import_open_clip()
    real = open_clip.get_pretrained_cfg
    sha = file_sha256(path)

    def cfg(model, tag):
        out = dict(real(model, tag) or {})
        if tag == "openai":
            out["url"] = f"https://example.invalid/clip/models/{sha}/ViT-B-32.pt"
        return out

    monkeypatch.setattr(open_clip, "get_pretrained_cfg", cfg)
    enc = load_encoder("ViT-B-32", str(path), device="cpu")
    assert enc.provenance["pretrained"] == "openai" and "SHA-256" in enc.provenance["tag_settings_source"]
    np.testing.assert_array_equal(enc.encode_images(pixels).numpy(), img)


def test_weights_need_a_known_tag(quickgelu_checkpoint):
    path = quickgelu_checkpoint[0]
    with pytest.raises(ClipscopeError, match="--pretrained TAG"):
        load_encoder("ViT-B-32", "no-such-tag", weights=path)
    with pytest.raises(ClipscopeError, match="no such checkpoint"):
        load_encoder("ViT-B-32", "openai", weights=path.parent / "missing.pt")
