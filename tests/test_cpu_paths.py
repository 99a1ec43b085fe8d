"""The CPU twins of seamless_mlx.cpu give the same numbers as the plain modules they replace."""

import gc
import platform

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from checkpoints import TINY
from seamless_mlx import cpu, layers
from seamless_mlx.cache import KVCache
from seamless_mlx.config import ModelConfig
from seamless_mlx.cpu import conv, linear, ops, streams, tuning
from seamless_mlx.speech_encoder import SpeechEncoder

ON_CPU = mx.default_device() == mx.cpu


def _encoder():
    enc = SpeechEncoder(ModelConfig.from_dict({**TINY, "vocab_size": 64}))
    mx.eval(enc.parameters())
    return enc


def _speech(with_mask=True):
    x = mx.random.normal((2, 40, 160), key=mx.random.key(8))
    lengths = np.r_[np.ones(40), np.r_[np.ones(25), np.zeros(15)]].reshape(2, 40).astype(np.int32)
    return x, mx.array(lengths) if with_mask else None


def test_every_twin_subclasses_the_class_it_replaces():
    for cls, twin in cpu.SWAPS.items():
        assert issubclass(twin, cls) and twin is not cls
        assert "__init__" not in vars(twin)  # same construction, same parameters


@pytest.mark.parametrize("with_mask", [False, True])
def test_accelerated_speech_encoder_equals_the_plain_one(with_mask):
    enc = _encoder()
    x, mask = _speech(with_mask)
    plain, _ = enc(x, mask)
    fast, _ = cpu.accelerate(enc)(x, mask)
    np.testing.assert_allclose(np.array(fast), np.array(plain), atol=2e-5)


@pytest.mark.parametrize("with_mask", [False, True])
def test_head_parallel_attention_equals_single_stream(monkeypatch, with_mask):
    enc = cpu.accelerate(_encoder())
    x, mask = _speech(with_mask)
    monkeypatch.setattr(tuning, "HEAD_PARALLEL_MIN_ELEMENTS", 1 << 60)
    ref, _ = enc(x, mask)
    mx.eval(ref)
    monkeypatch.setattr(tuning, "HEAD_PARALLEL_MIN_ELEMENTS", 0)
    assert streams.head_groups(2, 4, 40, 40) > 1 or tuning.CPU_CORES == 1
    out, _ = enc(x, mask)
    np.testing.assert_allclose(np.array(out), np.array(ref), atol=1e-6)


def test_split_matvec_equals_plain_product(monkeypatch):
    w = mx.random.normal((1000, 64), key=mx.random.key(1))
    b = mx.random.normal((1000,), key=mx.random.key(2))
    x = mx.random.normal((1, 1, 64), key=mx.random.key(3))
    monkeypatch.setattr(tuning, "SPLIT_MATVEC_MIN_BYTES", 0)
    assert linear.matvec_groups(x, w) > 1 or streams.cpu_stream_count() == 1
    np.testing.assert_allclose(np.array(linear.linear(x, w, b)), np.array(x @ w.T + b), atol=1e-5)


def test_split_views_are_kept_per_weight_and_dropped_with_it(monkeypatch):
    monkeypatch.setattr(tuning, "SPLIT_MATVEC_MIN_BYTES", 0)
    if linear.matvec_groups(mx.zeros((1, 64)), mx.zeros((1000, 64))) == 1:
        pytest.skip("one CPU stream: nothing is split")
    w = mx.random.normal((1000, 64), key=mx.random.key(1))
    b = mx.random.normal((1000,), key=mx.random.key(2))
    x = mx.random.normal((1, 1, 64), key=mx.random.key(3))
    for bias in (b, None):
        want = x @ w.T + (0 if bias is None else bias)
        for _ in range(2):  # the second call reuses the views the first one made (and evaluated)
            np.testing.assert_allclose(np.array(linear.linear(x, w, bias)), np.array(want), atol=1e-5)
    keys = [k for k in streams._SPLIT_VIEWS if k[2] == id(w)]  # (cut, groups, id(weight), id(bias))
    assert len(keys) == 2  # with and without the bias
    views = streams._SPLIT_VIEWS[keys[0]][1]
    linear.linear(x, w, b)
    assert streams._SPLIT_VIEWS[keys[0]][1] is views
    w2 = w * 2  # a new weight array gets views of its own
    np.testing.assert_allclose(np.array(linear.linear(x, w2, b)), np.array(x @ w2.T + b), atol=1e-4)
    del w, w2, views
    gc.collect()
    assert not [k for k in streams._SPLIT_VIEWS if k in keys]


@pytest.mark.parametrize("rows", [1, 12])
def test_split_quantized_products_keep_their_parts(rows):
    if streams.cpu_stream_count() == 1:
        pytest.skip("one CPU stream: nothing is split")
    ql = linear.QuantizedLinear.from_linear(nn.Linear(64, 256), group_size=32, bits=8)
    x = mx.random.normal((1, rows, 64), key=mx.random.key(9))
    want = mx.quantized_matmul(x, ql.weight, ql.scales, ql.get("biases"), transpose=True, group_size=32, bits=8) + ql.bias
    for _ in range(2):
        np.testing.assert_allclose(np.array(ql(x)), np.array(want), atol=1e-4)
    assert [k for k in streams._SPLIT_VIEWS if k[0] is linear._quantized_part and k[2] == id(ql.weight)]


def test_cpu_layer_norm_equals_mlx_layer_norm():
    ln = nn.LayerNorm(48, eps=1e-5)
    ln.update({"weight": mx.random.normal((48,), key=mx.random.key(4)), "bias": mx.random.normal((48,), key=mx.random.key(5))})
    plain = nn.LayerNorm.__call__
    cpu.accelerate(ln)
    assert type(ln) is ops.LayerNorm and [k for k, _ in tree_flatten(ln.parameters())] == ["weight", "bias"]
    for shape in [(1, 1, 48), (48,), (2, 7, 48), (300, 48)]:  # one row: compiled; more: row mat-vecs
        x = 3 * mx.random.normal(shape, key=mx.random.key(6)) + 5
        np.testing.assert_allclose(np.array(ln(x)), np.array(plain(ln, x)), atol=1e-5, rtol=1e-5)
        x64, w64, b64 = (np.array(a).astype(np.float64) for a in (x, ln.weight, ln.bias))
        centred = x64 - x64.mean(-1, keepdims=True)
        exact = centred / np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-5) * w64 + b64
        np.testing.assert_allclose(np.array(ln(x)), exact, atol=5e-6)  # MLX's own: ~1.5e-5 here
    bare = cpu.accelerate(nn.LayerNorm(48, eps=1e-5, affine=False))  # no weight / bias: same route
    x = mx.random.normal((5, 48), key=mx.random.key(8))
    np.testing.assert_allclose(np.array(bare(x)), np.array(mx.fast.layer_norm(x, None, None, 1e-5)), atol=2e-6)
    x16 = mx.random.normal((3, 48), key=mx.random.key(7)).astype(mx.bfloat16)
    # other dtypes keep MLX's own layer norm
    np.testing.assert_array_equal(np.array(ln(x16).astype(mx.float32)), np.array(plain(ln, x16).astype(mx.float32)))


def test_greedy_with_split_matvecs_matches_transformers(monkeypatch, tiny_checkpoint, tiny_hf):
    import seamless_mlx as sm

    hf, proc = tiny_hf
    monkeypatch.setattr(tuning, "SPLIT_MATVEC_MIN_BYTES", 0)
    model = sm.SeamlessM4Tv2ForTextToText.from_pretrained(tiny_checkpoint, cpu_routes=True)
    enc = proc(text=["Hello world, how are you?", "Bonjour"], src_lang="eng", return_tensors="pt", padding=True)
    ref = hf.generate(**enc, tgt_lang="fra", generate_speech=False).sequences.tolist()
    out = model.generate(input_ids=mx.array(enc["input_ids"].numpy()),
                         attention_mask=mx.array(enc["attention_mask"].numpy()), tgt_lang="fra")
    assert out.sequences.tolist() == ref


@pytest.mark.parametrize("rows", [1, 2, 5, 40, 300])
def test_few_row_products_equal_the_plain_product(rows):
    w = mx.random.normal((96, 64), key=mx.random.key(1))
    b = mx.random.normal((96,), key=mx.random.key(2))
    x = mx.random.normal((1, rows, 64), key=mx.random.key(3))
    np.testing.assert_allclose(np.array(linear.linear(x, w, b)), np.array(x @ w.T + b), atol=1e-5)
    np.testing.assert_allclose(np.array(linear.product(x[0], w)), np.array(x[0] @ w.T), atol=1e-5)


def _decode(att, steps):
    cache = KVCache()
    return [np.array(att(x, cache=cache)) for x in steps]


def test_fused_qkv_keeps_names_and_values_and_notices_replaced_weights():
    att = layers.Attention(32, 4)
    mx.eval(att.parameters())
    steps = [mx.random.normal((2, L, 32), key=mx.random.key(7 + L)) for L in (3, 1, 1)]
    before = dict(tree_flatten(att.parameters()))
    ref = _decode(att, steps)
    cpu.accelerate(att)
    got = _decode(att, steps)  # the first call fuses
    assert att._fused_qkv() is not None
    after = dict(tree_flatten(att.parameters()))
    assert list(after) == list(before)  # no new parameter
    assert all(mx.array_equal(before[k], after[k]) for k in before)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=1e-5)
    att.k_proj.weight = mx.zeros_like(att.k_proj.weight)  # a weight replaced after fusing
    assert att._fused_qkv() is None
    got = _decode(att, steps)
    ref = _decode(cpu.plain(att), steps)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=1e-5)


def test_polynomial_transcendentals_are_accurate():
    # against float64 numpy; the contract of ops.exp_bounded: <= 6e-6 relative for |x| <= 20
    # (MLX's own CPU exp is off by up to ~2e-6), saturated outside
    x = mx.concatenate([mx.linspace(-120, 120, 20001), mx.array([-1e30, -88.0, -20.0, 0.0, 20.0, 87.0, 1e30])])
    x64 = np.array(x).astype(np.float64)
    with np.errstate(over="ignore"):
        sig = 1 / (1 + np.exp(-x64))
    inner = np.abs(x64) <= 20
    np.testing.assert_allclose(np.array(ops.exp_bounded(x))[inner], np.exp(x64[inner]), rtol=6e-6)
    np.testing.assert_allclose(np.array(ops.sigmoid(x)), sig, rtol=6e-6, atol=3e-9)
    np.testing.assert_allclose(np.array(ops.silu(x)), x64 * sig, rtol=6e-6, atol=5e-8)
    d = -mx.abs(x)
    num = np.array(ops.softmax_numerator(d, mx.zeros((1,))))
    np.testing.assert_allclose(num, np.exp(np.array(d).astype(np.float64)), rtol=6e-6, atol=3e-9)
    a = mx.random.normal((3, 8), key=mx.random.key(3))
    np.testing.assert_allclose(np.array(ops.glu(a)), np.array(a[:, :4] * mx.sigmoid(a[:, 4:])), rtol=6e-6)


def test_every_activation_twin_equals_the_plain_activation():
    x = mx.linspace(-30, 30, 6001)
    for name, fn in layers.ACTIVATIONS.items():
        np.testing.assert_allclose(np.array(ops.activation(fn)(x)), np.array(fn(x)), rtol=1e-5, atol=1e-6, err_msg=name)
    assert ops.activation(nn.silu) is ops.silu and ops.activation(nn.relu) is nn.relu


def test_linear_glu_equals_glu_of_the_whole_product():
    lin = linear.Linear(32, 64, bias=False)
    x = mx.random.normal((2, 700, 32), key=mx.random.key(9))  # above ELEMENTWISE_SPLIT_MIN once doubled
    whole = ops.glu(lin(x), axis=-1)
    np.testing.assert_allclose(np.array(linear.linear_glu(x, lin)), np.array(whole), atol=1e-6)
    np.testing.assert_allclose(np.array(whole), np.array(nn.glu(x @ lin.weight.T)), atol=2e-6)
    q = nn.QuantizedLinear.from_linear(lin, group_size=32, bits=8)  # other layers: the plain route
    np.testing.assert_array_equal(np.array(linear.linear_glu(x, q)), np.array(ops.glu(q(x), axis=-1)))


def test_wide_products_in_column_blocks_equal_the_whole(monkeypatch):
    # thresholds scaled down: 24 rows count as many, 16 outputs as wide, blocks of 6 (the last short)
    monkeypatch.setattr(tuning, "TRANSPOSED_PRODUCT_MAX_ROWS", 8)
    monkeypatch.setattr(tuning, "WIDE_PRODUCT_COLUMNS", 16)
    monkeypatch.setattr(tuning, "COLUMN_BLOCK", 6)
    x = mx.random.normal((2, 12, 32), key=mx.random.key(10))
    lin = linear.Linear(32, 40)
    assert linear.column_blocks(x, lin.weight, 40) == 6
    for act in (ops.silu, nn.relu):
        np.testing.assert_allclose(np.array(linear.linear_act(x, lin, act)), np.array(act(x @ lin.weight.T + lin.bias)), atol=1e-5)
    glu_lin = linear.Linear(32, 40, bias=False)  # halves of 20: blocks of 6, 6, 6, 2
    np.testing.assert_allclose(np.array(linear.linear_glu(x, glu_lin)), np.array(nn.glu(x @ glu_lin.weight.T)), atol=1e-5)
    assert linear.column_blocks(x[:, :4], lin.weight, 40) == 0  # few rows: one product
    ffn = layers.FeedForward(32, 40)
    plain = ffn(x)
    np.testing.assert_allclose(np.array(cpu.accelerate(ffn)(x)), np.array(plain), atol=1e-5)


def test_large_element_wise_passes_split_over_streams_give_the_same_values():
    x = mx.random.normal((2, 700, 1024), key=mx.random.key(4)) * 6  # above ELEMENTWISE_SPLIT_MIN
    assert x.size >= tuning.ELEMENTWISE_SPLIT_MIN
    for split, whole in ((ops.silu, ops._silu_whole), (ops.sigmoid, ops._sigmoid_whole)):
        assert mx.array_equal(split(x), whole(x))
    a, b = mx.split(x, 2, axis=-1)
    assert mx.array_equal(ops.glu(x), ops._glu_whole(a, b))


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("bias_shape", [(2, 4, 37, 37), (2, 1, 1, 37), (1, 1, 37, 37)])
def test_cpu_attention_matches_fused_kernel(masked, bias_shape):
    k1, k2, k3, k4 = mx.random.split(mx.random.key(5), 4)
    q, k, v = (mx.random.normal((2, 4, 37, 16), key=key) for key in (k1, k2, k3))
    bias = mx.random.normal(bias_shape, key=k4)  # added to the scores by the GEMM, broadcast
    if masked:  # the speech encoder's masked entries: half the float32 minimum; one row fully masked
        keep = mx.random.uniform(key=k4, shape=(2, 1, 37, 37)) > 0.3
        keep = keep.at[0, 0, 5].multiply(False)
        bias = mx.where(keep, bias, mx.finfo(mx.float32).min / 2)
    ref = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.25, mask=bias)
    np.testing.assert_allclose(np.array(ops.attention(q, k, v, 0.25, bias)), np.array(ref), atol=2e-6)


def test_time_split_depthwise_conv_equals_single_pass():
    w = mx.random.normal((512, 31, 1), key=mx.random.key(6))
    x = mx.random.normal((1, 630, 512), key=mx.random.key(7))  # big enough to be split
    assert x.size >= tuning.DEPTHWISE_SPLIT_MIN
    ref = sum(x[:, i : i + 600] * w[:, i, 0] for i in range(31))
    np.testing.assert_allclose(np.array(conv.depthwise_conv1d(x, w)), np.array(ref), atol=1e-4)


def test_attention_and_feed_forward_blocks_equal_the_whole(monkeypatch):
    enc = cpu.accelerate(_encoder())
    cfg = ModelConfig.from_dict({**TINY, "vocab_size": 64})
    x, mask = _speech()
    ref, _ = enc(x, mask)
    mx.eval(ref)
    monkeypatch.setattr(tuning, "ATTENTION_SLICE_BYTES", 0)
    out, _ = enc(x, mask)
    np.testing.assert_allclose(np.array(out), np.array(ref), atol=1e-6)
    # and in blocks of queries (7 rows: 40 frames are 6 blocks, the last one shorter), with the
    # feed-forwards in row blocks too
    monkeypatch.setattr(tuning, "ATTENTION_BLOCK_BYTES", 2 * 40 * 4 * 7)
    monkeypatch.setattr(tuning, "FFN_BLOCK_BYTES", 2 * cfg.speech_encoder_intermediate_size * 4 * 9)
    out, _ = enc(x, mask)
    np.testing.assert_allclose(np.array(out), np.array(ref), atol=1e-5)
    # and the wide products (feed-forward, pointwise conv) in column blocks inside those row blocks
    monkeypatch.setattr(tuning, "TRANSPOSED_PRODUCT_MAX_ROWS", 4)
    monkeypatch.setattr(tuning, "WIDE_PRODUCT_COLUMNS", 16)
    monkeypatch.setattr(tuning, "COLUMN_BLOCK", 24)
    out, _ = enc(x, mask)
    np.testing.assert_allclose(np.array(out), np.array(ref), atol=1e-5)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt thresholds")
def test_large_buffers_are_recycled_from_the_heap_not_faulted_in_afresh():
    # MLX's CPU backend caches no freed buffers; above glibc's default mmap threshold (<= 32 MB)
    # every 64 MB output would be a fresh mapping, its 16 k pages faulted in one by one each time
    import resource

    from seamless_mlx.cpu import memory

    assert memory.keep_freed_buffers()
    x = mx.zeros((16384, 1024))  # 64 MB
    mx.eval(x)
    y = x + 1
    mx.eval(y)
    del y  # the heap has grown to hold one such buffer
    pages = x.nbytes // resource.getpagesize()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        y = x + 1
        mx.eval(y)
        del y
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 0.25 * 3 * pages
