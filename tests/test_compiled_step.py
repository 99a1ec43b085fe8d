"""The compiled one-token decoder step (fixed-shape KV cache, ``mx.compile``) against the eager step
and against transformers: logits, greedy / beam / sampled ids, batch rows that end early, and cache
growth past the pre-allocated block.

Two checkpoints: the tiny one, and a wider, deeper one whose EOS logit is raised
(``eos_logit_offset``) so that the rows of a batch end at different steps.
"""

import mlx.core as mx
import numpy as np
import pytest

from checkpoints import build_checkpoint, load_hf
from routes import use_route

import seamless_mlx as sm
from seamless_mlx.cache import KVCache
from seamless_mlx.cpu import tuning
from seamless_mlx.text import DecoderSteps

TEXTS = [
    "Hello world, how are you today?",
    "Bonjour",
    "Привет, мир! Как у тебя дела? 1234",
    "The quick brown fox jumps over the lazy dog.",
]


@pytest.fixture(scope="module", params=["tiny", "early-eos"])
def built(request, tiny_checkpoint, tmp_path_factory):
    """(mlx T2TT model, hf model, hf processor)."""
    path = tiny_checkpoint
    if request.param == "early-eos":
        overrides = dict(hidden_size=48, encoder_attention_heads=6, decoder_attention_heads=6, decoder_layers=3,
                         decoder_ffn_dim=96, t2u_variance_predictor_embed_dim=48)
        path, _, _ = build_checkpoint(tmp_path_factory.mktemp("early") / "hf", seed=2, overrides=overrides,
                                      eos_logit_offset=1.0)
    hf, proc = load_hf(path)
    return sm.SeamlessM4Tv2ForTextToText.from_pretrained(path), hf, proc


@pytest.fixture
def pair(built, route, monkeypatch):
    """``built`` on each route; ``pair[3](compiled)`` makes its decoder's steps compiled or eager."""
    use_route(built[0], route)

    def set_compiled(compiled: bool):
        monkeypatch.setattr(type(built[0].text_decoder), "compile_steps", compiled)

    return (*built, set_compiled)


def _inputs(proc, texts=TEXTS):
    enc = proc(text=texts, src_lang="eng", return_tensors="pt", padding=True)
    return enc, mx.array(enc["input_ids"].numpy()), mx.array(enc["attention_mask"].numpy())


def _generate(pair, compiled: bool, ids, mask, **kw):
    model, set_compiled = pair[0], pair[3]
    set_compiled(compiled)
    out = model.generate(input_ids=ids, attention_mask=mask, tgt_lang="fra", **kw)
    return out.sequences.tolist()


def _hf_generate(hf, enc, **kw):
    return hf.generate(**enc, tgt_lang="fra", generate_speech=False, **kw).sequences.tolist()


def test_compiled_steps_equal_eager_steps(pair):
    model, _, proc, _ = pair
    _, ids, mask = _inputs(proc)
    memory, mask = model.encode_text(ids, mask)
    dec = model.text_decoder
    eager = DecoderSteps(dec, model.shared, memory, mask, compiled=False)
    compiled = DecoderSteps(dec, model.shared, memory, mask, compiled=True)
    dec.__dict__.pop("_compiled_steps", None)
    tokens = mx.array([[3, 5]] * len(TEXTS))
    for _ in range(10):
        ref, ref_h = eager(tokens)
        got, got_h = compiled(tokens)
        np.testing.assert_allclose(np.array(got), np.array(ref), atol=1e-5)
        np.testing.assert_allclose(np.array(got_h), np.array(ref_h), atol=1e-5)
        assert mx.argmax(got, axis=-1).tolist() == mx.argmax(ref, axis=-1).tolist()
        tokens = mx.argmax(ref, axis=-1)[:, None]
    assert dec.__dict__.get("_compiled_steps"), "the one-token steps did not run compiled"
    assert compiled.cache[0][0].offset == eager.cache[0][0].offset == 11


def test_greedy_batch_with_rows_ending_early_matches_eager_and_transformers(pair):
    model, hf, proc, _ = pair
    enc, ids, mask = _inputs(proc)
    ref = _hf_generate(hf, enc, max_new_tokens=16)
    assert _generate(pair, True, ids, mask, max_new_tokens=16) == ref
    assert _generate(pair, False, ids, mask, max_new_tokens=16) == ref


def test_early_eos_checkpoint_has_rows_ending_at_different_steps(built):
    """What makes the early-eos checkpoint's batch tests discriminating."""
    model, hf, proc = built
    if model.text_decoder.layers[0].self_attn.num_heads != 6:
        pytest.skip("the tiny checkpoint's rows need not end early")
    enc, _, _ = _inputs(proc)
    seqs = np.array(_hf_generate(hf, enc, max_new_tokens=16))
    lengths = {int((row != hf.config.pad_token_id).sum()) for row in seqs}
    assert len(lengths) > 1 and min(lengths) < seqs.shape[1]


@pytest.mark.parametrize("kw", [dict(num_beams=3, max_new_tokens=10, num_return_sequences=2),
                                dict(num_beams=2, max_new_tokens=8, early_stopping=True)], ids=["b3r2", "b2-early"])
def test_beam_search_matches_eager_and_transformers(pair, kw):
    model, hf, proc, _ = pair
    enc, ids, mask = _inputs(proc)
    ref = _hf_generate(hf, enc, **kw)
    assert _generate(pair, True, ids, mask, **kw) == ref
    assert _generate(pair, False, ids, mask, **kw) == ref


@pytest.mark.parametrize("kw", [dict(do_sample=True, top_k=0, max_new_tokens=12),
                                dict(do_sample=True, num_beams=2, max_new_tokens=8)], ids=["sample", "beam-sample"])
def test_sampling_with_a_seed_matches_eager(pair, kw):
    model, _, proc, _ = pair
    _, ids, mask = _inputs(proc)
    mx.random.seed(11)
    compiled = _generate(pair, True, ids, mask, **kw)
    mx.random.seed(11)
    assert _generate(pair, False, ids, mask, **kw) == compiled


def test_cache_growth_past_the_preallocated_block(pair, monkeypatch):
    """Blocks of 4 positions: the compiled step meets three new capacities in 14 tokens."""
    model, hf, proc, _ = pair
    monkeypatch.setattr(KVCache, "step", 4)
    enc, ids, mask = _inputs(proc)
    ref = _hf_generate(hf, enc, max_new_tokens=14, min_new_tokens=14)
    assert _generate(pair, True, ids, mask, max_new_tokens=14, min_new_tokens=14) == ref
    memory, mmask = model.encode_text(ids, mask)
    step = DecoderSteps(model.text_decoder, model.shared, memory, mmask, compiled=True)
    tokens = mx.array([[3, 5]] * len(TEXTS))
    for _ in range(6):
        logits, _ = step(tokens)
        tokens = mx.argmax(logits, axis=-1)[:, None]
    assert step.cache[0][0].offset == 7 and step.cache[0][0].capacity == 8


def test_compiled_step_follows_replaced_weights(built):
    """The weights are constants of the compiled graph: replacing one must not leave it stale."""
    model, _, proc = built
    use_route(model, "plain")
    _, ids, mask = _inputs(proc, TEXTS[:1])
    memory, mask = model.encode_text(ids, mask)
    dec = model.text_decoder

    def two_steps(compiled):
        step = DecoderSteps(dec, model.shared, memory, mask, compiled=compiled)
        step(mx.array([[3, 5]]))
        return np.array(step(mx.array([[7]]))[0])

    before = two_steps(True)
    norm = dec.layer_norm
    old = norm.weight
    norm.weight = old * 1.5
    try:
        after = two_steps(True)
        np.testing.assert_allclose(after, two_steps(False), atol=1e-5)
        assert np.abs(after - before).max() > 1e-3
    finally:
        norm.weight = old


@pytest.mark.parametrize("route_name,limit,compiles", [("plain", 0, True), ("cpu", 0, False), ("cpu", 1 << 30, True)])
def test_which_routes_compile_their_steps(built, monkeypatch, route_name, limit, compiles):
    """The plain modules (Metal, CUDA) always take the compiled step; the CPU twins only for a
    decoder within ``tuning.COMPILED_STEP_MAX_BYTES``."""
    monkeypatch.setattr(tuning, "COMPILED_STEP_MAX_BYTES", limit)
    model, _, proc = built
    use_route(model, route_name)
    _, ids, mask = _inputs(proc, TEXTS[:1])
    model.text_decoder.__dict__.pop("_compiled_steps", None)
    model.generate(input_ids=ids, attention_mask=mask, tgt_lang="fra", max_new_tokens=4)
    assert bool(model.text_decoder.__dict__.get("_compiled_steps")) == compiles
