"""Device and precision choice, default workers, timestamps: one place for each."""

from __future__ import annotations

import contextlib
import os

from clipscope.errors import ClipscopeError


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; validates explicit choices."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ClipscopeError(f"--device {device} was asked for but CUDA is not available; pass --device cpu or auto")
        return device
    if device == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ClipscopeError("--device mps was asked for but MPS is not available; pass --device cpu or auto")
        return device
    if device == "cpu":
        return device
    raise ClipscopeError(f"unknown --device {device!r}; use auto, cpu, cuda, cuda:N or mps")


def autocast_dtype(precision: str, device: str):
    """The autocast dtype for a precision choice, or None for plain fp32.

    auto: fp32 on CPU (autocast there is slower and less exact), fp16 autocast on CUDA
    (bf16 where the GPU supports it), fp32 elsewhere.
    """
    import torch

    precision = (precision or "auto").lower()
    if precision not in {"auto", "fp32", "fp16", "bf16"}:
        raise ClipscopeError(f"unknown --precision {precision!r}; use auto, fp32, fp16 or bf16")
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    return torch.float16 if precision == "fp16" else torch.bfloat16


def autocast(precision: str, device: str):
    """A context manager: autocast per --precision, or nothing for fp32."""
    import torch

    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def default_workers(device: str = "cpu") -> int:
    """DataLoader workers when --workers is not given.

    On a GPU, decoding must run beside the model: up to 8 worker processes. On the CPU the
    model already uses every core and decoding costs a few percent of a forward pass
    (benchmarks/extract.py), so loading in the main process avoids oversubscription.
    """
    if device.startswith("cuda"):
        return max(1, min(8, (os.cpu_count() or 2) - 1))
    return 0


def utc_now() -> str:
    """The current UTC time, to the second, ISO 8601 (every timestamp clipscope writes)."""
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# gap and uniformity in memory peak at the rows' float32 size plus up to 1.2x that at the sizes where memory
# binds (measured extra: gap 1.17x at 1M pairs, 1.06x at 3M; uniformity 1.05x, 1.02x; 1.48x at 300k, where
# memory does not bind)
IN_MEMORY_PEAK = 2.2


def _size_in_bytes(text: str) -> int:
    units = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30}
    import re

    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in units:
        raise ClipscopeError(f"CLIPSCOPE_MEMORY_BUDGET={text!r}: give bytes or a size such as 8GB or 512MiB")
    return int(float(m.group(1)) * units[m.group(2).lower()])


def memory_budget() -> tuple[int | None, str]:
    """The memory a run may use, and where that figure comes from: CLIPSCOPE_MEMORY_BUDGET when
    set, else the kernel's MemAvailable (None where neither can be read)."""
    env = os.environ.get("CLIPSCOPE_MEMORY_BUDGET")
    if env:
        return _size_in_bytes(env), "CLIPSCOPE_MEMORY_BUDGET allows {}"
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "{} is available"
    except OSError:
        pass
    return None, ""


def require_memory(needed: int, what: str, fix: str) -> None:
    """Refuse, in one line, work that would not fit the memory budget (rather than be killed)."""
    budget, source = memory_budget()
    if budget is not None and needed > budget:
        raise ClipscopeError(f"{what} needs about {readable_size(needed)} of memory and "
                             f"{source.format(readable_size(budget))}; {fix}")


def readable_size(nbytes: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes} B"

