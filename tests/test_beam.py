"""Beam search parity with transformers 4.56 on random-weight checkpoints.

Every test decodes a batch of three sources of unequal length and compares ``sequences`` exactly and
``sequences_scores`` to 1e-4.  Random checkpoints rarely produce the real EOS (id 3), so the tests
that must see hypotheses finish pass ``eos_token_id=<a token the model emits often>`` to both sides.
"""

from collections import Counter

import mlx.core as mx
import numpy as np
import pytest
import torch

from checkpoints import build_checkpoint, load_hf

import seamless_mlx as sm
from seamless_mlx.generate import GenerateOptions, decode_text

TEXTS = [
    "Hello world, how are you today?",
    "Bonjour",
    "Привет, мир! Как у тебя дела? 1234",
]


@pytest.fixture(scope="module", params=[0, 1], ids=["tiny-seed0", "wider-seed1"])
def pair(request, tiny_checkpoint, tmp_path_factory):
    """(mlx model, hf model, hf processor, frequent token) for two shapes/seeds."""
    if request.param == 0:
        path = tiny_checkpoint
    else:
        overrides = dict(hidden_size=48, encoder_attention_heads=6, decoder_attention_heads=6, encoder_layers=3,
                         decoder_layers=1, t2u_variance_predictor_embed_dim=48)
        path, _, _ = build_checkpoint(tmp_path_factory.mktemp("beam") / "hf", seed=1, overrides=overrides)
    hf, proc = load_hf(path)
    model = sm.SeamlessM4Tv2ForTextToText.from_pretrained(path)
    # a token that greedy decoding emits often: used as EOS so that hypotheses finish early
    enc = proc(text=TEXTS, src_lang="eng", return_tensors="pt", padding=True)
    greedy = hf.generate(**enc, tgt_lang="fra", generate_speech=False, max_new_tokens=12).sequences[:, 2:]
    frequent = Counter(greedy.flatten().tolist()).most_common(1)[0][0]
    return model, hf, proc, frequent


def _run_both(pair, **kw):
    model, hf, proc, _ = pair
    enc = proc(text=TEXTS, src_lang="eng", return_tensors="pt", padding=True)
    ref = hf.generate(**enc, tgt_lang="fra", generate_speech=False, return_dict_in_generate=True,
                      output_scores=True, **kw)
    ids, mask = mx.array(enc["input_ids"].numpy()), mx.array(enc["attention_mask"].numpy())
    out = model.generate(input_ids=ids, attention_mask=mask, tgt_lang="fra", **kw)
    return ref, out


def _assert_same(ref, out, scores=True):
    assert out.sequences.tolist() == ref.sequences.tolist()
    if scores:
        assert out.sequences_scores is not None
        assert out.sequences_scores.shape == tuple(ref.sequences_scores.shape)
        np.testing.assert_allclose(np.array(out.sequences_scores), ref.sequences_scores.numpy(), atol=1e-4)


BEAM_CASES = [
    dict(num_beams=2, max_new_tokens=10),
    dict(num_beams=2, max_new_tokens=12, length_penalty=0.6, early_stopping=True),
    dict(num_beams=3, max_new_tokens=12, num_return_sequences=2, length_penalty=1.5),
    dict(num_beams=3, max_new_tokens=10, num_return_sequences=3, early_stopping=True),
    dict(num_beams=4, max_new_tokens=10, num_return_sequences=2, length_penalty=0.6, early_stopping="never"),
    dict(num_beams=4, max_new_tokens=9, num_return_sequences=4, length_penalty=1.5, early_stopping=False),
    dict(num_beams=5, max_new_tokens=8, num_return_sequences=3, length_penalty=-0.5),
    dict(num_beams=5, max_new_tokens=8, early_stopping="never", length_penalty=0.0),
]


def _ids(case):
    return "-".join(f"{k.replace('_', '')[:6]}{v}" for k, v in case.items())


@pytest.mark.parametrize("case", BEAM_CASES, ids=_ids)
@pytest.mark.parametrize("finishing", [False, True], ids=["model-eos", "frequent-eos"])
def test_beam_search_matches_transformers(pair, case, finishing):
    kw = dict(case)
    if finishing:
        kw["eos_token_id"] = pair[3]
    ref, out = _run_both(pair, **kw)
    _assert_same(ref, out)
    assert out.sequences.shape[0] == len(TEXTS) * kw.get("num_return_sequences", 1)


@pytest.mark.parametrize("early_stopping", [True, False, "never"])
def test_hypotheses_finish_at_different_steps(pair, early_stopping):
    """EOS mid-search: finished hypotheses of different lengths, padding, early stop, all as transformers."""
    eos = pair[3]
    kw = dict(num_beams=3, num_return_sequences=3, max_new_tokens=12, eos_token_id=eos,
              early_stopping=early_stopping, pad_token_id=1)
    ref, out = _run_both(pair, **kw)
    _assert_same(ref, out)
    # the check is only meaningful if hypotheses really ended at different steps before the limit
    seqs = np.array(out.sequences)
    ends = {int(np.argmax(row[2:] == eos)) if (row[2:] == eos).any() else None for row in seqs}
    assert len(ends - {None}) >= 2
    assert min(e for e in ends if e is not None) < 11
    assert (seqs == 1).any(), "expected pad_token_id fill after early-finished hypotheses"


def test_beam_fill_is_eos_when_pad_id_is_zero(pair):
    """transformers fills beam outputs with ``pad or eos`` -- pad id 0 means EOS fill."""
    eos = pair[3]
    ref, out = _run_both(pair, num_beams=2, num_return_sequences=2, max_new_tokens=10, eos_token_id=eos)
    _assert_same(ref, out)
    assert not (np.array(out.sequences)[:, 2:] == 0).any()


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize(
    "proc_kw",
    [
        dict(repetition_penalty=1.3),
        dict(repetition_penalty=0.8),
        dict(no_repeat_ngram_size=2),
        dict(no_repeat_ngram_size=3),
        dict(repetition_penalty=1.3, no_repeat_ngram_size=2, use_eos=True),
    ],
    ids=["rep1.3", "rep0.8", "ngram2", "ngram3", "rep+ngram+eos"],
)
def test_logits_processors_match_transformers(pair, num_beams, proc_kw):
    kw = dict(proc_kw)
    if kw.pop("use_eos", False):
        kw["eos_token_id"] = pair[3]
    ref, out = _run_both(pair, num_beams=num_beams, max_new_tokens=12, **kw)
    _assert_same(ref, out, scores=num_beams > 1)
    if "no_repeat_ngram_size" in kw:
        n = kw["no_repeat_ngram_size"]
        stop = {kw.get("eos_token_id", 3), 0}
        for row in out.sequences.tolist():
            ends = [i for i in range(2, len(row)) if row[i] in stop]
            row = row[: ends[0]] if ends else row  # the fill after EOS may repeat
            grams = [tuple(row[i : i + n]) for i in range(len(row) - n + 1)]
            assert len(grams) == len(set(grams))


@pytest.mark.parametrize("num_beams", [1, 2])
def test_min_new_tokens_matches_transformers(pair, num_beams):
    eos = pair[3]
    ref_free, _ = _run_both(pair, num_beams=num_beams, max_new_tokens=12, eos_token_id=eos)
    ref, out = _run_both(pair, num_beams=num_beams, max_new_tokens=12, eos_token_id=eos, min_new_tokens=5)
    _assert_same(ref, out, scores=num_beams > 1)
    # min_new_tokens changed the outcome (otherwise the test would prove nothing)
    assert ref.sequences.tolist() != ref_free.sequences.tolist()
    assert not (np.array(out.sequences)[:, 2:7] == eos).any()


def test_decoder_states_for_speech_match_transformers(pair):
    """collect_hidden: decoder states of ``sequences[:, :-1]`` of every returned hypothesis."""
    model, hf, proc, eos = pair
    enc = proc(text=TEXTS, src_lang="eng", return_tensors="pt", padding=True)
    ids, mask = mx.array(enc["input_ids"].numpy()), mx.array(enc["attention_mask"].numpy())
    memory, memory_mask = model.encode(ids, None, mask)
    prefix = mx.array([[3, model.generation_config.text_decoder_lang_to_code_id["fra"]]] * len(TEXTS), dtype=mx.int32)
    opts = dict(num_beams=3, num_return_sequences=2, eos_token_id=eos)
    options = GenerateOptions.resolve(model.generation_config, dict(opts, max_new_tokens=10))
    out = decode_text(model, memory, memory_mask, prefix, options, collect_hidden=True)
    seqs = torch.tensor(np.array(out.sequences), dtype=torch.long)
    with torch.no_grad():
        enc_states = hf.text_encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        ref = hf.text_decoder(
            input_ids=seqs[:, :-1],
            encoder_hidden_states=enc_states.repeat_interleave(2, dim=0),
            encoder_attention_mask=enc["attention_mask"].repeat_interleave(2, dim=0),
        ).last_hidden_state.numpy()
    assert out.decoder_hidden_states.shape == ref.shape
    np.testing.assert_allclose(np.array(out.decoder_hidden_states), ref, atol=1e-4)
    ref_gen, _ = _run_both(pair, max_new_tokens=10, **opts)
    assert out.sequences.tolist() == ref_gen.sequences.tolist()


def test_num_return_sequences_above_num_beams_is_refused(pair):
    model, _, proc, _ = pair
    enc = proc(text=TEXTS[:1], src_lang="eng", return_tensors="np")
    with pytest.raises(ValueError, match="num_return_sequences"):
        model.generate(input_ids=mx.array(enc["input_ids"]), tgt_lang="fra", num_beams=2, num_return_sequences=3)


def test_longer_decoder_prefix_matches_transformers(pair):
    """decoder_input_ids instead of tgt_lang: a 3-token prefix shifts every length in the search."""
    model, hf, proc, eos = pair
    enc = proc(text=TEXTS, src_lang="eng", return_tensors="pt", padding=True)
    lang = hf.generation_config.text_decoder_lang_to_code_id["fra"]
    dec = np.array([[lang, 50]] * len(TEXTS))
    kw = dict(num_beams=3, num_return_sequences=2, max_new_tokens=9, length_penalty=0.6, eos_token_id=eos)
    ref = hf.generate(**enc, decoder_input_ids=torch.tensor(dec), generate_speech=False,
                      return_dict_in_generate=True, output_scores=True, **kw)
    out = model.generate(input_ids=mx.array(enc["input_ids"].numpy()),
                         attention_mask=mx.array(enc["attention_mask"].numpy()), decoder_input_ids=dec, **kw)
    _assert_same(ref, out)
