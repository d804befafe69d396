"""Train the bundled tiny CLIP (``clipscope-tiny``) on the procedural probe set.

Seeded and CPU-only: ``python examples/train_tiny_clip.py`` writes
``clipscope/models/assets/clipscope-tiny.safetensors`` (fp16 weights, open_clip format) and
``clipscope-tiny.train.json`` (the run's settings and its held-out zero-shot accuracy).

The model is the open_clip config ``clipscope/models/assets/clipscope-tiny.json`` trained with
open_clip's own contrastive loss (``open_clip.loss.ClipLoss``). Captions mix the full scene
description with partial ones ("a photo of a red circle.") so that both the zero-shot class
prompts and the MMVP-style statements are in distribution.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

ASSETS = Path(__file__).resolve().parents[1] / "clipscope" / "models" / "assets"


def caption_variant(sc, rng) -> str:
    from clipscope.data.probes import COUNTS

    full = sc.caption
    short = f"{sc.colour} {sc.shape}"
    choice = rng.integers(6)
    if choice == 0:
        return full
    if choice == 1:
        return "a photo of " + full
    if choice == 2:
        return f"a photo of a {short}."
    if choice == 3:
        noun = sc.shape + ("s" if sc.count > 1 else "")
        return f"{COUNTS[sc.count - 1]} {sc.colour} {noun}"
    if choice == 4:
        pointing = f" pointing {sc.orientation}" if sc.shape == "arrow" else ""
        return f"a {sc.size} {sc.texture} {sc.shape}{pointing}"
    return f"{sc.colour} {sc.shape}s on the {sc.position}"


def render_set(seed: int, n: int, preprocess):
    from clipscope.data import probes

    images, scenes = [], []
    for i in range(n):
        sc = probes.scene(seed, i)
        images.append(preprocess(probes.render(sc, seed=seed, index=i)))
        scenes.append(sc)
    return torch.stack(images), scenes


@torch.inference_mode()
def zero_shot_accuracy(model, tokenizer, images, scenes) -> float:
    from clipscope.data.probes import CLASSNAMES

    text = model.encode_text(tokenizer([f"a photo of a {c}." for c in CLASSNAMES]), normalize=True)
    feats = torch.cat([model.encode_image(images[i:i + 512], normalize=True) for i in range(0, len(images), 512)])
    pred = (feats @ text.T).argmax(1).numpy()
    labels = np.array([s.label for s in scenes])
    return float((pred == labels).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=24000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=28 * 60, help="seconds; stop early (cosine schedule kept)")
    ap.add_argument("--out", type=Path, default=ASSETS)
    args = ap.parse_args()

    import open_clip
    from open_clip.loss import ClipLoss
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    open_clip.add_model_config(ASSETS / "clipscope-tiny.json")
    model, _, preprocess = open_clip.create_model_and_transforms("clipscope-tiny", pretrained=None)
    tokenizer = open_clip.get_tokenizer("clipscope-tiny")

    t0 = time.time()
    train_images, train_scenes = render_set(args.seed, args.n_train, preprocess)
    eval_images, eval_scenes = render_set(args.seed + 1, args.n_eval, preprocess)  # held out: another seed
    print(f"rendered {args.n_train}+{args.n_eval} probes in {time.time() - t0:.0f}s", flush=True)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = min(200, args.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, args.steps - warmup))))
    loss_fn = ClipLoss()
    model.train()
    t0 = time.time()
    step = 0
    for step in range(args.steps):
        idx = rng.integers(0, args.n_train, size=args.batch_size)
        images = train_images[idx]
        # Light augmentation: horizontal flips would change left/right, so only brightness jitter.
        images = images * (1 + 0.1 * torch.randn(len(idx), 1, 1, 1))
        texts = tokenizer([caption_variant(train_scenes[i], rng) for i in idx])
        img_f = model.encode_image(images, normalize=True)
        txt_f = model.encode_text(texts, normalize=True)
        loss = loss_fn(img_f, txt_f, model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
        if time.time() - t0 > args.time_limit:
            print("time limit reached", flush=True)
            break
    model.eval()
    acc = zero_shot_accuracy(model, tokenizer, eval_images, eval_scenes)
    print(f"held-out zero-shot accuracy: {acc:.4f} (chance {1 / 24:.4f})", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out / "clipscope-tiny.safetensors"))
    info = {
        "model": "clipscope-tiny", "seed": args.seed, "n_train": args.n_train, "steps_run": step + 1,
        "steps_planned": args.steps, "batch_size": args.batch_size, "lr": args.lr,
        "train_seconds": round(time.time() - t0, 1), "held_out_seed": args.seed + 1, "n_eval": args.n_eval,
        "held_out_zero_shot_accuracy": round(acc, 4), "chance": round(1 / 24, 4),
        "prompt": "a photo of a {c}.", "classes": 24, "weights_dtype": "float16",
    }
    (args.out / "clipscope-tiny.train.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
