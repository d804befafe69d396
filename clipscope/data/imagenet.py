"""ImageNet naming and the published evaluation sets' layouts.

- Class names: the validation folders are WordNet ids (``n01440764``); their names are OpenAI's
  (open_clip ``IMAGENET_CLASSNAMES``, in the order of the sorted 1,000 ids, which timm ships as
  ``imagenet_synsets.txt``). Prompt templates: OpenAI's 80 (``OPENAI_IMAGENET_TEMPLATES``) or
  the 7 "simple" ones, ensembled as CLIP_benchmark does (each prompt normalised, averaged,
  renormalised).
- The 200-class subsets of ImageNet-R (Hendrycks et al. 2021, hendrycks/imagenet-r) and
  ImageNet-A (Hendrycks et al. 2021, hendrycks/natural-adv-examples) as their authors publish
  them; timm ships the same lists (``imagenet_r_synsets.txt``, ``imagenet_a_synsets.txt``).
  Their logits are restricted to the subset, as in the authors' evaluation.
- Layouts: ImageNet val, -Sketch, -R and -A hold one folder per WordNet id; ImageNet-V2 one
  folder per class index (``0`` ... ``999``); ImageNet-C ``<corruption>/<severity>/<wnid>/``.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from clipscope.errors import ClipscopeError

WNID = re.compile(r"n\d{8}")
SHIFTS = ("imagenet-v2", "imagenet-sketch", "imagenet-r", "imagenet-a")
SUBSETS = {"imagenet-r": "imagenet_r_synsets.txt", "imagenet-a": "imagenet_a_synsets.txt"}
# The corruption families of Hendrycks & Dietterich 2019 (for the summary plot).
FAMILIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}


def _timm_list(name: str) -> list[str]:
    """A list timm ships, read from its package folder without importing timm (which imports
    torch: seconds in every process that only opens a folder)."""
    import importlib.util

    spec = importlib.util.find_spec("timm")
    path = Path(spec.origin).parent / "data" / "_info" / name if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ClipscopeError(f"timm's {name} is missing; reinstall timm (it comes with open_clip)")
    return path.read_text().split()


@functools.cache
def wnids() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k WordNet ids in class-index order."""
    return tuple(_timm_list("imagenet_synsets.txt"))


@functools.cache
def subset_wnids(name: str) -> tuple[str, ...]:
    """The published class subset of ``name`` (imagenet-r, imagenet-a), or all 1,000."""
    return tuple(_timm_list(SUBSETS[name])) if name in SUBSETS else wnids()


def classnames_of(ids) -> list[str]:
    """OpenAI's ImageNet class names of WordNet ids."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    index = {w: k for k, w in enumerate(wnids())}
    return [IMAGENET_CLASSNAMES[index[w]] for w in ids]


def is_imagenet_folders(names) -> bool:
    """Every class folder is an ImageNet-1k WordNet id (the whole set or a subset)."""
    names = list(names)
    if not names or not all(WNID.fullmatch(n) for n in names):  # most folders: no list to read
        return False
    known = set(wnids())
    return all(n in known for n in names)


def templates(kind: str) -> list[str]:
    """``openai`` (80) or ``simple`` (7) ImageNet templates, as strings with ``{c}``."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    chosen = {"openai": OPENAI_IMAGENET_TEMPLATES, "simple": SIMPLE_IMAGENET_TEMPLATES}[kind]
    return [t("{c}") for t in chosen]


def read_classnames(path: str | Path) -> dict[str, str]:
    """A folder -> class name map: a JSON object, or a text file of ``folder name...`` lines
    (the first whitespace separates the folder from the name)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ClipscopeError(f"--classnames {path}: cannot read it ({e.strerror}); give a JSON or two-column text file") from None
    except UnicodeDecodeError:
        raise ClipscopeError(f"--classnames {path} is not UTF-8 text; save it as UTF-8") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ClipscopeError(f"--classnames {path}: not valid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ClipscopeError(f"--classnames {path}: the JSON must be an object of folder -> class name strings")
        return {str(k): v for k, v in data.items()}
    out = {}
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            raise ClipscopeError(f"--classnames {path}:{k}: expected 'folder class name', got {line.strip()!r}")
        out[parts[0]] = parts[1].strip()
    if not out:
        raise ClipscopeError(f"--classnames {path} holds no 'folder class name' lines")
    return out


def folder_classnames(folders: list[str], mapping: dict[str, str] | None = None) -> tuple[list[str], str]:
    """Class names for class folders and where they came from: ``mapping`` (every folder must
    be in it), ImageNet's names for WordNet-id folders, else the folder name (``_`` -> space)."""
    if mapping is not None:
        missing = [f for f in folders if f not in mapping]
        if missing:
            raise ClipscopeError(f"--classnames has no name for folder(s) {', '.join(missing[:5])}"
                                 f"{' ...' if len(missing) > 5 else ''}; add them to the file")
        return [mapping[f] for f in folders], "file"
    if is_imagenet_folders(folders):
        return classnames_of(folders), "imagenet"
    return [f.replace("_", " ") for f in folders], "folders"


def _images_under(d: Path) -> list[Path]:
    from clipscope.data import IMAGE_EXTENSIONS

    return sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)


def class_folder_set(root: Path, name: str) -> tuple[list[Path], list[str]]:
    """(image files, their WordNet ids) of a folder-per-class set; V2's numeric folders become ids."""
    if not root.is_dir():
        raise ClipscopeError(f"--benchmark {name}:{root}: no such folder")
    paths, ids = [], []
    classes = set(subset_wnids(name))
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        wnid = d.name
        if name == "imagenet-v2" and d.name.isdigit():
            k = int(d.name)
            if not 0 <= k < 1000:
                raise ClipscopeError(f"--benchmark {name}:{root}: folder {d.name} is no class index (0-999)")
            wnid = wnids()[k]
        elif wnid not in classes:
            raise ClipscopeError(f"--benchmark {name}:{root}: folder {d.name} is not one of {name}'s "
                                 f"{len(classes)} classes (folders are WordNet ids"
                                 f"{' or class indices 0-999' if name == 'imagenet-v2' else ''})")
        files = _images_under(d)
        paths += files
        ids += [wnid] * len(files)
    if not paths:
        raise ClipscopeError(f"--benchmark {name}:{root} holds no images in class folders")
    return paths, ids


EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")  # ImageNet-C's held-out four


def imagenet_c_cells(root: Path) -> tuple[dict[tuple[str, int], Path], list[str]]:
    """The (corruption, severity) folders of an ImageNet-C tree that are on disk, and the
    folders that are not corruptions of ImageNet-C (left out, and named in the report)."""
    from clipscope.robustness.corruptions import CORRUPTIONS

    if not root.is_dir():
        raise ClipscopeError(f"--benchmark imagenet-c:{root}: no such folder")
    cells, ignored = {}, []
    for c in sorted(p for p in root.iterdir() if p.is_dir()):
        if c.name not in CORRUPTIONS and c.name not in EXTRA_CORRUPTIONS:
            ignored.append(c.name)
            continue
        for s in sorted(p for p in c.iterdir() if p.is_dir()):
            if s.name in {"1", "2", "3", "4", "5"}:
                cells[(c.name, int(s.name))] = s
    if not cells:
        raise ClipscopeError(f"--benchmark imagenet-c:{root}: expected <corruption>/<severity 1-5>/<wnid>/ folders "
                             "named after ImageNet-C's corruptions, found none")
    return cells, ignored
