"""Non-autoregressive text-to-unit model (HF ``SeamlessM4Tv2TextToUnitForConditionalGeneration``).

Input: the text decoder's final states for the generated text (without its last token), and the
text as characters.  The T2U encoder refines the subword states; the decoder spreads each
subword over its characters, adds character embeddings and positions, predicts a duration per
character, repeats each character state for its duration (length regulation), then runs layers
that mix self-attention and convolution.  One forward pass gives every unit at once.

Parameter names mirror ``t2u_model.*`` (``model.encoder``, ``model.decoder``, ``lm_head``).  The
T2U sub-config is the main config with every ``t2u_*`` field in place of its plain twin
(``t2u_pad_token_id`` as padding index, ``t2u_decoder_layers`` as layer count, ...).
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .config import GenerationConfig, ModelConfig
from .layers import (
    Attention,
    EncoderLayer,
    SinusoidalPositions,
    VariancePredictor,
    get_activation,
    lengths_to_mask,
    padding_bias,
    repeat_by_durations,
    sanitize_convs,
)

SPACE = "\u2581"


# ---------------------------------------------------------------------------- host-side inputs
def _subwords(ids: np.ndarray, id_to_text: Dict[str, str]):
    # transformers looks ids up as strings and stringifies a miss ("None"); keep that.
    return [[str(id_to_text.get(str(int(i)))) for i in row] for row in ids]


def _char_counts(ids: np.ndarray, subwords, pad_token_id: int, unk_token_id: int) -> np.ndarray:
    """Characters per subword; the space before a word belongs to it, and a space after a
    one-character punctuation mark belongs to the mark (transformers' rules)."""
    counts = np.zeros(ids.shape, dtype=np.int64)
    lengths = (ids != pad_token_id).sum(1)
    for b in range(ids.shape[0]):
        words = subwords[b][: lengths[b]]
        n = len(words)
        next_space = [i < n - 1 and len(words[i + 1]) > 1 and words[i + 1][0] == SPACE for i in range(n)]
        punct = [len(w) == 1 and not w.isalpha() and not w.isnumeric() and w != SPACE for w in words]
        for i, (tok, word) in enumerate(zip(ids[b, :n], words)):
            if tok == pad_token_id:
                break
            if tok == unk_token_id:
                c = 1
            else:
                c = len(word)
                if punct[i] and next_space[i]:
                    c += 1
                elif i > 0 and punct[i - 1] and next_space[i - 1]:
                    c -= 1
            counts[b, i] = c
    return counts


def char_inputs(
    sequences: np.ndarray,
    gen: GenerationConfig,
    pad_token_id: int = 0,
    eos_token_id: int = 3,
    unk_token_id: int = 1,
) -> Tuple[np.ndarray, np.ndarray]:
    """Generated text ids ``[B, L]`` -> ``(char_input_ids [B, C], char_count_per_id [B, L-1])``.

    The language code (position 1) and the final token are dropped, inner EOS become padding;
    the counts get a zero for the language and EOS positions so that they line up with the
    decoder states of ``sequences[:, :-1]``.
    """
    if not gen.id_to_text or not gen.char_to_id:
        raise ValueError(
            "generation_config.json lacks id_to_text/char_to_id, which speech output needs; "
            "use the model's own generation_config.json."
        )
    ids = np.asarray(sequences)[:, 2:-1].copy()
    ids[ids == eos_token_id] = pad_token_id
    words = _subwords(ids, gen.id_to_text)
    counts = _char_counts(ids, words, pad_token_id, unk_token_id)
    zero = np.zeros((ids.shape[0], 1), dtype=np.int64)
    counts_full = np.concatenate([zero, counts, zero], axis=1)

    C = int(counts_full.sum(1).max()) if ids.size else 0
    chars = np.full((ids.shape[0], C), pad_token_id, dtype=np.int64)
    lengths = (ids != pad_token_id).sum(1)
    for b in range(ids.shape[0]):
        pos = 0
        for tok, word in zip(ids[b, : lengths[b]], words[b][: lengths[b]]):
            cids = [unk_token_id] if tok == unk_token_id else [gen.char_to_id.get(ch, unk_token_id) for ch in word]
            chars[b, pos : pos + len(cids)] = cids
            pos += len(cids)
    return chars, counts_full


def t2u_attention_mask(sequences: np.ndarray, pad_token_id: int = 0) -> np.ndarray:
    """``[B, L-1]`` mask over the decoder states fed to the T2U model."""
    seq = np.asarray(sequences)[:, :-1]
    n = (seq != pad_token_id).sum(1)
    return (np.arange(seq.shape[1])[None, :] < n[:, None]).astype(np.int32)


# ---------------------------------------------------------------------------- model
class T2UEncoder(nn.Module):
    """Pre-LN transformer encoder over the text decoder's states (no embeddings or positions)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.hidden_size
        self.layers = [
            EncoderLayer(d, config.t2u_encoder_attention_heads, config.t2u_encoder_ffn_dim, config.activation_function)
            for _ in range(config.t2u_encoder_layers)
        ]
        self.layer_norm = nn.LayerNorm(d)

    def __call__(self, x: mx.array, mask: Optional[mx.array]) -> mx.array:
        bias = padding_bias(mask, x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return self.layer_norm(x)


class T2UDecoderLayer(nn.Module):
    """Post-LN self-attention, then two kernel-7 convolutions, with padded frames zeroed."""

    def __init__(self, d: int, heads: int, activation: str):
        super().__init__()
        self.self_attn = Attention(d, heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        # transformers' kernel-7 "same" convolutions: 3 zeros on each side
        self.conv1 = nn.Conv1d(d, d, 7, padding=3)
        self.conv2 = nn.Conv1d(d, d, 7, padding=3)
        self.conv_layer_norm = nn.LayerNorm(d)
        self.act = get_activation(activation)

    def __call__(self, x, bias, keep):
        x = self.self_attn_layer_norm(x + self.self_attn(x, bias))
        h = self.conv1(mx.where(keep, x, 0.0))
        h = mx.where(keep, h, 0.0)
        h = self.conv2(self.act(h))
        return self.conv_layer_norm(x + h)


class T2UDecoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.hidden_size
        self.embed_scale = math.sqrt(d) if config.scale_embedding else 1.0
        # transformers' ``embed_tokens`` here only feeds the tied T2U LM head: it is loaded into
        # ``TextToUnit.lm_head`` and not kept (see ``sanitize``).
        self.embed_char = nn.Embedding(config.char_vocab_size, d)
        self.pos_emb_alpha_char = mx.ones((1,))
        self.pos_emb_alpha = mx.ones((1,))
        self.duration_predictor = VariancePredictor(
            config.t2u_variance_predictor_embed_dim,
            config.t2u_variance_predictor_hidden_dim,
            config.t2u_variance_predictor_kernel_size,
        )
        self.layers = [
            T2UDecoderLayer(d, config.t2u_decoder_attention_heads, config.activation_function)
            for _ in range(config.t2u_decoder_layers)
        ]
        self.layer_norm = nn.LayerNorm(d)
        self._positions = SinusoidalPositions(d, config.t2u_pad_token_id)

    def __call__(self, char_ids: mx.array, char_counts: mx.array, states: mx.array):
        """Returns ``(hidden [B, U, D], padding_mask [B, U])``."""
        char_len = char_counts.sum(axis=1)
        C = char_ids.shape[1]
        char_mask = lengths_to_mask(char_len, C)
        x = repeat_by_durations(states, char_counts)
        if x.shape[1] < C:  # all-zero counts leave nothing to spread; keep shapes aligned
            x = mx.pad(x, [(0, 0), (0, C - x.shape[1]), (0, 0)])
        pos = self._positions.sequential(C).astype(x.dtype)
        x = self.embed_char(char_ids) * self.embed_scale + self.pos_emb_alpha_char * pos + x
        log_dur = self.duration_predictor(x, char_mask)
        dur = mx.maximum(mx.round(mx.expm1(log_dur)), 1).astype(mx.int32)
        dur = mx.where(char_mask.astype(mx.bool_), dur, 0)
        x = repeat_by_durations(x, dur)
        U = x.shape[1]
        x = x + self.pos_emb_alpha * self._positions.sequential(U).astype(x.dtype)
        padding_mask = lengths_to_mask(dur.sum(axis=1), U)
        bias = padding_bias(padding_mask, x.dtype)
        keep = padding_mask.astype(mx.bool_)[..., None]
        for layer in self.layers:
            x = layer(x, bias, keep)
        return self.layer_norm(x), padding_mask


class T2UModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.encoder = T2UEncoder(config)
        self.decoder = T2UDecoder(config)


class TextToUnit(nn.Module):
    """``(decoder states [B, L, D], char ids [B, C], char counts [B, L], mask [B, L])`` ->
    ``(unit logits [B, U, t2u_vocab_size], padding_mask [B, U])``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.model = T2UModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.t2u_vocab_size, bias=False)

    def __call__(self, inputs_embeds, char_input_ids, char_count_per_id, attention_mask=None):
        enc = self.model.encoder(inputs_embeds, attention_mask)
        hidden, padding_mask = self.model.decoder(char_input_ids, char_count_per_id, enc)
        return self.lm_head(hidden), padding_mask


def select_units(logits: mx.array, do_sample: bool = False, temperature: Optional[float] = None) -> mx.array:
    """Greedy units, or sampled ones as transformers does: only when ``do_sample`` and a
    temperature other than 1.0 is given (``speech_do_sample=True`` alone stays greedy)."""
    if not do_sample or temperature is None or float(temperature) == 1.0:
        return mx.argmax(logits, axis=-1).astype(mx.int32)
    return mx.random.categorical(logits.astype(mx.float32) / float(temperature), axis=-1).astype(mx.int32)


def units_for_vocoder(unit_ids: mx.array, padding_mask: mx.array, config: ModelConfig) -> mx.array:
    """EOS and padded positions -> pad; every other unit shifted down by ``vocoder_offset``."""
    pad = config.t2u_pad_token_id
    drop = (unit_ids == config.t2u_eos_token_id) | (padding_mask == 0)
    ids = mx.where(drop, pad, unit_ids)
    return mx.where(ids == pad, ids, ids - config.vocoder_offset)


def sanitize(weights: Dict[str, mx.array]) -> Dict[str, mx.array]:
    """HF layout -> MLX: convs to ``[out, K, in]`` (the duration predictor and decoder layers); the
    decoder's token embedding, read by nothing but the tied LM head, becomes that head."""
    weights = dict(weights)
    table = weights.pop("model.decoder.embed_tokens.weight", None)
    if table is not None and "lm_head.weight" not in weights:
        weights["lm_head.weight"] = table
    return sanitize_convs(weights)
