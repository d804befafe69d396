"""clipscope: diagnostics for CLIP-style joint image-text embedding spaces."""

__version__ = "0.1.0"

from clipscope.errors import ClipscopeError  # noqa: E402

__all__ = ["Cache", "ClipscopeError", "Metric", "Report", "__version__", "check", "demo", "from_arrays", "open_cache",
           "run"]
_API = ("run", "open_cache", "from_arrays", "Report", "Metric", "demo")


def __getattr__(name):
    # Lazy, so that `import clipscope` stays cheap (h5py/torch load only when used).
    if name == "Cache":
        from clipscope.cache import Cache

        return Cache
    if name in _API:
        from clipscope import api

        return getattr(api, name)
    if name == "check":
        from clipscope.suite import check

        return check
    raise AttributeError(f"module 'clipscope' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
