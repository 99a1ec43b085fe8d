"""Configuration dataclasses read from a Hugging Face SeamlessM4T-v2 folder.

Field names are exactly those of ``transformers.SeamlessM4Tv2Config`` so that a
``config.json`` written by transformers loads as is; defaults are the
``facebook/seamless-m4t-v2-large`` values.  Unknown keys are kept in ``extra``
rather than dropped, so a round trip through :meth:`ModelConfig.to_dict` is
lossless.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional


class ConfigError(ValueError):
    """A ``config.json`` / ``generation_config.json`` that is not valid JSON or holds impossible values."""


def read_json_object(path) -> Dict[str, Any]:
    """The JSON object stored in ``path``; :class:`ConfigError` naming the file when it is not one."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            d = json.loads(f.read().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise ConfigError(
            f"{p} is not valid JSON{where}: restore it from the original checkpoint or convert the model again."
        ) from None
    if not isinstance(d, dict):
        raise ConfigError(
            f"{p} holds a JSON {type(d).__name__}, not an object of settings: restore it from the original "
            "checkpoint or convert the model again."
        )
    return d


# The least value of each whole-number setting: sizes at least 1; counts of layers, offsets and
# relative-position windows at least 0; token ids and the speech encoder's left chunk count (-1:
# unlimited) unbounded.
_COUNT_SUFFIXES = ("_layers", "_offset")
_COUNTS = {"left_max_position_embeddings", "right_max_position_embeddings"}
_UNBOUNDED = {"speech_encoder_left_chunk_num"}
# Sizes where null is meaningful (no chunked attention in the speech encoder); null is accepted
# for every setting that is not a size (transformers reads it as "off" or "unset").
_MAY_BE_NONE = {"speech_encoder_chunk_size"}
_HEADS = (
    "encoder_attention_heads", "decoder_attention_heads", "speech_encoder_attention_heads",
    "t2u_encoder_attention_heads", "t2u_decoder_attention_heads",
)
_GENERATION_SIZES = {"max_new_tokens", "max_length", "num_beams", "num_return_sequences"}


def _is_whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _model_least(name: str) -> Optional[int]:
    if name.endswith("_token_id") or name in _UNBOUNDED:
        return None
    return 0 if name.endswith(_COUNT_SUFFIXES) or name in _COUNTS else 1


def _generation_least(name: str) -> Optional[int]:
    if name.endswith("_token_id"):
        return None
    return 1 if name in _GENERATION_SIZES else 0


MAX_SETTING = 2**31


def _check_fields(obj, least_of) -> None:
    """Raise ``ValueError`` naming the first setting whose type or range is impossible; a
    whole-number setting must be at least ``least_of(name)`` (``None``: any)."""
    for f in dataclasses.fields(obj):
        name, kind, v = f.name, str(f.type), getattr(obj, f.name)
        least = least_of(name) if kind == "int" else None
        if name == "extra" or (v is None and (name in _MAY_BE_NONE or least != 1)):
            continue
        if kind == "int":
            if not _is_whole(v) or (least is not None and v < least):
                what = "a whole number" if least is None else "a positive whole number" if least else "a whole number >= 0"
                raise ValueError(f"{name} must be {what}, got {v!r}")
            if abs(v) >= MAX_SETTING:  # sizes and ids index arrays: past 2^31 no array has them
                raise ValueError(f"{name} must be below {MAX_SETTING}, got {v!r}")
        elif kind == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a number, got {v!r}")
        elif kind == "bool":
            if not isinstance(v, bool):
                raise ValueError(f"{name} must be true or false, got {v!r}")
        elif kind == "str":
            if not isinstance(v, str):
                raise ValueError(f"{name} must be a string, got {v!r}")
        elif kind.startswith("List[") or kind.startswith("Dict["):
            if not isinstance(v, list if kind.startswith("List[") else dict):
                raise ValueError(f"{name} must be a JSON {'list' if kind.startswith('List[') else 'object'}, got {v!r}")
            items = [x for row in v for x in (row if isinstance(row, list) else [row])] if kind.startswith("List[") else []
            if kind.startswith("List[") and not all(_is_whole(x) and x >= 1 for x in items):
                raise ValueError(f"{name} must hold positive whole numbers, got {v!r}")


def _from_file(cls, p: Path):
    """``cls.from_dict`` of the JSON object in ``p``; a :class:`ConfigError` naming the file."""
    data = read_json_object(p)
    try:
        return cls.from_dict(data)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{p}: {e}; restore it from the original checkpoint or convert the model again.") from None


def _known_and_extra(cls, d: Dict[str, Any], drop_none: bool):
    """Split a JSON dict into the dataclass's fields and the rest (kept, for lossless round trips)."""
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    known = {k: v for k, v in d.items() if k in names and not (drop_none and v is None)}
    return known, {k: v for k, v in d.items() if k not in names}


@dataclass
class ModelConfig:
    vocab_size: int = 256102
    t2u_vocab_size: int = 10082
    char_vocab_size: int = 10943
    hidden_size: int = 1024
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    use_cache: bool = True
    max_position_embeddings: int = 4096
    is_encoder_decoder: bool = True
    encoder_layerdrop: float = 0.05
    decoder_layerdrop: float = 0.05
    activation_function: str = "relu"
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    scale_embedding: bool = True
    # text encoder / decoder
    encoder_layers: int = 24
    encoder_ffn_dim: int = 8192
    encoder_attention_heads: int = 16
    decoder_layers: int = 24
    decoder_ffn_dim: int = 8192
    decoder_attention_heads: int = 16
    decoder_start_token_id: int = 3
    max_new_tokens: int = 256
    pad_token_id: int = 0
    bos_token_id: int = 2
    eos_token_id: int = 3
    # speech encoder
    speech_encoder_layers: int = 24
    speech_encoder_attention_heads: int = 16
    speech_encoder_intermediate_size: int = 4096
    speech_encoder_hidden_act: str = "swish"
    speech_encoder_dropout: float = 0.0
    add_adapter: bool = True
    speech_encoder_layerdrop: float = 0.1
    feature_projection_input_dim: int = 160
    adaptor_kernel_size: int = 8
    adaptor_stride: int = 8
    adaptor_dropout: float = 0.1
    num_adapter_layers: int = 1
    position_embeddings_type: str = "relative_key"
    conv_depthwise_kernel_size: int = 31
    left_max_position_embeddings: int = 64
    right_max_position_embeddings: int = 8
    speech_encoder_chunk_size: int = 20000
    speech_encoder_left_chunk_num: int = 128
    # text-to-unit
    t2u_bos_token_id: int = 0
    t2u_pad_token_id: int = 1
    t2u_eos_token_id: int = 2
    t2u_encoder_layers: int = 6
    t2u_encoder_ffn_dim: int = 8192
    t2u_encoder_attention_heads: int = 16
    t2u_decoder_layers: int = 6
    t2u_decoder_ffn_dim: int = 8192
    t2u_decoder_attention_heads: int = 16
    t2u_max_position_embeddings: int = 4096
    t2u_variance_predictor_embed_dim: int = 1024
    t2u_variance_predictor_hidden_dim: int = 256
    t2u_variance_predictor_kernel_size: int = 3
    t2u_variance_pred_dropout: float = 0.5
    # vocoder
    sampling_rate: int = 16000
    upsample_initial_channel: int = 512
    upsample_rates: List[int] = field(default_factory=lambda: [5, 4, 4, 2, 2])
    upsample_kernel_sizes: List[int] = field(default_factory=lambda: [11, 8, 8, 4, 4])
    resblock_kernel_sizes: List[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: List[List[int]] = field(
        default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    )
    leaky_relu_slope: float = 0.1
    unit_hifi_gan_vocab_size: int = 10000
    unit_embed_dim: int = 1280
    lang_embed_dim: int = 256
    spkr_embed_dim: int = 256
    vocoder_num_langs: int = 36
    vocoder_num_spkrs: int = 200
    variance_predictor_kernel_size: int = 3
    var_pred_dropout: float = 0.5
    vocoder_offset: int = 4
    # MLX-side additions
    quantization: Optional[Dict[str, Any]] = None
    extra: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ModelConfig":
        """Build from a ``config.json`` dict; ``ValueError`` for a size that is not a positive
        whole number (or another impossible value)."""
        known, extra = _known_and_extra(cls, d, drop_none=False)  # None is meaningful here (no chunking)
        config = cls(**known, extra=extra)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first impossible setting."""
        _check_fields(self, _model_least)
        for heads in _HEADS:
            if self.hidden_size % getattr(self, heads):
                raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of {heads} ({getattr(self, heads)})")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes must have the same length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes must have the same length")

    @classmethod
    def from_pretrained(cls, path) -> "ModelConfig":
        return _from_file(cls, Path(path) / "config.json")

    def to_dict(self) -> Dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        if d["quantization"] is None:
            del d["quantization"]
        out = dict(self.extra)
        out.update(d)
        return out


@dataclass
class GenerationConfig:
    """The parts of HF ``generation_config.json`` that decoding needs.

    The language maps are what make the checkpoint multilingual:
    ``text_decoder_lang_to_code_id`` (``"fra" -> token id``), ``t2u_lang_code_to_id``,
    ``vocoder_lang_code_to_id``, and the character tables ``id_to_text`` /
    ``char_to_id`` used by the text-to-unit model.
    """

    decoder_start_token_id: int = 3
    bos_token_id: int = 2
    eos_token_id: int = 3
    pad_token_id: int = 0
    max_new_tokens: int = 256
    max_length: int = 20
    min_new_tokens: Optional[int] = None
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    length_penalty: float = 1.0
    early_stopping: Any = False
    num_return_sequences: int = 1
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    text_decoder_lang_to_code_id: Dict[str, int] = field(default_factory=dict)
    t2u_lang_code_to_id: Dict[str, int] = field(default_factory=dict)
    vocoder_lang_code_to_id: Dict[str, int] = field(default_factory=dict)
    id_to_text: Dict[str, str] = field(default_factory=dict)
    char_to_id: Dict[str, int] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "GenerationConfig":
        # ``None`` in the JSON means "unset": keep our default for it.
        known, extra = _known_and_extra(cls, d, drop_none=True)
        config = cls(**known, extra=extra)
        _check_fields(config, _generation_least)
        return config

    @classmethod
    def from_pretrained(cls, path) -> "GenerationConfig":
        """Read ``generation_config.json`` (the defaults, with no language tables, when absent)."""
        p = Path(path) / "generation_config.json"
        return _from_file(cls, p) if p.exists() else cls()

    def to_dict(self) -> Dict[str, Any]:
        out = dict(self.extra)
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        return out
