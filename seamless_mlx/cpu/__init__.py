"""Speed work for MLX's CPU backend, swapped into a loaded model.

The model files are a plain MLX port, what Metal and CUDA run.  On the CPU, :func:`accelerate`
turns each module of a known class into a subclass from this package that overrides only its
forward pass (``__call__``; ``as_linear`` for the tied LM head) — as ``nn.quantize`` swaps
``Linear`` for ``QuantizedLinear``, except that the module object stays the same: parameter names,
values and memory never change.  Loading does it by default when MLX's default device is the CPU
(:func:`wanted`); ``SEAMLESS_MLX_ROUTES=generic`` or ``from_pretrained(..., cpu_routes=False)``
keeps the plain modules.

Modules: :mod:`.tuning` (every threshold), :mod:`.streams` (work split over CPU streams),
:mod:`.ops` (polynomial ``exp`` and what is built on it, layer norm, attention),
:mod:`.linear` (products), :mod:`.conv` (convolutions as GEMMs), :mod:`.attention`,
:mod:`.blocks` (sub-model blocks), :mod:`.memory` (glibc's thresholds for large buffers), :mod:`.blas` (the fast BLAS under MLX, loaded first,
and the few-row product kernel ``_skinny.c`` it puts in front of it).
"""

from __future__ import annotations

import os

from . import blas

blas.preload()  # before mlx.core is imported anywhere, so that MLX binds to the fast BLAS

try:
    import mlx.core as mx  # noqa: E402
except ImportError as e:  # Linux: the mlx package without a backend wheel
    raise ImportError(
        f"seamless-mlx: MLX could not load its backend ({e}). On Linux install one: "
        "pip install 'seamless-mlx[cpu]' (CPU, with Intel MKL on x86_64) or 'seamless-mlx[cuda]' (NVIDIA GPU)."
    ) from e
import mlx.nn as nn  # noqa: E402

from .. import layers, quantize, speech_encoder, t2u, text, vocoder  # noqa: E402
from . import attention, blocks, conv, linear, memory, ops  # noqa: E402

# plain class -> its CPU subclass (exact classes only: a user's own subclass is left alone)
SWAPS = {
    nn.Linear: linear.Linear,
    nn.Embedding: linear.Embedding,
    nn.QuantizedLinear: linear.QuantizedLinear,
    nn.QuantizedEmbedding: linear.QuantizedEmbedding,
    nn.LayerNorm: ops.LayerNorm,
    nn.Conv1d: conv.Conv1d,
    nn.ConvTranspose1d: conv.ConvTranspose1d,
    quantize.QuantizedConv1d: conv.QuantizedConv1d,
    layers.Attention: attention.Attention,
    layers.FeedForward: blocks.FeedForward,
    speech_encoder.ConformerSelfAttention: attention.ConformerSelfAttention,
    speech_encoder.ConformerFeedForward: blocks.ConformerFeedForward,
    speech_encoder.ConformerConvolution: blocks.ConformerConvolution,
    speech_encoder.ConformerEncoder: blocks.ConformerEncoder,
    speech_encoder.AdapterLayer: blocks.AdapterLayer,
    speech_encoder.SpeechEncoder: blocks.SpeechEncoder,
    t2u.T2UDecoderLayer: blocks.T2UDecoderLayer,
    text.TextEncoder: blocks.TextEncoder,
    text.TextDecoder: blocks.TextDecoder,
    t2u.TextToUnit: blocks.TextToUnit,
    vocoder.HifiGan: blocks.HifiGan,
    vocoder.ResidualBlock: blocks.ResidualBlock,
}


def wanted() -> bool:
    """Whether loading swaps the CPU modules in: MLX's default device is the CPU and the
    environment does not ask for the plain modules (``SEAMLESS_MLX_ROUTES=generic``)."""
    if os.environ.get("SEAMLESS_MLX_ROUTES", "").strip().lower() == "generic":
        return False
    return mx.default_device() == mx.cpu


def accelerate(model: nn.Module) -> nn.Module:
    """Swap every module of ``model`` (itself included) whose class has a CPU twin for that twin,
    in place; returns ``model``.  Apply after loading and quantizing: the twins of the quantized
    classes are swapped in too.  Parameters are untouched.  Also has glibc recycle large buffers
    (:func:`~seamless_mlx.cpu.memory.keep_freed_buffers`, process-wide, once)."""
    memory.keep_freed_buffers()
    for _, module in model.named_modules():
        twin = SWAPS.get(type(module))
        if twin is not None:
            module.__class__ = twin
    return model


def plain(model: nn.Module) -> nn.Module:
    """Undo :func:`accelerate` in place (the plain modules again); returns ``model``."""
    back = {twin: cls for cls, twin in SWAPS.items()}
    for _, module in model.named_modules():
        cls = back.get(type(module))
        if cls is not None:
            module.__class__ = cls
    return model
