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

from clipscope.fileio import atomic_json, disk_error, fault_point

KEPT = "the progress so far is kept: rerun the same command to resume"


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
        """Append ``rows`` and then, in one atomic step, record them as committed."""
        try:
            with open(self.data, "ab") as fh:
                fh.write(np.ascontiguousarray(rows, np.float32).tobytes())
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as e:
            # The uncommitted tail is dropped by the next run; what was committed stays.
            raise disk_error(e, self.data, KEPT) or e from None
        fault_point("journal-appended")
        self.state["rows"] += len(rows)
        self.state["next_index"] = next_index
        self.state["failed"].extend(failed)
        atomic_json(self.state_path, self.state, keep=KEPT)
        fault_point("journal-committed")

    def finish(self) -> None:
        self.state["done"] = True
        atomic_json(self.state_path, self.state)

    def rows(self) -> np.ndarray:
        n = self.state["rows"]
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.memmap(self.data, dtype=np.float32, mode="r", shape=(n, self.dim))
