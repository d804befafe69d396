"""transformers models in (#20): tiny random CLIP and SigLIP configs built with transformers
itself (no download), saved to a folder, loaded as transformers:PATH; clipscope's embeddings
must equal the model's own."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

transformers = pytest.importorskip("transformers", reason="the transformers extra is not installed "
                                                          "(pip install 'clipscope-diagnostics[transformers]')")

import torch  # noqa: E402

from clipscope.models import load_encoder  # noqa: E402

WORDS = ["[PAD]", "[UNK]", "a", "photo", "of", "red", "blue", "green", "circle", "square", "triangle", "arrow",
         "yellow", "purple", "cat", "dog", "and", "the", "left", "right", "two", "three", "shape", "."]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: k for k, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                                model_max_length=16)


def _save(kind: str, folder):
    torch.manual_seed(0)
    text = dict(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=16, pad_token_id=0, bos_token_id=None,
                eos_token_id=2)  # 2: CLIP pools at the highest token id (its legacy rule)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)
    if kind == "clip":
        model = transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
        proc = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        model = transformers.SiglipModel(transformers.SiglipConfig(text_config=text, vision_config=vision))
        proc = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    return model.eval()


@pytest.fixture(scope="module", params=["clip", "siglip"])
def tiny(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    return request.param, folder, _save(request.param, folder)


def _images(n=5):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40 + 3 * k, 48, 3), dtype=np.uint8)) for k in range(n)]


def test_embeddings_equal_the_models_own(tiny):
    kind, folder, model = tiny
    enc = load_encoder(f"transformers:{folder}", device="cpu")
    assert enc.kind == "transformers" and enc.provenance["model_class"] == type(model).__name__
    assert enc.provenance["library"] == "transformers" and len(enc.provenance["weights_sha256"]) == 64
    imgs = _images()
    proc = transformers.AutoImageProcessor.from_pretrained(folder)
    pixels = proc(images=imgs, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        own = model.get_image_features(pixel_values=pixels)
        own = own if torch.is_tensor(own) else own.pooler_output
    ours = enc.encode_images(torch.stack([enc.preprocess(im) for im in imgs]))
    torch.testing.assert_close(ours, own.float(), rtol=0, atol=0)
    texts = ["a photo of a red circle", "two blue square and the green triangle", "a cat"]
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    batch = tok(texts, padding="max_length" if kind == "siglip" else True, truncation=True, max_length=16,
                return_tensors="pt")
    if kind == "siglip":  # as trained: no attention mask over the padding (test_siglip_text_tower_runs_as_trained)
        batch.pop("attention_mask")
    with torch.no_grad():
        own_t = model.get_text_features(**batch)
        own_t = own_t if torch.is_tensor(own_t) else own_t.pooler_output
        joint = model(pixel_values=pixels[:3], **batch)
    torch.testing.assert_close(enc.encode_texts(texts), own_t.float(), rtol=0, atol=0)
    # and against the model's forward pass: its normalised embeddings
    unit = ours[:3] / ours[:3].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(unit, joint.image_embeds, rtol=1e-5, atol=1e-6)
    assert enc.provenance["preprocess"]["text_padding"] == ("max_length" if kind == "siglip" else "longest")


def test_commands_run_on_a_transformers_model(tiny, run_cli, tmp_path):
    kind, folder, _ = tiny
    cache = tmp_path / "c.h5"
    code, out, err = run_cli("extract", "--model", f"transformers:{folder}", "--data", "probes:40", "--out", cache, "-q")
    assert code == 0, err
    for args in (("gap", cache),
                 ("robustness", "--model", f"transformers:{folder}", "--data", "probes:24", "--corruptions", "fog",
                  "--severities", "1"),
                 ("compose", "--model", f"transformers:{folder}", "--benchmark", "probes:4")):
        code, out, err = run_cli(*args, "--json", "-")
        assert code == 0, (args, err)
    code, out, err = run_cli("invert", cache, "--model", f"transformers:{folder}", "--mode", "oti", "--json", "-")
    assert code == 1 and "optimises through open_clip" in err


def test_a_missing_model_fails_in_one_line(run_cli, tmp_path):
    code, out, err = run_cli("extract", "--model", f"transformers:{tmp_path / 'nowhere'}", "--data", "probes:4",
                             "--out", tmp_path / "c.h5")
    assert code == 1 and err.startswith("Error: transformers:") and "save_pretrained" in err
    assert len(err.strip().splitlines()) == 1


def test_every_shard_of_sharded_weights_enters_the_content_key(tmp_path, run_cli):
    """Other weights re-saved into a sharded folder must not reuse the old cache (#28)."""
    import json

    folder = tmp_path / "m"
    first = _save("clip", folder)
    (folder / "model.safetensors").unlink()
    first.save_pretrained(folder, max_shard_size="20KB")
    assert len(list(folder.glob("*.safetensors"))) > 1
    runs = []
    for _ in range(2):
        code, out, err = run_cli("gap", "--model", f"transformers:{folder}", "--data", "probes:16",
                                 "--json", "-", "-q")
        assert code == 0, err
        runs.append(json.loads(out))
        with torch.no_grad():  # other weights, same sharded layout
            for p in first.parameters():
                p.add_(0.5 * torch.randn_like(p))
        for shard in folder.glob("model-*.safetensors"):
            shard.unlink()
        first.save_pretrained(folder, max_shard_size="20KB")
    assert runs[0]["model"]["weights_sha256"] != runs[1]["model"]["weights_sha256"]
    assert runs[0]["data"]["cache"] != runs[1]["data"]["cache"]
    assert runs[0]["metrics"]["centroid_distance"]["value"] != runs[1]["metrics"]["centroid_distance"]["value"]


def test_a_folder_without_a_fitting_tokenizer_is_refused(tmp_path, run_cli):
    folder = tmp_path / "m"
    _save("clip", folder)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (folder / f).unlink()
    code, _, err = run_cli("gap", "--model", f"transformers:{folder}", "--data", "probes:8", "--json", "-")
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]  # (save_pretrained's bars came first)
    assert code == 1 and len(errors) == 1 and "no tokenizer files" in errors[0]
    from tokenizers import Tokenizer, models

    big = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({f"w{k}": k for k in range(100)}, unk_token="w0")),
        unk_token="w0", pad_token="w1")
    big.save_pretrained(folder)  # 100 tokens for a 24-token embedding
    code, _, err = run_cli("gap", "--model", f"transformers:{folder}", "--data", "probes:8", "--json", "-")
    assert code == 1 and "do not belong together" in err


def _siglip_text_reference(model, ids):
    """A transcription of SigLIP's text tower as big_vision trains it (and open_clip's SigLIP
    runs it): token and position embeddings, pre-norm transformer blocks with full attention and
    no padding mask, a final layer norm, the last token's state through the head."""
    import math

    tm = model.text_model
    cfg = model.config.text_config
    x = tm.embeddings.token_embedding(ids) + tm.embeddings.position_embedding(torch.arange(ids.shape[1]))[None]
    heads = cfg.num_attention_heads
    act = transformers.activations.ACT2FN[cfg.hidden_act]
    for layer in tm.encoder.layers:
        a = layer.self_attn
        h = layer.layer_norm1(x)
        b, n, d = h.shape

        def split(t, b=b, n=n, d=d):
            return t.view(b, n, heads, d // heads).transpose(1, 2)

        q, k, v = split(a.q_proj(h)), split(a.k_proj(h)), split(a.v_proj(h))
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
        x = x + a.out_proj((w @ v).transpose(1, 2).reshape(b, n, d))
        x = x + layer.mlp.fc2(act(layer.mlp.fc1(layer.layer_norm2(x))))
    return tm.head(tm.final_layer_norm(x)[:, -1, :])


def test_siglip_text_tower_runs_as_trained(tmp_path):
    """SigLIP was trained on texts padded to a fixed length with no attention mask: clipscope's
    text embeddings equal a transcription of that forward pass, and differ from the masked one
    transformers computes when given the tokenizer's mask (#31). CLIP's causal text tower pools a
    token that never sees the padding: there the mask changes nothing, and clipscope keeps it."""
    texts = ["a photo of a red circle", "two blue square", "a cat"]
    model = _save("siglip", tmp_path / "siglip")
    enc = load_encoder(f"transformers:{tmp_path / 'siglip'}", device="cpu")
    assert enc.provenance["preprocess"]["text_attention_mask"] is False
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "siglip")
    batch = tok(texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        reference = _siglip_text_reference(model, batch["input_ids"])
        masked = model.get_text_features(**batch)
        masked = masked if torch.is_tensor(masked) else masked.pooler_output
    ours = enc.encode_texts(texts)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    cos = torch.nn.functional.cosine_similarity(ours, masked)
    assert (cos < 0.99).any(), "the mask must matter for this check to mean anything"
    clip = _save("clip", tmp_path / "clip")
    cb = tok(texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        with_mask = clip.get_text_features(**cb)
        without = clip.get_text_features(input_ids=cb["input_ids"])
    pooled = lambda out: out if torch.is_tensor(out) else out.pooler_output  # noqa: E731
    torch.testing.assert_close(pooled(with_mask), pooled(without), rtol=1e-5, atol=1e-5)


def test_a_tokenizer_that_needs_a_missing_package_is_one_line(tmp_path, run_cli, monkeypatch):
    _save("clip", tmp_path / "m")

    def needs_sentencepiece(*args, **kwargs):
        raise ImportError("SiglipTokenizer requires the SentencePiece library but it was not found")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", needs_sentencepiece)
    code, _, err = run_cli("gap", "--model", f"transformers:{tmp_path / 'm'}", "--data", "probes:8", "--json", "-")
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert code == 1 and len(errors) == 1 and "SentencePiece" in errors[0] and "[transformers]" in errors[0]
