"""A mixin for modules that cache their native call's per-layer arguments.

A layer's ``forward`` makes one call into ``_C``; converting its buffers to numpy views and
gathering the static arguments on every call costs tens of microseconds, as much as a small
layer's kernel. Modules keep them in ``self._native`` (built lazily by the module) and this
mixin drops the cache whenever the buffers may have moved or been copied apart from it.
"""

from __future__ import annotations

from torch import nn


class NativeArgsCache(nn.Module):
    """Holds ``_native`` (None until the module builds it) and resets it on ``.to()`` /
    ``.float()`` / ... (``_apply``) and when pickled or deep-copied: numpy views must not outlive,
    or be copied apart from, the tensors they view. Subclasses also reset it wherever they
    replace a buffer."""

    _native = None

    def _apply(self, fn, *args, **kwargs):
        self._native = None
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_native"] = None
        return state
