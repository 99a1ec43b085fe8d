"""Parity of the vocoder (plain and CPU modules) and of seamless_mlx.cpu.conv with torch / transformers' SeamlessM4Tv2CodeHifiGan."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import math
import warnings

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from checkpoints import TINY, reinit_
from routes import use_route
from transformers import SeamlessM4Tv2Config
from transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2 import HifiGanResidualBlock, SeamlessM4Tv2CodeHifiGan

from seamless_mlx.config import ModelConfig
from seamless_mlx.cpu import blocks, conv, tuning
from seamless_mlx.layers import VariancePredictor
from seamless_mlx.vocoder import CodeHifiGan, ResidualBlock, hifigan_output_lengths, sanitize

CONV_TOL = dict(rtol=1e-5, atol=1e-5)
WAVE_REL_L2 = 1e-4


def _rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---------------------------------------------------------------- cpu/conv.py: convolutions as GEMMs


@pytest.mark.parametrize(
    "kernel,dilation,padding,stride",
    [(1, 1, 0, 1), (3, 1, 1, 1), (7, 1, 3, 1), (3, 3, 3, 1), (11, 5, 25, 1), (5, 2, 0, 1), (4, 1, 2, 2), (7, 3, 4, 2)],
)
def test_conv1d_matmul_equals_native_and_torch(kernel, dilation, padding, stride):
    rng = np.random.default_rng(kernel * 100 + dilation * 10 + stride)
    x = _rand(rng, (2, 37, 6))
    w = _rand(rng, (5, kernel, 6), 1 / math.sqrt(6 * kernel))
    b = _rand(rng, (5,))
    out = np.array(conv.conv1d(mx.array(x), mx.array(w), mx.array(b), stride, padding, dilation))
    native = np.array(
        mx.conv1d(mx.array(x), mx.array(w), stride=stride, padding=padding, dilation=dilation) + mx.array(b)
    )
    ref = F.conv1d(
        torch.from_numpy(x).transpose(1, 2),
        torch.from_numpy(w).permute(0, 2, 1),
        torch.from_numpy(b),
        stride=stride,
        padding=padding,
        dilation=dilation,
    )
    ref = ref.transpose(1, 2).numpy()
    assert out.shape == ref.shape == native.shape
    np.testing.assert_allclose(out, native, **CONV_TOL)
    np.testing.assert_allclose(out, ref, **CONV_TOL)


@pytest.mark.parametrize(
    "kernel,stride,padding,output_padding",
    [(8, 4, 2, 0), (4, 2, 1, 0), (11, 5, 3, 0), (3, 2, 0, 0), (2, 3, 0, 0), (5, 1, 2, 0), (5, 2, 1, 1), (4, 3, 0, 2)],
)
def test_conv_transpose1d_matmul_equals_native_and_torch(kernel, stride, padding, output_padding):
    rng = np.random.default_rng(kernel * 100 + stride * 10 + padding)
    x = _rand(rng, (2, 13, 6))
    w = _rand(rng, (4, kernel, 6), 1 / math.sqrt(6 * kernel))  # MLX layout [Cout, K, Cin]
    b = _rand(rng, (4,))
    out = np.array(conv.conv_transpose1d(mx.array(x), mx.array(w), mx.array(b), stride, padding, output_padding))
    native = np.array(
        mx.conv_transpose1d(
            mx.array(x), mx.array(w), stride=stride, padding=padding, output_padding=output_padding
        )
        + mx.array(b)
    )
    ref = F.conv_transpose1d(
        torch.from_numpy(x).transpose(1, 2),
        torch.from_numpy(w).permute(2, 0, 1),  # torch layout [Cin, Cout, K]
        torch.from_numpy(b),
        stride=stride,
        padding=padding,
        output_padding=output_padding,
    )
    ref = ref.transpose(1, 2).numpy()
    assert out.shape == ref.shape == native.shape == (2, (13 - 1) * stride - 2 * padding + kernel + output_padding, 4)
    np.testing.assert_allclose(out, native, **CONV_TOL)
    np.testing.assert_allclose(out, ref, **CONV_TOL)


def test_conv1d_large_values_match_torch_relatively():
    rng = np.random.default_rng(7)
    x = _rand(rng, (1, 50, 32), 300.0)
    w = _rand(rng, (16, 7, 32), 10.0)
    out = np.array(conv.conv1d(mx.array(x), mx.array(w), None, 1, 9, 3))
    ref = F.conv1d(torch.from_numpy(x).transpose(1, 2), torch.from_numpy(w).permute(0, 2, 1), padding=9, dilation=3)
    ref = ref.transpose(1, 2).numpy()
    assert np.abs(ref).max() > 1e3
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_depthwise_conv_as_multiply_adds_equals_native():
    rng = np.random.default_rng(3)
    x = mx.array(_rand(rng, (2, 30, 8)))
    native = nn.Conv1d(8, 8, 5, padding=2, groups=8, bias=True)
    native.bias = mx.array(_rand(rng, (8,)))
    fast = conv.Conv1d(8, 8, 5, padding=2, groups=8, bias=True)
    fast.update(native.parameters())
    np.testing.assert_allclose(np.array(fast(x)), np.array(native(x)), **CONV_TOL)


# ---------------------------------------------------------------- vocoder

VARIANTS = {
    "tiny": {},
    # v2-large's upsampler/resblock geometry (kernel 11 over stride 5, three dilations), few channels
    "large_geometry": {
        "upsample_rates": [5, 2],
        "upsample_kernel_sizes": [11, 4],
        "resblock_kernel_sizes": [3, 7, 11],
        "resblock_dilation_sizes": [[1, 3, 5]] * 3,
        "upsample_initial_channel": 16,
    },
}
_PAIRS = {}


def _reinit_convs(module, seed):
    """HF inits convs with std 0.02 and zero bias, which shrinks the signal layer by layer to ~0;
    unit-gain weights and non-zero biases keep the waveform O(1) so tanh and leaky ReLU bite."""
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                fan_in = m.weight.shape[1 if isinstance(m, torch.nn.Conv1d) else 0] * m.weight.shape[2]
                m.weight.normal_(0.0, 1.5 / math.sqrt(fan_in), generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)


def hf_vocoder(variant="tiny", seed=0):
    cfg = SeamlessM4Tv2Config(**{**TINY, "vocab_size": 64, "vocoder_num_langs": 4, **VARIANTS[variant]})
    torch.manual_seed(seed)
    holder = torch.nn.Module()  # reinit_ recognises the vocoder by its attribute name
    holder.vocoder = SeamlessM4Tv2CodeHifiGan(cfg).eval()
    reinit_(holder, seed)
    _reinit_convs(holder.vocoder, seed)
    return holder.vocoder, cfg


def mlx_from_hf(hf, cfg):
    weights = {k: mx.array(v.detach().numpy()) for k, v in hf.state_dict().items()}
    model = CodeHifiGan(ModelConfig.from_dict(cfg.to_dict()))
    model.load_weights(list(sanitize(weights).items()), strict=True)
    return model


def make_pair(variant="tiny", seed=0, route="cpu"):
    """(hf vocoder, mlx vocoder with the same weights on ``route``, hf config)."""
    if (variant, seed) not in _PAIRS:
        hf, cfg = hf_vocoder(variant, seed)
        _PAIRS[(variant, seed)] = (hf, mlx_from_hf(hf, cfg), cfg)
    hf, model, cfg = _PAIRS[(variant, seed)]
    return hf, use_route(model, route), cfg


def units(rng, lengths, cfg, pad_len=None):
    """Unit ids that avoid the pad id, padded with t2u_pad_token_id like transformers' generate does."""
    pad = cfg.t2u_pad_token_id
    width = pad_len or max(lengths)
    ids = np.full((len(lengths), width), pad, dtype=np.int64)
    for b, n in enumerate(lengths):
        row = rng.integers(0, cfg.unit_hifi_gan_vocab_size - 1, n)
        ids[b, :n] = row + (row >= pad)  # skip the pad id
    return ids


def run_both(hf, model, ids, spk, lang):
    with torch.no_grad():
        ref_wave, ref_len = hf(
            input_ids=torch.from_numpy(ids),
            speaker_id=torch.tensor([[s] for s in spk]),
            lang_id=torch.tensor([[l] for l in lang]),
        )
    wave, lengths = model(mx.array(ids), mx.array(spk), mx.array(lang))
    return np.array(wave), np.array(lengths), ref_wave.numpy(), ref_len.reshape(-1).numpy()


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("spk,lang", [(0, 0), (1, 3), (2, 1)])
def test_single_item_waveform_matches_transformers(route, variant, spk, lang):
    hf, model, cfg = make_pair(variant, route=route)
    ids = units(np.random.default_rng(spk * 10 + lang), [17], cfg)
    wave, lengths, ref_wave, ref_len = run_both(hf, model, ids, [spk], [lang])
    assert wave.dtype == np.float32
    assert wave.shape == ref_wave.shape
    np.testing.assert_array_equal(lengths, ref_len)
    assert np.abs(ref_wave).std() > 0.05  # a real signal, not a near-constant
    assert rel_l2(wave, ref_wave) < WAVE_REL_L2


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_padded_batch_waveforms_and_lengths_match_transformers(route, variant):
    hf, model, cfg = make_pair(variant, route=route)
    ids = units(np.random.default_rng(5), [18, 11], cfg)
    wave, lengths, ref_wave, ref_len = run_both(hf, model, ids, [2, 0], [1, 2])
    assert wave.shape == ref_wave.shape
    np.testing.assert_array_equal(lengths, ref_len)
    assert rel_l2(wave, ref_wave) < WAVE_REL_L2


def test_unpadded_batch_matches_transformers(route):
    hf, model, cfg = make_pair(route=route)
    ids = units(np.random.default_rng(11), [12, 12, 12], cfg)
    wave, lengths, ref_wave, ref_len = run_both(hf, model, ids, [0, 1, 2], [3, 3, 0])
    np.testing.assert_array_equal(lengths, ref_len)
    assert rel_l2(wave, ref_wave) < WAVE_REL_L2


def test_unit_ids_equal_to_pad_inside_sequence_follow_transformers_lengths(route):
    # transformers counts every pad-id unit as padding when computing lengths, wherever it is
    hf, model, cfg = make_pair(route=route)
    ids = units(np.random.default_rng(3), [14, 14], cfg)
    ids[0, 4] = cfg.t2u_pad_token_id
    ids[1, 9:] = cfg.t2u_pad_token_id
    wave, lengths, ref_wave, ref_len = run_both(hf, model, ids, [1, 1], [0, 0])
    np.testing.assert_array_equal(lengths, ref_len)
    assert rel_l2(wave, ref_wave) < WAVE_REL_L2


def test_speaker_changes_waveform_like_transformers(route):
    hf, model, cfg = make_pair(route=route)
    ids = units(np.random.default_rng(1), [15], cfg)
    wave0, _, ref0, _ = run_both(hf, model, ids, [0], [0])
    wave1, _, ref1, _ = run_both(hf, model, ids, [1], [0])
    assert rel_l2(ref1, ref0) > 1e-2
    assert rel_l2(wave1 - wave0, ref1 - ref0) < 1e-3


def test_cpu_and_plain_vocoders_give_the_same_waveform():
    hf, model, cfg = make_pair()
    ids = units(np.random.default_rng(2), [13, 9], cfg)
    fast, fast_len = use_route(model, "cpu")(mx.array(ids), mx.array([1, 2]), mx.array([0, 1]))
    native, native_len = use_route(model, "plain")(mx.array(ids), mx.array([1, 2]), mx.array([0, 1]))
    np.testing.assert_array_equal(np.array(fast_len), np.array(native_len))
    assert rel_l2(np.array(fast), np.array(native)) < 1e-5


def test_speaker_and_lang_ids_accept_b_b1_and_int():
    _, model, cfg = make_pair()
    ids = mx.array(units(np.random.default_rng(4), [10, 10], cfg))
    a, _ = model(ids, mx.array([1, 1]), mx.array([2, 2]))
    b, _ = model(ids, mx.array([[1], [1]]), mx.array([[2], [2]]))
    c, _ = model(ids, 1, 2)
    np.testing.assert_array_equal(np.array(a), np.array(b))
    np.testing.assert_array_equal(np.array(a), np.array(c))


def test_output_lengths_formula_matches_transformers():
    hf, _, cfg = make_pair("large_geometry")
    frames = np.array([1, 2, 7, 30, 101])
    ref = hf._get_output_hifigan_lengths(torch.from_numpy(frames)).numpy()
    ours = np.array(hifigan_output_lengths(ModelConfig.from_dict(cfg.to_dict()), mx.array(frames)))
    np.testing.assert_array_equal(ours, ref)
    assert hifigan_output_lengths(ModelConfig.from_dict(cfg.to_dict()), 7) == int(ref[2])


def _weight_norm_old_style(vocoder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wn = torch.nn.utils.weight_norm
        wn(vocoder.hifi_gan.conv_pre)
        for layer in vocoder.hifi_gan.upsampler:
            wn(layer)
        for block in vocoder.hifi_gan.resblocks:
            for layer in list(block.convs1) + list(block.convs2):
                wn(layer)
        wn(vocoder.hifi_gan.conv_post)


@pytest.mark.parametrize("form", ["parametrizations", "weight_g_v"])
def test_sanitize_folds_weight_norm(form):
    hf, cfg = hf_vocoder("tiny", seed=1)
    ids = units(np.random.default_rng(9), [12], cfg)
    with torch.no_grad():
        ref_wave, ref_len = hf(
            input_ids=torch.from_numpy(ids), speaker_id=torch.tensor([[1]]), lang_id=torch.tensor([[2]])
        )
    if form == "parametrizations":
        hf.apply_weight_norm()
        marker = "hifi_gan.upsampler.0.parametrizations.weight.original0"
    else:
        _weight_norm_old_style(hf)
        marker = "hifi_gan.upsampler.0.weight_g"
    state = hf.state_dict()
    assert marker in state and "hifi_gan.upsampler.0.weight" not in state
    model = mlx_from_hf(hf, cfg)  # strict load: every folded name must be present
    wave, lengths = model(mx.array(ids), mx.array([1]), mx.array([2]))
    np.testing.assert_array_equal(np.array(lengths), ref_len.reshape(-1).numpy())
    assert rel_l2(np.array(wave), ref_wave.numpy()) < WAVE_REL_L2


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
@pytest.mark.parametrize("kernel", [3, 4])  # an even kernel: torch's "same" pads one more zero on the right
def test_variance_predictor_with_padding_mask_matches_transformers(kernel, route):
    # the T2U duration predictor is the same module called with a mask
    from transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2 import SeamlessM4Tv2VariancePredictor

    torch.manual_seed(0)
    hf = SeamlessM4Tv2VariancePredictor(12, 8, kernel, 0.5).eval()
    _reinit_convs(hf, 0)
    model = VariancePredictor(12, 8, kernel)
    weights = {k: mx.array(v.detach().numpy()) for k, v in hf.state_dict().items()}
    model.load_weights(list(sanitize(weights).items()), strict=True)
    use_route(model, route)
    rng = np.random.default_rng(0)
    x = _rand(rng, (2, 9, 12))
    mask = np.ones((2, 9), dtype=np.int64)
    mask[1, 5:] = 0
    with torch.no_grad():
        ref = hf(torch.from_numpy(x), torch.from_numpy(mask)).numpy()
    out = np.array(model(mx.array(x), mx.array(mask)))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    unmasked = np.array(model(mx.array(x)))
    assert np.abs(unmasked[1, :5] - ref[1, :5]).max() > 1e-3  # the mask matters


# ---------------------------------------------------------------- the HiFi-GAN's CPU twins on any length

HIFI_ATOL = 2e-5  # tanh output / unit-gain activations, float32 on both sides


@pytest.mark.parametrize("kernel", [3, 11])
@pytest.mark.parametrize("stacked_ratio", [0, 10**6])  # every conv per tap / every conv one stacked GEMM
@pytest.mark.parametrize("block_rows", [None, 40])  # one piece / time blocks of 40 frames
def test_cpu_residual_block_matches_transformers_on_every_length(kernel, stacked_ratio, block_rows, monkeypatch):
    # the twin pads once by the whole receptive field and zeroes the margins between its convs:
    # lengths 1-3 are all margin, 300 crosses the stacked-taps threshold of 64 channels (256 rows)
    # and is 7 blocks and a part (37: one part block)
    monkeypatch.setattr(tuning, "STACKED_TAPS_MAX_RATIO", stacked_ratio)
    if block_rows:
        monkeypatch.setattr(tuning, "RESBLOCK_BLOCK_BYTES", block_rows * 2 * 64 * 4)
    torch.manual_seed(kernel)
    hf = HifiGanResidualBlock(64, kernel, (1, 3, 5), 0.1).eval()
    _reinit_convs(hf, kernel)
    block = ResidualBlock(64, kernel, [1, 3, 5], 0.1)
    weights = {k: mx.array(v.detach().numpy()) for k, v in hf.state_dict().items()}
    block.load_weights(list(sanitize(weights).items()), strict=True)
    use_route(block, "cpu")
    assert type(block) is blocks.ResidualBlock
    rng = np.random.default_rng(kernel)
    for length in (1, 2, 3, 37, 300):
        x = _rand(rng, (2, length, 64))
        with torch.no_grad():
            ref = hf(torch.from_numpy(x).transpose(1, 2)).transpose(1, 2).numpy()
        out = np.array(block(mx.array(x)))
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=0, atol=HIFI_ATOL * max(1.0, np.abs(ref).max()), err_msg=f"length {length}")


@pytest.mark.parametrize("frames", [1, 2, 3, 40])
def test_hifigan_windows_match_transformers(route, frames):
    # what a chunked vocoder feeds the generator: short windows, a batch of two
    hf, model, cfg = make_pair("large_geometry", route=route)
    dim = cfg.unit_embed_dim + cfg.lang_embed_dim + cfg.spkr_embed_dim
    x = _rand(np.random.default_rng(frames), (2, frames, dim))
    with torch.no_grad():
        ref = hf.hifi_gan(torch.from_numpy(x).transpose(1, 2)).numpy()
    out = np.array(model.hifi_gan(mx.array(x)))
    assert out.shape == ref.shape
    assert np.abs(ref).std() > 0.05
    np.testing.assert_allclose(out, ref, rtol=0, atol=HIFI_ATOL)
