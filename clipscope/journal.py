"""Crash-safe progress for long batch loops (extraction, inversion).

Rows are appended to a raw float32 file and, after each batch is flushed and fsynced, a small
JSON state is replaced atomically (``os.replace``) with the count of committed rows. A crash at
any point leaves at most an uncommitted tail, which the next run truncates.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def atomic_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Journal:
    """Append-only rows for one modality, with an atomically committed row count."""

    def __init__(self, folder: Path, name: str, dim: int):
        self.data = folder / f"{name}.f32"
        self.state_path = folder / f"{name}.json"
        self.dim = dim
        self.state = {"next_index": 0, "rows": 0, "failed": [], "done": False}
        if self.state_path.exists():
            self.state = json.loads(self.state_path.read_text())
        # Drop any tail written after the last commit (a batch that was never acknowledged).
        with open(self.data, "ab") as fh:
            fh.truncate(self.state["rows"] * dim * 4)

    def commit(self, rows: np.ndarray, next_index: int, failed: list) -> None:
        with open(self.data, "ab") as fh:
            fh.write(np.ascontiguousarray(rows, np.float32).tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        self.state["rows"] += len(rows)
        self.state["next_index"] = next_index
        self.state["failed"].extend(failed)
        atomic_json(self.state_path, self.state)

    def finish(self) -> None:
        self.state["done"] = True
        atomic_json(self.state_path, self.state)

    def rows(self) -> np.ndarray:
        n = self.state["rows"]
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.memmap(self.data, dtype=np.float32, mode="r", shape=(n, self.dim))
