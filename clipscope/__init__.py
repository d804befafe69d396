"""clipscope: diagnostics for CLIP-style joint image-text embedding spaces."""

__version__ = "0.1.0"

from clipscope.errors import ClipscopeError  # noqa: E402

__all__ = ["Cache", "ClipscopeError", "__version__"]


def __getattr__(name):
    # Lazy, so that `import clipscope` stays cheap (h5py/torch load only when used).
    if name == "Cache":
        from clipscope.cache import Cache

        return Cache
    raise AttributeError(f"module 'clipscope' has no attribute {name!r}")
