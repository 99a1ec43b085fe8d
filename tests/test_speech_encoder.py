"""Parity of seamless_mlx.speech_encoder with transformers' SeamlessM4Tv2SpeechEncoder.

The tiny config makes the chunk mask (chunks of 6 frames, one chunk of history)
and the relative-position clipping (-4..+2) bite at 40-70 frames.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import math

import mlx.core as mx
import numpy as np
import pytest
import torch
from checkpoints import TINY, reinit_
from routes import use_route
from transformers import SeamlessM4Tv2Config
from transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2 import (
    SeamlessM4Tv2SpeechEncoder,
    _compute_new_attention_mask,
)

from seamless_mlx.config import ModelConfig
from seamless_mlx.speech_encoder import (
    ConformerSelfAttention,
    SpeechEncoder,
    chunk_keep,
    sanitize,
    sub_sampled_lengths,
)

ATOL = 1e-4

VARIANTS = {
    "tiny": {},
    "two_adapter_layers": {"num_adapter_layers": 2},
    "kernel8_stride8": {"adaptor_kernel_size": 8, "adaptor_stride": 8},
    "unlimited_left_chunks": {"speech_encoder_left_chunk_num": -1},
    # another activation (FFNs and the conv module), and no relative position scores at all
    "quick_gelu_no_positions": {"speech_encoder_hidden_act": "quick_gelu", "position_embeddings_type": None},
}
# (single length, batch lengths) per variant: several chunks, distances past both clips
LENGTHS = {
    "tiny": (47, [50, 31]),
    "two_adapter_layers": (44, [50, 23]),
    "kernel8_stride8": (70, [70, 45]),
    "unlimited_left_chunks": (40, [40, 27]),
    "quick_gelu_no_positions": (47, [50, 31]),
}

_CACHE = {}


def make_pair(overrides=None, seed=0):
    """(hf speech encoder, mlx SpeechEncoder with the same weights, hf config)."""
    key = (tuple(sorted((overrides or {}).items())), seed)
    if key not in _CACHE:
        cfg = SeamlessM4Tv2Config(**{**TINY, "vocab_size": 64, **(overrides or {})})
        torch.manual_seed(seed)
        hf = SeamlessM4Tv2SpeechEncoder(cfg).eval()
        reinit_(hf, seed)
        model = SpeechEncoder(ModelConfig.from_dict(cfg.to_dict()))
        weights = {k: mx.array(v.numpy()) for k, v in hf.state_dict().items()}
        model.load_weights(list(sanitize(weights).items()), strict=True)
        _CACHE[key] = (hf, model, cfg)
    return _CACHE[key]


def features(batch, frames, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 160, generator=g)


def padding_mask(lengths):
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return mask


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_single_input_matches_transformers(variant, route):
    hf, model, _ = make_pair(VARIANTS[variant])
    use_route(model, route)
    x = features(1, LENGTHS[variant][0], seed=1)
    with torch.no_grad():
        ref = hf(input_features=x).last_hidden_state.numpy()
    out, out_mask = model(mx.array(x.numpy()))
    assert out_mask is None
    assert out.shape == ref.shape
    np.testing.assert_allclose(np.array(out), ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_padded_batch_matches_transformers_on_valid_positions(variant, route):
    hf, model, _ = make_pair(VARIANTS[variant])
    use_route(model, route)
    lengths = LENGTHS[variant][1]
    x = features(len(lengths), max(lengths), seed=2)
    mask = padding_mask(lengths)
    with torch.no_grad():
        ref = hf(input_features=x, attention_mask=mask).last_hidden_state
    ref_mask = _compute_new_attention_mask(ref, hf._compute_sub_sample_lengths_from_attention_mask(mask)).numpy()
    out, out_mask = model(mx.array(x.numpy()), mx.array(mask.numpy()))
    out, out_mask = np.array(out), np.array(out_mask)
    assert out.shape == ref.shape
    np.testing.assert_array_equal(out_mask, ref_mask)
    assert out_mask[1].sum() < out_mask[0].sum() or variant == "two_adapter_layers"
    ref = ref.numpy()
    for b in range(len(lengths)):
        valid = ref_mask[b].astype(bool)
        np.testing.assert_allclose(out[b][valid], ref[b][valid], atol=ATOL, rtol=0)


@pytest.mark.parametrize("kernel,stride", [(4, 2), (8, 8), (5, 3), (3, 1)])
def test_sub_sampled_lengths_match_transformers(kernel, stride):
    hf, _, _ = make_pair({"adaptor_kernel_size": kernel, "adaptor_stride": stride})
    lengths = [0, 1, 2, 3, 7, 8, 9, 16, 17, 70, 1001]
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ref = hf._compute_sub_sample_lengths_from_attention_mask(mask).long().numpy()
    cfg = ModelConfig(adaptor_kernel_size=kernel, adaptor_stride=stride)
    got = np.array(sub_sampled_lengths(mx.array(lengths), cfg))
    np.testing.assert_array_equal(got, ref)


def test_relative_attention_matches_naive_distance_table():
    # Reference: transformers' formula with the [T, T, head_dim] table built explicitly.
    _, model, cfg = make_pair()
    attn = model.encoder.layers[0].self_attn
    T, B = 13, 2
    x = mx.random.normal((B, T, cfg.hidden_size), key=mx.random.key(4))
    keep = chunk_keep(T, cfg.speech_encoder_chunk_size, cfg.speech_encoder_left_chunk_num)
    key_valid = mx.array([[1] * T, [1] * 9 + [0] * 4]).astype(mx.bool_)
    keep = keep[None, None] & key_valid[:, None, None, :]
    out = np.array(attn(x, keep))

    H, Dh = attn.num_heads, attn.head_dim
    w = {k: np.array(v) for k, v in dict(_flatten(attn.parameters())).items()}
    xn = np.array(x)

    def proj(name):
        y = xn @ w[f"{name}.weight"].T + w[f"{name}.bias"]
        return y.reshape(B, T, H, Dh).transpose(0, 2, 1, 3)

    q, k, v = proj("linear_q"), proj("linear_k"), proj("linear_v")
    pos = np.arange(T)
    dist = np.clip(pos[None, :] - pos[:, None], -cfg.left_max_position_embeddings, cfg.right_max_position_embeddings)
    table = w["distance_embedding.weight"][dist + cfg.left_max_position_embeddings]  # [T, T, Dh]
    scores = (q @ k.transpose(0, 1, 3, 2) + np.einsum("bhld,lrd->bhlr", q, table)) / math.sqrt(Dh)
    scores = np.where(np.array(keep), scores, -1e30)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ref = (p @ v).transpose(0, 2, 1, 3).reshape(B, T, -1) @ w["linear_out.weight"].T + w["linear_out.bias"]
    np.testing.assert_allclose(out, ref, atol=ATOL, rtol=0)


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _flatten(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], tree


def test_relative_position_term_is_used():
    # Same attention with the distance embedding zeroed must differ: guards against
    # a silently dropped relative term (the parity tests would also catch it).
    _, model, cfg = make_pair()
    attn = model.encoder.layers[0].self_attn
    x = mx.random.normal((1, 20, cfg.hidden_size), key=mx.random.key(5))
    with_rel = np.array(attn(x))
    saved = attn.distance_embedding.weight
    attn.distance_embedding.weight = mx.zeros_like(saved)
    try:
        without = np.array(attn(x))
    finally:
        attn.distance_embedding.weight = saved
    assert np.abs(with_rel - without).max() > 1e-2


def _conformer(model, x):
    return np.array(model.encoder(model.feature_projection(mx.array(x.numpy()))))


def test_chunk_mask_blocks_future_chunks():
    # Attention reaches at most the end of the query's own chunk and the depthwise
    # conv is causal, so frames of chunk c never see chunk c+1 in any layer.
    _, model, cfg = make_pair()
    x = features(1, 42, seed=6)
    cut = 4 * TINY["speech_encoder_chunk_size"]  # first frame of chunk 4
    changed = x.clone()
    changed[:, cut:] = torch.randn(1, 42 - cut, 160)
    a, b = _conformer(model, x), _conformer(model, changed)
    np.testing.assert_allclose(a[:, :cut], b[:, :cut], atol=1e-6, rtol=0)
    assert np.abs(a[:, cut:] - b[:, cut:]).max() > 1e-2

    # Without chunking the same edit reaches the early frames: the check above can fail.
    cfg_nochunk = SeamlessM4Tv2Config(**{**TINY, "vocab_size": 64, "speech_encoder_chunk_size": None})
    unchunked = SpeechEncoder(ModelConfig.from_dict(cfg_nochunk.to_dict()))
    unchunked.update(model.parameters())
    a, b = _conformer(unchunked, x), _conformer(unchunked, changed)
    assert np.abs(a[:, :cut] - b[:, :cut]).max() > 1e-2


def test_config_without_chunking_matches_transformers():
    hf, _, _ = make_pair({"speech_encoder_chunk_size": None})
    _, model, _ = make_pair({"speech_encoder_chunk_size": None})
    x = features(1, 30, seed=7)
    with torch.no_grad():
        ref = hf(input_features=x).last_hidden_state.numpy()
    out, _ = model(mx.array(x.numpy()))
    np.testing.assert_allclose(np.array(out), ref, atol=ATOL, rtol=0)


def test_fully_masked_row_is_finite_in_float16():
    # A padded frame whose whole attention window is padding gets an all-masked
    # row. With strongly negative scores, score + finfo(float16).min overflows to
    # -inf and the softmax gives NaN; the mask constant must leave headroom.
    _, model, cfg = make_pair()
    attn = ConformerSelfAttention(ModelConfig.from_dict(cfg.to_dict()))
    attn.update(model.encoder.layers[0].self_attn.parameters())
    attn.linear_k.weight = -attn.linear_q.weight  # k = -q: every q.k is -|q|^2 < 0
    attn.linear_k.bias = -attn.linear_q.bias
    attn.set_dtype(mx.float16)
    T = 6
    x = mx.broadcast_to(mx.random.normal((1, 1, cfg.hidden_size), key=mx.random.key(8)) * 8, (1, T, cfg.hidden_size))
    keep = mx.array([[True] * T] * (T - 1) + [[False] * T])[None, None]
    out = attn(x.astype(mx.float16), keep)
    assert out.dtype == mx.float16
    assert np.isfinite(np.array(out.astype(mx.float32))).all()


def test_sanitize_converts_conv_layouts():
    hf, _, cfg = make_pair()
    sd = {k: mx.array(v.numpy()) for k, v in hf.state_dict().items()}
    out = sanitize(sd)
    D, K = cfg.hidden_size, cfg.conv_depthwise_kernel_size
    assert out["encoder.layers.0.conv_module.pointwise_conv1.weight"].shape == (2 * D, D)
    assert out["encoder.layers.0.conv_module.depthwise_conv.weight"].shape == (D, K, 1)
    assert out["adapter.layers.0.residual_conv.weight"].shape == (2 * D, cfg.adaptor_kernel_size, D)
    assert set(out) == set(sd)


def test_every_activation_a_config_can_name_matches_transformers():
    from transformers.activations import ACT2FN

    from seamless_mlx.layers import ACTIVATIONS

    x = np.linspace(-12, 12, 4001).astype(np.float32)
    for name, fn in ACTIVATIONS.items():
        np.testing.assert_allclose(np.array(fn(mx.array(x))), ACT2FN[name](torch.tensor(x)).numpy(), atol=2e-6, err_msg=name)


def test_unknown_activation_is_refused_with_the_supported_names():
    cfg = ModelConfig.from_dict({**TINY, "vocab_size": 64, "speech_encoder_hidden_act": "prelu"})
    with pytest.raises(ValueError, match="unsupported activation 'prelu'.*quick_gelu"):
        SpeechEncoder(cfg)


@pytest.mark.parametrize("variant", ["tiny", "two_adapter_layers", "kernel8_stride8"])
def test_the_shortest_input_transformers_takes_is_the_shortest_we_take(variant, route):
    """Below its shortest input the adaptor's convolution is refused by torch; we refuse it with a
    message (MLX's convolution would return 0 frames, and the CPU twin's stacked taps failed)."""
    from seamless_mlx.speech_encoder import min_input_frames

    hf, model, cfg = make_pair(VARIANTS[variant])
    use_route(model, route)
    shortest = min_input_frames(model.config)
    with torch.no_grad():
        ref = hf(input_features=features(1, shortest, seed=2)).last_hidden_state.numpy()
        if shortest > 1:
            with pytest.raises(RuntimeError):
                hf(input_features=features(1, shortest - 1, seed=2))
    out, _ = model(mx.array(features(1, shortest, seed=2).numpy()))
    np.testing.assert_allclose(np.array(out), ref, atol=ATOL, rtol=0)
    if shortest > 1:
        with pytest.raises(ValueError, match=r"too short for this model.*needs at least"):
            model(mx.array(features(1, shortest - 1, seed=2).numpy()))
