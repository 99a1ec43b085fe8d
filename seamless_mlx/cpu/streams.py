"""Work split over several CPU streams.

MLX's CPU backend runs an element-wise kernel, and a matrix-vector product, on one thread per
stream.  So large element-wise passes, attention heads and one-row products are cut into parts,
each part put on its own CPU stream (one per core), and the parts concatenated.
"""

from __future__ import annotations

import weakref

import mlx.core as mx

from . import blas, tuning

_CPU_STREAMS: list = []


def cpu_stream_count() -> int:
    """How many CPU streams a split uses: one per core, at most ``tuning.MAX_CPU_STREAMS``."""
    return min(tuning.CPU_CORES, tuning.MAX_CPU_STREAMS)


def cpu_streams(n: int):
    while len(_CPU_STREAMS) < n:
        _CPU_STREAMS.append(mx.new_stream(mx.cpu))
    return _CPU_STREAMS[:n]


def synchronize() -> None:
    """Wait for everything queued on the default stream and on the CPU streams made here."""
    mx.synchronize()
    for stream in _CPU_STREAMS:
        mx.synchronize(stream)


def split_bounds(n: int, groups: int):
    """``(start, stop)`` of ``groups`` contiguous, near-equal parts of ``range(n)``."""
    bounds = [n * g // groups for g in range(groups + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def on_streams(fn, parts, axis: int) -> mx.array:
    """``fn(*part)`` for each part, each on its own CPU stream, concatenated on ``axis``."""
    outs = []
    for part, stream in zip(parts, cpu_streams(len(parts))):
        with mx.stream(stream):
            outs.append(fn(*part))
    return mx.concatenate(outs, axis=axis)


def over_streams(fn, n: int, groups: int, axis: int) -> mx.array:
    """``fn(slice)`` for ``groups`` contiguous slices of ``range(n)``, each on its own CPU stream,
    concatenated on ``axis`` (``fn`` of the whole range when ``groups`` is 1)."""
    if groups <= 1:
        return fn(slice(0, n))
    return on_streams(fn, [(slice(a, b),) for a, b in split_bounds(n, groups)], axis)


def by_rows(fn, x: mx.array, *more: mx.array) -> mx.array:
    """``fn(x, *more)`` (element-wise, same shapes), split by rows over one CPU stream per core when
    large.  The leading axes are merged first, so each part is one contiguous block of rows: a slice
    of [B, T, C] along T is not, and would send the compiled kernels down their scalar strided path."""
    groups = cpu_stream_count()
    rows = x.size // x.shape[-1] if x.ndim and x.shape[-1] else 0
    if x.size < tuning.ELEMENTWISE_SPLIT_MIN or rows < 2 * groups:
        return fn(x, *more)
    flat = [a.reshape(rows, a.shape[-1]) for a in (x, *more)]
    out = over_streams(lambda sl: fn(*(a[sl] for a in flat)), rows, groups, axis=0)
    return out.reshape(x.shape)


def split_rows(fn, x: mx.array, *more):
    """``fn(x, *more)`` for a row-wise ``fn`` (output frame t depends on input frame t alone) of
    ``x [B, T, C]`` and companions with the same frames on axis 1 (``None`` allowed).  Inside
    :func:`~seamless_mlx.cpu.blas.many_rows`, where each product runs on one BLAS thread, the
    frames are cut into one span per CPU stream: the spans run in parallel without meeting."""
    groups = cpu_stream_count()
    T = x.shape[1]
    if not blas.many_rows_active() or groups < 2 or T < groups * tuning.ROW_SPLIT_MIN_FRAMES:
        return fn(x, *more)

    def part(sl):
        return fn(x[:, sl], *(None if a is None else a[:, sl] for a in more))

    return over_streams(part, T, groups, axis=1)


def head_groups(batch: int, heads: int, q_len: int, k_len: int) -> int:
    """How many head groups an attention runs in parallel (1 = no split): the T^2-sized
    element-wise passes (softmax's exp, the relative-position gather, mask selects) dominate
    long attentions, and each runs on one thread per stream."""
    if batch * heads * q_len * k_len < tuning.HEAD_PARALLEL_MIN_ELEMENTS:
        return 1
    n = min(tuning.CPU_CORES, heads)
    while heads % n:
        n -= 1
    return n


def parallel_over_heads(fn, heads: int, groups: int, *arrays):
    """Run ``fn(*slices)`` on ``groups`` contiguous head slices (axis 1 of every array whose axis 1
    has ``heads`` entries) on separate CPU streams; concatenate the results on axis 1."""
    if groups == 1:
        return fn(*arrays)

    def part(sl):
        return fn(*(a[:, sl] if a is not None and a.ndim == 4 and a.shape[1] == heads else a for a in arrays))

    return over_streams(part, heads, groups, axis=1)


# The per-stream parts of split products (views of rows of the weight and its companions), kept
# per set of arrays.  Made afresh, each part of each product puts slices, a transpose, a bias
# broadcast and batch reshapes into the graph, each a task for MLX's CPU scheduler; kept, they are
# evaluated with their first product and are plain arrays from then on.  Keyed by ``id`` and the
# function that cuts them; an entry goes when one of its arrays is freed.
_SPLIT_VIEWS: dict = {}


def kept_parts(arrays: tuple, groups: int, cut):
    """``[cut(*arrays, start, stop) for each of groups row ranges]`` of ``arrays[0]``'s rows, made
    once per (arrays, groups, cut); ``None`` entries of ``arrays`` are allowed."""
    key = (cut, groups) + tuple(id(a) for a in arrays)
    hit = _SPLIT_VIEWS.get(key)
    if hit is not None and all(a is None or r() is a for r, a in zip(hit[0], arrays)):
        return hit[1]
    parts = [cut(*arrays, a, b) for a, b in split_bounds(arrays[0].shape[0], groups)]

    def forget(_, key=key):
        _SPLIT_VIEWS.pop(key, None)

    refs = [None if a is None else weakref.ref(a, forget) for a in arrays]
    _SPLIT_VIEWS[key] = (refs, parts)
    return parts
