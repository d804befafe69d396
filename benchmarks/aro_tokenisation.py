"""How much ARO's tokenisation matters: the order perturbations of a few hundred COCO-style
captions cut nltk tokens of the raw caption (the reference, and clipscope now) versus the
whitespace words after punctuation removal (clipscope before). Prints how many perturbed
strings differ, with the same seeded shuffles, per perturbation.

    python benchmarks/aro_tokenisation.py [--captions 300]
"""

from __future__ import annotations

import argparse

import numpy as np

from clipscope.data.text_perturb import order_options, pre_caption, shuffle_trigrams, shuffle_within_trigrams

SUBJECTS = ["A man", "A woman", "Two dogs", "A young boy", "A group of people", "The cat", "A skier", "An old truck"]
ACTIONS = ["riding a horse", "sitting on a bench", "standing next to a red car", "holding an umbrella",
           "eating a slice of pizza", "playing with a frisbee", "walking down the street", "parked by the curb"]
PLACES = ["on the beach", "in a park", "near the water", "at night", "in the snow", "outside a store"]
FORMS = ["{s} {a} {p}.", "{s}, {a}, {p}.", "{s} {a} {p}", "{s} is {a} {p}.", "{s} {a}; {p}.",
         "{s} ({a}) {p}.", "{s}'s friend {a} {p}.", "{s} {a} {p}!"]


def captions(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    return [pick(FORMS).format(s=pick(SUBJECTS), a=pick(ACTIONS), p=pick(PLACES)) for _ in range(n)]


def old_options(caption: str, rng: np.random.Generator) -> list[str]:
    """clipscope before: whitespace words of the pre-captioned text."""
    words = pre_caption(caption, 10_000).split()
    return [pre_caption(" ".join(p), 30) for p in (shuffle_within_trigrams(words, rng), shuffle_trigrams(words, rng))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--captions", type=int, default=300)
    args = ap.parse_args()
    caps = captions(args.captions)
    changed = {"shuffle_within_trigrams": 0, "shuffle_trigrams": 0}
    punctuated = sum(any(c in cap for c in ",;()'!.") for cap in caps)
    for k, cap in enumerate(caps):
        new, names = order_options(cap, np.random.default_rng([0, k]))
        old = old_options(cap, np.random.default_rng([0, k]))
        for name, a, b in zip(names, new[1:], old):
            changed[name] += a != b
    print(f"{len(caps)} captions, {punctuated} with punctuation")
    for name, n in changed.items():
        print(f"{name}: {n} of {len(caps)} perturbed strings differ ({100 * n / len(caps):.1f} %)")


if __name__ == "__main__":
    main()
