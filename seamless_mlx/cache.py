"""Key/value caches for the text decoder.

Self-attention keys/values live in buffers pre-allocated in steps of ``step`` positions (as in
mlx-lm's ``KVCache``), so a decode step writes in place instead of concatenating.  Cross-attention
keys/values are computed once from the encoder output and never change.

A cache serves two kinds of step.  Eager steps (:meth:`KVCache.update_and_fetch`) write at the
host-side ``offset`` and attend to the filled positions only.  Fixed-shape steps (a cache made by
:meth:`KVCache.fixed`) write at a position held in an array and hand back the whole buffers, so
that every step of one capacity has the same shapes and one compiled graph serves them all; their
mask hides the positions not yet written.
"""

from __future__ import annotations

from typing import Optional

import mlx.core as mx


class KVCache:
    """Growing self-attention cache ``[B, H, capacity, Dh]``; ``offset`` positions are filled."""

    step = 256

    def __init__(self):
        self.keys: Optional[mx.array] = None
        self.values: Optional[mx.array] = None
        self.offset = 0
        self.start: Optional[mx.array] = None  # set on fixed-shape views: where the step writes

    @property
    def capacity(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    def reserve(self, B: int, H: int, L: int, D: int, dtype) -> None:
        """Make room for ``L`` more positions, growing by whole ``step`` blocks when needed."""
        prev = self.offset
        if self.keys is not None and prev + L <= self.keys.shape[2]:
            return
        n_steps = (self.step + L - 1) // self.step
        shape = (B, H, n_steps * self.step, D)
        new_k = mx.zeros(shape, dtype)
        new_v = mx.zeros(shape, dtype)
        if self.keys is not None:
            if prev % self.step != 0:
                self.keys = self.keys[..., :prev, :]
                self.values = self.values[..., :prev, :]
            self.keys = mx.concatenate([self.keys, new_k], axis=2)
            self.values = mx.concatenate([self.values, new_v], axis=2)
        else:
            self.keys, self.values = new_k, new_v

    def update_and_fetch(self, keys: mx.array, values: mx.array):
        """Store ``keys``/``values`` ``[B, H, L, Dh]`` after what is cached.

        Eager cache: returns the filled positions ``[B, H, offset, Dh]``.  Fixed-shape view:
        writes at ``start`` and returns the whole buffers ``[B, H, capacity, Dh]``."""
        if self.start is not None:
            self.keys = mx.slice_update(self.keys, keys, self.start, axes=(2,))
            self.values = mx.slice_update(self.values, values, self.start, axes=(2,))
            return self.keys, self.values
        B, H, L, D = keys.shape
        self.reserve(B, H, L, D, keys.dtype)
        prev = self.offset
        self.offset += L
        self.keys[..., prev : self.offset, :] = keys
        self.values[..., prev : self.offset, :] = values
        return self.keys[..., : self.offset, :], self.values[..., : self.offset, :]

    @staticmethod
    def fixed(keys: mx.array, values: mx.array, start: mx.array) -> "KVCache":
        """A fixed-shape view of buffers ``[B, H, capacity, Dh]`` whose next write goes to position
        ``start`` (an int32 array, so that a compiled step takes it as an input)."""
        view = KVCache()
        view.keys, view.values, view.start = keys, values, start
        return view

    def reorder(self, index: mx.array):
        """Gather batch rows (beam search): ``index`` ``[B']`` of source rows."""
        if self.keys is not None:
            self.keys = self.keys[index]
            self.values = self.values[index]

    @property
    def state(self):
        return self.keys, self.values


class CrossCache:
    """Encoder keys/values for one decoder layer, computed once per source."""

    def __init__(self, keys: mx.array, values: mx.array):
        self.keys = keys
        self.values = values

    def reorder(self, index: mx.array):
        self.keys = self.keys[index]
        self.values = self.values[index]

    @property
    def state(self):
        return self.keys, self.values
