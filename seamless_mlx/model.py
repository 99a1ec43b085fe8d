"""SeamlessM4T-v2 in MLX: the all-task model and the four task models, transformers-style.

One class, :class:`SeamlessM4Tv2Model`, holds every sub-model; the task classes only build (and
load the weights of) what their task uses:

==================================  ============================================================
class                               sub-models
==================================  ============================================================
``SeamlessM4Tv2Model``              text encoder, speech encoder, text decoder, T2U, vocoder
``SeamlessM4Tv2ForTextToText``      text encoder, text decoder
``SeamlessM4Tv2ForSpeechToText``    speech encoder, text decoder
``SeamlessM4Tv2ForTextToSpeech``    text encoder, text decoder, T2U, vocoder
``SeamlessM4Tv2ForSpeechToSpeech``  speech encoder, text decoder, T2U, vocoder
==================================  ============================================================
"""

from __future__ import annotations

from typing import Optional, Tuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .config import GenerationConfig, ModelConfig
from .generate import generate as _generate
from .generate import stream_generate as _stream_generate
from .loading import load_model
from .speech_encoder import SpeechEncoder
from .t2u import TextToUnit
from .text import TextDecoder, TextEncoder
from .vocoder import CodeHifiGan

ALL_COMPONENTS = ("text_encoder", "speech_encoder", "text_decoder", "t2u_model", "vocoder")


class SeamlessM4Tv2Model(nn.Module):
    """All five tasks (T2TT, S2TT, ASR, T2ST, S2ST) from one checkpoint."""

    components: Tuple[str, ...] = ALL_COMPONENTS
    default_generate_speech = True

    def __init__(self, config: ModelConfig, generation_config: Optional[GenerationConfig] = None):
        super().__init__()
        self.config = config
        self.generation_config = generation_config or GenerationConfig()
        self.shared = nn.Embedding(config.vocab_size, config.hidden_size)
        if "text_encoder" in self.components:
            self.text_encoder = TextEncoder(config)
        if "speech_encoder" in self.components:
            self.speech_encoder = SpeechEncoder(config)
        if "text_decoder" in self.components:
            self.text_decoder = TextDecoder(config)
        if "t2u_model" in self.components:
            self.t2u_model = TextToUnit(config)
        if "vocoder" in self.components:
            self.vocoder = CodeHifiGan(config)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path, dtype: Optional[str] = None, lazy: bool = False, cpu_routes: Optional[bool] = None):
        """Load from a converted MLX folder or straight from a Hugging Face folder / hub id.

        Loading is strict: a weight that is missing, unexpected or of the wrong shape raises an
        error naming it.  Only the weights of this class's sub-models are read.

        ``dtype`` (``"float32"``, ``"float16"``, ``"bfloat16"``) casts the floating-point weights,
        quantization scales included.  By default they stay as stored, except on the CPU backend,
        where float16/bfloat16 weights are computed in float32: MLX's CPU kernels for half
        precision are 10-40x slower than for float32.

        ``cpu_routes``: swap in the CPU-tuned modules of :mod:`seamless_mlx.cpu` (same parameters,
        same results, faster on the CPU).  By default: when MLX's default device is the CPU and
        the environment does not say ``SEAMLESS_MLX_ROUTES=generic``.
        """
        return load_model(path, cls, dtype=dtype, lazy=lazy, cpu_routes=cpu_routes)

    def weight_prefixes(self) -> Tuple[str, ...]:
        return ("shared.",) + tuple(c + "." for c in self.components)

    # ------------------------------------------------------------------ pieces
    def lm_logits(self, hidden: mx.array) -> mx.array:
        """Decoder states ``[..., D]`` -> vocabulary logits (the tied embedding as the LM head)."""
        return self.shared.as_linear(hidden)

    def encode_text(self, input_ids: mx.array, attention_mask: Optional[mx.array] = None):
        """``[B, S]`` ids -> (``[B, S, D]`` states, ``[B, S]`` mask or None)."""
        if "text_encoder" not in self.components:
            raise ValueError(f"{type(self).__name__} has no text encoder: pass input_features (speech) instead.")
        return self.text_encoder(input_ids, self.shared, attention_mask), attention_mask

    def encode_speech(self, input_features: mx.array, attention_mask: Optional[mx.array] = None):
        """``[B, T, 160]`` features -> (``[B, T', D]`` states, ``[B, T']`` sub-sampled mask or None)."""
        if "speech_encoder" not in self.components:
            raise ValueError(f"{type(self).__name__} has no speech encoder: pass input_ids (text) instead.")
        return self.speech_encoder(input_features, attention_mask)

    def encode(self, input_ids=None, input_features=None, attention_mask=None):
        if input_features is not None:
            return self.encode_speech(mx.array(input_features), _as_mx(attention_mask))
        if input_ids is None:
            raise ValueError("Pass input_ids (text) or input_features (speech).")
        return self.encode_text(mx.array(input_ids), _as_mx(attention_mask))

    # ------------------------------------------------------------------ generation
    def generate(self, input_ids=None, input_features=None, attention_mask=None, tgt_lang=None, **kwargs):
        """Translate; see :func:`seamless_mlx.generate.generate` for every keyword."""
        return _generate(
            self,
            input_ids=input_ids,
            input_features=input_features,
            attention_mask=attention_mask,
            tgt_lang=tgt_lang,
            **kwargs,
        )

    def stream_generate(self, processor=None, **kwargs):
        """Yield the translation while it is decoded; see :func:`seamless_mlx.generate.stream_generate`."""
        return _stream_generate(self, processor, **kwargs)


def _as_mx(x):
    return None if x is None else mx.array(np.asarray(x) if not isinstance(x, mx.array) else x)


class SeamlessM4Tv2ForTextToText(SeamlessM4Tv2Model):
    """T2TT only: text encoder + text decoder weights."""

    components = ("text_encoder", "text_decoder")
    default_generate_speech = False


class SeamlessM4Tv2ForSpeechToText(SeamlessM4Tv2Model):
    """S2TT and ASR: speech encoder + text decoder weights."""

    components = ("speech_encoder", "text_decoder")
    default_generate_speech = False


class SeamlessM4Tv2ForTextToSpeech(SeamlessM4Tv2Model):
    """T2ST: text encoder, text decoder, T2U and vocoder weights."""

    components = ("text_encoder", "text_decoder", "t2u_model", "vocoder")


class SeamlessM4Tv2ForSpeechToSpeech(SeamlessM4Tv2Model):
    """S2ST: speech encoder, text decoder, T2U and vocoder weights."""

    components = ("speech_encoder", "text_decoder", "t2u_model", "vocoder")
