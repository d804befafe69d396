"""Reproduce the published ViT-B/32 (OpenAI weights) numbers that the command pages cite but,
offline, cannot check: ARO, Winoground, ImageNet-C (and SugarCrepe and the ImageNet shifts,
whose published values the pages do list). Needs the real weights (open_clip's ``openai``
tag) and the data sets on disk; give whichever you have.

    python benchmarks/published_numbers.py --aro-dir ARO --coco-order KARPATHY.json \\
        --winoground WINOGROUND_DIR --imagenet-c IMAGENET_C_DIR --imagenet-val VAL_DIR

Prints each clipscope number beside where the published one is, to compare by eye: the tables
named in CITED are the references (paper, table, model row, column).
"""

from __future__ import annotations

import argparse
import sys

CITED = {
    "aro_relation": "Yuksekgonul et al. 2023 (ICLR), arXiv 2210.01936 v3, main ARO results table, row CLIP "
                    "(ViT-B/32, OpenAI), column VG-Relation (macro accuracy)",
    "aro_attribution": "same table and row, column VG-Attribution",
    "aro_order_coco_karpathy_test": "same table and row, column COCO-Order",
    "aro_order_flickr30k_karpathy_test": "same table and row, column Flickr30k-Order",
    "winoground_text": "Thrush et al. 2022 (CVPR), main results table, row CLIP (ViT-B/32), column Text",
    "winoground_image": "same table and row, column Image",
    "winoground_group": "same table and row, column Group",
    "imagenet_c_mce": "Hendrycks & Dietterich 2019 define mCE (AlexNet-normalised, %); no ViT-B/32 (OpenAI) value "
                      "is published with the CLIP paper: this run is the reference number",
}


def main(argv=None) -> int:
    import clipscope

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--pretrained", default="openai")
    ap.add_argument("--aro-dir", help="folder with visual_genome_relation.json and visual_genome_attribution.json")
    ap.add_argument("--coco-order", help="coco_karpathy_test.json (images under its folder)")
    ap.add_argument("--flickr-order", help="flickr30k_karpathy_test.json (images under its folder)")
    ap.add_argument("--winoground", help="the Winoground folder")
    ap.add_argument("--imagenet-c", help="ImageNet-C (<corruption>/<severity>/<wnid>/)")
    ap.add_argument("--imagenet-val", help="ImageNet val (for the relative mCE)")
    args = ap.parse_args(argv)
    benchmarks = []
    if args.aro_dir:
        benchmarks += [f"aro-relation:{args.aro_dir}/visual_genome_relation.json",
                       f"aro-attribution:{args.aro_dir}/visual_genome_attribution.json"]
    benchmarks += [f"aro-order:{p}" for p in (args.coco_order, args.flickr_order) if p]
    if args.winoground:
        benchmarks.append(f"winoground:{args.winoground}")
    metrics = {}
    if benchmarks:
        rep = clipscope.run("compose", model=args.model, pretrained=args.pretrained, benchmark=benchmarks, plots=False)
        metrics.update(rep.metrics)
    published = [f"imagenet-c:{args.imagenet_c}"] if args.imagenet_c else []
    published += [f"imagenet:{args.imagenet_val}"] if args.imagenet_val else []
    if published:
        rep = clipscope.run("robustness", model=args.model, pretrained=args.pretrained, benchmark=published,
                            max_images=0, plots=False)
        metrics.update(rep.metrics)
    if not metrics:
        ap.error("give at least one data set")
    for name, m in sorted(metrics.items()):
        value = m.value if hasattr(m, "value") else m["value"]
        print(f"{name:40s} {value if value is None else f'{value:.4f}':>8}  {CITED.get(name, '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
