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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional


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
        known, extra = _known_and_extra(cls, d, drop_none=False)  # None is meaningful here (no chunking)
        return cls(**known, extra=extra)

    @classmethod
    def from_pretrained(cls, path) -> "ModelConfig":
        with open(Path(path) / "config.json", encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

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
        return cls(**known, extra=extra)

    @classmethod
    def from_pretrained(cls, path) -> "GenerationConfig":
        p = Path(path) / "generation_config.json"
        if not p.exists():
            return cls()
        with open(p, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> Dict[str, Any]:
        out = dict(self.extra)
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        return out
