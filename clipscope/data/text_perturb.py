"""Caption normalisation and word-order perturbations, as ARO's reference applies them
(mertyg/vision-language-models-are-bows: ``dataset_zoo/retrieval.py`` ``pre_caption`` and
``dataset_zoo/perturbations.py`` ``TextShuffler``), seeded.

As in the reference, each perturbation runs on the raw caption (case and punctuation kept) and
``pre_caption`` is applied to its output: the trigram shuffles cut ``nltk.word_tokenize``'s
tokens, in which punctuation is a token of its own, and the noun/adjective shuffles the
tagger's tokens. Deliberate deviations, both forced: the reference draws its shuffles from the
unseeded global ``random`` / ``np.random`` (its strings cannot be reproduced; here each is drawn
from a given generator), and ``word_tokenize`` first splits sentences with Punkt, whose data is
a download; here the caption is tokenised as one line (``preserve_line=True``), which differs
only for a caption of several sentences, where a period inside it stays on its word. The
noun/adjective shuffles need a part-of-speech tagger: spaCy's ``en_core_web_sm`` when it is
installed (:func:`pos_tagger`).
"""

from __future__ import annotations

import re

import numpy as np

NOUN_TAGS = ("NN", "NNS", "NNP", "NNPS")
ADJ_TAGS = ("JJ", "JJR", "JJS")


def pre_caption(caption: str, max_words: int = 50) -> str:
    """Lower-case; ``.!"()*#:;~`` become spaces; runs of whitespace become one space; stripped;
    truncated to ``max_words`` words (ARO's ``pre_caption``; its order benchmarks use 30)."""
    caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
    caption = re.sub(r"\s{2,}", " ", caption)
    caption = caption.rstrip("\n").strip(" ")
    words = caption.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else caption


def word_tokens(caption: str) -> list[str]:
    """``nltk.word_tokenize`` of one line (Treebank rules: punctuation and clitics are tokens)."""
    from nltk.tokenize import word_tokenize

    return word_tokenize(caption, preserve_line=True)


def shuffle_trigrams(words: list[str], rng: np.random.Generator) -> list[str]:
    """ARO's ``shuffle_trigrams``: cut the words into consecutive trigrams (the last may be
    shorter) and shuffle their order."""
    trigrams = [words[i:i + 3] for i in range(0, len(words), 3)]
    return [w for k in rng.permutation(len(trigrams)) for w in trigrams[k]]


def shuffle_within_trigrams(words: list[str], rng: np.random.Generator) -> list[str]:
    """ARO's ``shuffle_within_trigrams``: shuffle the words inside each consecutive trigram."""
    return [w for i in range(0, len(words), 3) for w in rng.permutation(words[i:i + 3]).tolist()]


def reorder_trigrams(text: str, rng: np.random.Generator, tries: int = 20) -> str:
    """``text`` with its word trigrams shuffled (:func:`shuffle_trigrams`), redrawn until the
    order changes (a text of one trigram comes back as it is)."""
    words = text.split()
    for _ in range(tries):
        out = " ".join(shuffle_trigrams(words, rng))
        if out != text:
            return out
    return text


def pos_tagger():
    """spaCy's ``en_core_web_sm`` when installed (for the noun/adjective shuffles), else None."""
    try:
        import spacy

        return spacy.load("en_core_web_sm")
    except (ImportError, OSError):
        return None


def shuffle_nouns_and_adj(tokens: list[str], tags: list[str], rng: np.random.Generator) -> list[str]:
    """ARO's ``shuffle_nouns_and_adj``: permute the nouns among themselves, then the adjectives."""
    text = np.array(tokens, dtype=object)
    for group in (NOUN_TAGS, ADJ_TAGS):
        idx = [i for i, t in enumerate(tags) if t in group]
        text[idx] = rng.permutation(text[idx])
    return text.tolist()


def shuffle_allbut_nouns_and_adj(tokens: list[str], tags: list[str], rng: np.random.Generator) -> list[str]:
    """ARO's ``shuffle_allbut_nouns_and_adj``: permute every word that is neither noun nor adjective."""
    text = np.array(tokens, dtype=object)
    idx = [i for i, t in enumerate(tags) if t not in NOUN_TAGS + ADJ_TAGS]
    text[idx] = rng.permutation(text[idx])
    return text.tolist()


def order_options(caption: str, rng: np.random.Generator, tagger=None, max_words: int = 30) -> tuple[list[str], list[str]]:
    """ARO order benchmark options for one caption: ``[pre_caption(caption)]`` followed by
    ``pre_caption(perturbation)`` for each perturbation, and the perturbations' names. Without a
    tagger only the two trigram perturbations run."""
    words = word_tokens(caption)
    perturbed, names = [], []
    if tagger is not None:
        doc = tagger(caption)
        tokens, tags = [t.text for t in doc], [t.tag_ for t in doc]
        perturbed += [shuffle_nouns_and_adj(tokens, tags, rng), shuffle_allbut_nouns_and_adj(tokens, tags, rng)]
        names += ["shuffle_nouns_and_adj", "shuffle_allbut_nouns_and_adj"]
    perturbed += [shuffle_within_trigrams(words, rng), shuffle_trigrams(words, rng)]
    names += ["shuffle_within_trigrams", "shuffle_trigrams"]
    return [pre_caption(caption, max_words)] + [pre_caption(" ".join(p), max_words) for p in perturbed], names
