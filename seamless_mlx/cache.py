"""Key/value caches for the text decoder.

Self-attention keys/values live in buffers pre-allocated in steps of ``step`` positions (as in
mlx-lm's ``KVCache``), so a decode step writes in place instead of concatenating.  Cross-attention
keys/values are computed once from the encoder output and never change.
"""

from __future__ import annotations

from typing import Optional

import mlx.core as mx


class KVCache:
    """Growing self-attention cache ``[B, H, S, Dh]``."""

    step = 256

    def __init__(self):
        self.keys: Optional[mx.array] = None
        self.values: Optional[mx.array] = None
        self.offset = 0

    def update_and_fetch(self, keys: mx.array, values: mx.array):
        B, H, L, D = keys.shape
        prev = self.offset
        if self.keys is None or prev + L > self.keys.shape[2]:
            n_steps = (self.step + L - 1) // self.step
            shape = (B, H, n_steps * self.step, D)
            new_k = mx.zeros(shape, keys.dtype)
            new_v = mx.zeros(shape, values.dtype)
            if self.keys is not None:
                if prev % self.step != 0:
                    self.keys = self.keys[..., :prev, :]
                    self.values = self.values[..., :prev, :]
                self.keys = mx.concatenate([self.keys, new_k], axis=2)
                self.values = mx.concatenate([self.values, new_v], axis=2)
            else:
                self.keys, self.values = new_k, new_v
        self.offset += L
        self.keys[..., prev : self.offset, :] = keys
        self.values[..., prev : self.offset, :] = values
        return self.keys[..., : self.offset, :], self.values[..., : self.offset, :]

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
