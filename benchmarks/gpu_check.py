"""GPU paths in one run (for a machine with CUDA): parity with the CPU numbers, throughput, and
the GPU-only code paths (autocast, pinned memory, GradScaler, corruptions on device).

Usage: python benchmarks/gpu_check.py [--fixtures DIR]
Prints one line per check; exits non-zero if a parity check fails.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def step(name):
    print(f"\n== {name}", flush=True)
    return time.perf_counter()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", type=Path, default=HERE.parent / "tests" / "data" / "mind-the-gap")
    args = ap.parse_args()
    import torch

    from clipscope.analysis import geometry
    from clipscope.linalg import l2_normalize

    assert torch.cuda.is_available(), "no CUDA device"
    print(torch.cuda.get_device_name(0), "torch", torch.__version__, flush=True)
    failures = []

    t = step("parity: uniformity metrics on the Mind-the-Gap fixtures, cuda vs expected.json")
    expected = json.loads((args.fixtures / "expected.json").read_text())
    for name, exp in expected.items():
        a = np.load(args.fixtures / name)
        I, T = l2_normalize(a[0]), l2_normalize(a[1])
        got = geometry.uniformity_metrics(I, T, I, T, device="cuda")
        worst = max(abs(got[k]["value"] - exp["metrics"][k]) for k in got)
        print(f"{name}: max |cuda - expected| = {worst:.2e}")
        if worst > 1e-4:
            failures.append(name)
    print(f"({time.perf_counter() - t:.1f}s)")

    t = step("exact uniformity at 300,000 x 512 per modality on cuda (no sampling)")
    rng = np.random.default_rng(0)
    n, d = 300_000, 512
    I = l2_normalize(rng.normal(size=(n, d)).astype(np.float32) + 0.3)
    T = l2_normalize(rng.normal(size=(n, d)).astype(np.float32) - 0.3)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    m = geometry.uniformity_metrics(I, T, I, T, device="cuda", max_pairs=10**12, block=16384)
    torch.cuda.synchronize()
    print(f"all six metrics exact in {time.perf_counter() - t0:.1f}s: "
          + ", ".join(f"{k}={v['value']:.5f}{'' if v.get('exact', True) else ' (sampled)'}" for k, v in m.items()))
    sub = np.sort(rng.choice(n, 20_000, replace=False))
    cpu = geometry.uniformity(I[sub]).log_with_ci()[0]
    gpu = geometry.uniformity(I[sub], device="cuda").log_with_ci()[0]
    print(f"20k-row subset: cpu {cpu:.7f} vs cuda {gpu:.7f} (diff {abs(cpu - gpu):.1e})")
    if abs(cpu - gpu) > 1e-4:
        failures.append("uniformity cpu/cuda")
    del I, T

    t = step("blind-pair mining benchmark on cuda (N = 60,000)")
    subprocess.run([sys.executable, str(HERE / "blindpairs.py"), "--device", "cuda"], check=False)

    t = step("tensor input path on cuda: nvJPEG + tensor preprocessing vs PIL, cosine per image")
    sys.path.insert(0, str(HERE))
    from extract import make_images

    from clipscope.cache import Cache
    from clipscope.data import open_source
    from clipscope.extract import extract
    from clipscope.models import load_encoder

    make_images(Path("/tmp/gpu-jpegs"), 256)
    for model in ("ViT-B-32", "clipscope-tiny"):
        enc = load_encoder(model, "none" if model != "clipscope-tiny" else None, device="cuda", precision="fp32")
        emb = {}
        for decode in ("cpu", "gpu"):
            out = Path(f"/tmp/gpu-{model}-{decode}.h5")
            extract(open_source("images:/tmp/gpu-jpegs"), enc, out, decode=decode, overwrite=True, progress=False)
            with Cache.open(out) as c:
                emb[decode] = c.normalized_image_embeddings()
        cos = float(np.min(np.sum(emb["cpu"] * emb["gpu"], axis=1)))
        print(f"{model}: min cosine gpu vs PIL path {cos:.6f}  {'ok' if cos >= 0.999 else 'BAD'}")
        if cos < 0.999:
            failures.append(f"tensor path parity {model}")

    t = step("extraction throughput on cuda: forward, PIL path, tensor path, loaders; autocast, 15 workers")
    subprocess.run([sys.executable, str(HERE / "extract.py"), "--models", "ViT-B-32,ViT-B-16,ViT-L-14", "--n", "8192",
                    "--batch-size", "256", "--device", "cuda", "--workers", "15"], check=False)

    t = step("inversion on cuda with autocast (OTI and OVI on the bundled tiny model)")
    from clipscope.analysis.inversion import InversionConfig, invert_batch
    from clipscope.models import load_encoder
    from clipscope.runtime import autocast_dtype

    enc = load_encoder("clipscope-tiny", device="cuda", precision="auto")
    for mode, steps in (("oti", 150), ("ovi", 300)):
        targets = torch.randn(256, 64)
        t0 = time.perf_counter()
        _, hist = invert_batch(enc.model, targets, mode=mode, config=InversionConfig(steps=steps, batch_size=256),
                               tokenizer=enc.tokenizer, device="cuda", precision_dtype=autocast_dtype("auto", "cuda"))
        print(f"{mode}: 256 rows x {steps} steps in {time.perf_counter() - t0:.1f}s, cosine {hist[0].mean():.3f} -> "
              f"{hist[-1].mean():.3f}")
        if not hist[-1].mean() > hist[0].mean() + 0.2:
            failures.append(f"{mode} on cuda")

    t = step("the 15 corruptions on cuda tensors (batch of 64 at 224 px, severity 3)")
    from clipscope.robustness import CORRUPTIONS, corrupt_batch

    x = torch.rand(64, 3, 224, 224, device="cuda")
    for name in CORRUPTIONS:
        t0 = time.perf_counter()
        y = corrupt_batch(x, name, 3, np.random.default_rng(0))
        torch.cuda.synchronize()
        ok = y.shape == x.shape and y.device.type == "cuda" and float(y.min()) >= 0 and float(y.max()) <= 1
        print(f"{name:<18} {1000 * (time.perf_counter() - t0):8.1f} ms  {'ok' if ok else 'BAD'}")
        if not ok:
            failures.append(name)

    t = step("end to end: clipscope demo on cuda")
    t0 = time.perf_counter()
    code = subprocess.run([sys.executable, "-m", "clipscope.cli.main", "demo", "--out", "/tmp/gpu-demo", "--device",
                           "cuda", "--overwrite"], check=False).returncode
    print(f"demo exit {code} in {time.perf_counter() - t0:.1f}s")
    code2 = subprocess.run([sys.executable, "-m", "clipscope.cli.main", "compare", str(HERE.parent / "reports" / "baseline"),
                            "/tmp/gpu-demo"], check=False).returncode
    print(f"compare against the CPU baseline: exit {code2}")
    print("\nFAILURES:", failures if failures else "none")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
