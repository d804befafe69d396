"""The modality gap after every epoch of a training loop, with clipscope as a library.

Fine-tunes the bundled tiny CLIP on procedural probes with open_clip's contrastive loss and,
after each epoch, embeds a fixed held-out probe set and asks clipscope for the gap (no files
are written). Runs offline on a CPU in about half a minute:

    python examples/gap_per_epoch.py --epochs 3 --steps 20
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import clipscope
from clipscope.data import open_source
from clipscope.models import load_encoder


def embed(encoder, source) -> tuple[np.ndarray, np.ndarray]:
    """Image and text embeddings of a data source, row i paired with row i."""
    pixels = torch.stack([encoder.preprocess(source.load_image(i)) for i in range(len(source.image_ids))])
    return encoder.encode_images(pixels).numpy(), encoder.encode_texts_batched(source.texts)


def main(epochs: int, steps: int, batch: int, seed: int) -> list[float]:
    import open_clip

    torch.manual_seed(seed)
    encoder = load_encoder("clipscope-tiny", device="cpu")  # the bundled weights
    model = encoder.model
    for p in model.parameters():
        p.requires_grad_(True)
    loss_fn = open_clip.ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    held_out = open_source("probes:128:99")  # fixed evaluation probes (another seed than training)
    gaps = []
    for epoch in range(epochs):
        model.train()
        for step in range(steps):
            train = open_source(f"probes:{batch}:{1000 * epoch + step}")
            pixels = torch.stack([encoder.preprocess(train.load_image(i)) for i in range(batch)])
            img = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1)
            txt = torch.nn.functional.normalize(model.encode_text(encoder.tokenizer(train.texts)), dim=-1)
            loss = loss_fn(img, txt, model.logit_scale.exp())
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        I, T = embed(encoder, held_out)
        report = clipscope.run("gap", clipscope.from_arrays(I, T), plots=False)
        gap = report.metrics["centroid_distance"]
        gaps.append(gap.value)
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}  centroid distance {gap.value:.4f} "
              f"[{gap.ci95[0]:.4f}, {gap.ci95[1]:.4f}]  paired cosine {report.metrics['paired_cosine'].value:.4f}")
    return gaps


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.epochs, a.steps, a.batch, a.seed)
