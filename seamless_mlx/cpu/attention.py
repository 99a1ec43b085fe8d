"""Attention for the CPU: fused q/k/v products in the text decoder, and the conformer's attention
with its heads over several streams and long inputs in blocks."""

from __future__ import annotations

from typing import Optional

import mlx.core as mx

from .. import layers, speech_encoder
from ..cache import CrossCache, KVCache
from . import tuning
from .linear import Linear, linear
from .ops import attention
from .streams import head_groups, parallel_over_heads, split_rows


def _split_heads(x: mx.array, heads: int, head_dim: int) -> mx.array:
    B, L, _ = x.shape
    if L == 1:  # a decoding step: the same element order, without a transpose node
        return x.reshape(B, heads, 1, head_dim)
    return x.reshape(B, L, heads, head_dim).transpose(0, 2, 1, 3)


class Attention(layers.Attention):
    """:class:`seamless_mlx.layers.Attention`; with a :class:`KVCache` (the text decoder's
    self-attention) the three q/k/v products of a step are one ``[3D, D]`` product.

    On the first such call the three float weights are copied into one buffer and the parameters
    become views of it: names, values and memory stay as they were.  Quantized or bias-less
    projections stay apart; so do weights replaced after fusing, until they are fused again."""

    def _fused_qkv(self):
        fused = self.__dict__.get("_qkv")
        projs = (self.q_proj, self.k_proj, self.v_proj)
        if fused is None or any(p.get("weight") is not w for p, w in zip(projs, fused[2])):
            return None
        return fused

    def fuse_qkv(self):
        """``(weight [3D, D], bias [3D], views)``, fused now or before (see the class docstring);
        ``None`` when the projections cannot be fused."""
        fused = self._fused_qkv()
        if fused is not None:
            return fused
        projs = (self.q_proj, self.k_proj, self.v_proj)
        if not all(type(p) is Linear and "bias" in p for p in projs):
            return None
        weight = mx.concatenate([p.weight for p in projs])
        bias = mx.concatenate([p.bias for p in projs])
        mx.eval(weight, bias)
        d = self.q_proj.weight.shape[0]
        for i, p in enumerate(projs):
            p.weight, p.bias = weight[i * d : (i + 1) * d], bias[i * d : (i + 1) * d]
        self.__dict__["_qkv"] = (weight, bias, tuple(p.weight for p in projs))
        return self.__dict__["_qkv"]

    def kv(self, x: mx.array):
        """Projected keys and values ``[B, H, S, Dh]``, laid out contiguously: the decoder's
        cross-attention reads them at every step, and the attention's batched products copy a
        transposed view (``[B, S, H, Dh]`` seen as ``[B, H, S, Dh]``) each time they read one."""
        return tuple(mx.contiguous(t) for t in super().kv(x))

    def __call__(self, x: mx.array, mask=None, memory: Optional[mx.array] = None, cache=None) -> mx.array:
        H, Dh = self.num_heads, self.head_dim
        if isinstance(cache, CrossCache):
            k, v = cache.keys, cache.values
            q = _split_heads(self.q_proj(x), H, Dh)
        elif isinstance(cache, KVCache) and memory is None and (fused := self.fuse_qkv()) is not None:
            weight, bias, _ = fused
            q, k, v = (_split_heads(y, H, Dh) for y in mx.split(linear(x, weight, bias), 3, axis=-1))
        else:
            source = x if memory is None else memory
            k, v = _split_heads(self.k_proj(source), H, Dh), _split_heads(self.v_proj(source), H, Dh)
            q = _split_heads(self.q_proj(x), H, Dh)
        if cache is not None and not isinstance(cache, CrossCache):
            k, v = cache.update_and_fetch(k, v)
        B, _, L, _ = q.shape
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        return self.out_proj((out if L == 1 else out.transpose(0, 2, 1, 3)).reshape(B, L, -1))


class ConformerSelfAttention(speech_encoder.ConformerSelfAttention):
    """The conformer's attention with the CPU's :func:`~seamless_mlx.cpu.ops.attention`, its heads
    (and, on the many-row BLAS, the frames of its projections) split over streams, and long inputs
    one head and one block of queries at a time.

    Blocks: each block runs after the previous one (``mx.depends``), so the scores, bias and softmax
    weights exist for one block only, at most ``tuning.ATTENTION_BLOCK_BYTES`` each.  Blocks that
    small are also reused by the allocators; whole-head buffers are above MLX's CPU buffer cache and
    glibc's mmap threshold, so each would come from fresh pages."""

    def __call__(self, x: mx.array, keep: Optional[mx.array] = None) -> mx.array:
        B, T, _ = x.shape
        H, Dh = self.num_heads, self.head_dim
        qkv = split_rows(lambda x: mx.concatenate([self.linear_q(x), self.linear_k(x), self.linear_v(x)], axis=-1), x)
        q, k, v = (y.reshape(B, T, H, Dh).transpose(0, 2, 1, 3) for y in mx.split(qkv, 3, axis=-1))

        rel = None
        if self.relative:
            rel = (q * self.scale) @ self.distance_embedding.weight.astype(q.dtype).T
            idx = speech_encoder.relative_distance_index(T, self.left, self.right)[None, None]

        def attend_heads(q, k, v, rel, rows=slice(None)):
            """Attention of the queries ``rows`` (``q`` and ``rel`` already cut to them)."""
            bias = None if rel is None else mx.take_along_axis(rel, idx[..., rows, :], axis=-1)
            if keep is not None:
                neg = speech_encoder.masked_score(q.dtype)
                kept = keep[..., rows, :] if keep.shape[-2] > 1 else keep
                bias = mx.where(kept, mx.array(0.0, dtype=q.dtype) if bias is None else bias, neg)
            return attention(q, k, v, self.scale, bias)

        def attend(q, k, v, rel):
            if q.shape[0] * q.shape[1] * T * T * 4 <= tuning.ATTENTION_SLICE_BYTES:
                return attend_heads(q, k, v, rel)
            block = max(1, tuning.ATTENTION_BLOCK_BYTES // (q.shape[0] * T * q.dtype.size))
            heads, last = [], None
            for h in range(q.shape[1]):
                parts = []
                for start in range(0, T, block):
                    rows = slice(start, min(start + block, T))
                    qb, rb = q[:, h : h + 1, rows], None if rel is None else rel[:, h : h + 1, rows]
                    if last is not None:  # never two blocks at once
                        qb = mx.depends(qb, last)
                        rb = None if rb is None else mx.depends(rb, last)
                    last = attend_heads(qb, k[:, h : h + 1], v[:, h : h + 1], rb, rows)
                    parts.append(last)
                heads.append(parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=2))
            return mx.concatenate(heads, axis=1)

        out = parallel_over_heads(attend, H, head_groups(B, H, T, T), q, k, v, rel)
        return split_rows(self.linear_out, out.transpose(0, 2, 1, 3).reshape(B, T, -1))
