"""``unk_blocking=True`` (seamless_communication's ``--text_unk_blocking``) against transformers'
``suppress_tokens=[unk]`` on a checkpoint whose greedy output contains the unknown token.

The random checkpoints never emit ``<unk>`` (id 1) on their own, so the fixture scales its row of
the tied embedding / LM head by 3: the unknown token then wins at some steps, at a different step
in each source.
"""

import shutil

import mlx.core as mx
import pytest
from safetensors.numpy import load_file, save_file

from checkpoints import load_hf

import seamless_mlx as sm

UNK = 1
TEXTS = [
    "Hello world, how are you today?",
    "Bonjour",
    "Привет, мир! Как у тебя дела? 1234",
    "The quick brown fox jumps over the lazy dog.",
]


@pytest.fixture(scope="module")
def pair(tiny_checkpoint, tmp_path_factory):
    """(mlx model, hf model, hf processor) of a checkpoint whose greedy output contains ``<unk>``."""
    path = tmp_path_factory.mktemp("unk") / "hf"
    shutil.copytree(tiny_checkpoint, path)
    weights = load_file(str(path / "model.safetensors"))
    weights["shared.weight"][UNK] *= 3.0
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    hf, proc = load_hf(path)
    return sm.SeamlessM4Tv2ForTextToText.from_pretrained(path), hf, proc


def _run_both(pair, ours_kw, hf_kw, **kw):
    model, hf, proc = pair
    enc = proc(text=TEXTS, src_lang="eng", return_tensors="pt", padding=True)
    ref = hf.generate(**enc, tgt_lang="fra", generate_speech=False, max_new_tokens=16, **hf_kw, **kw)
    ids, mask = mx.array(enc["input_ids"].numpy()), mx.array(enc["attention_mask"].numpy())
    out = model.generate(input_ids=ids, attention_mask=mask, tgt_lang="fra", max_new_tokens=16, **ours_kw, **kw)
    return ref.sequences.tolist(), out.sequences.tolist()


def test_greedy_output_contains_unk_without_blocking(pair):
    ref, ours = _run_both(pair, {}, {})
    assert ours == ref
    assert all(UNK in row[2:] for row in ours)


@pytest.mark.parametrize("keyword", ["unk_blocking", "text_unk_blocking"])
def test_greedy_with_unk_blocking_matches_suppress_tokens(pair, keyword):
    ref, ours = _run_both(pair, {keyword: True}, {"suppress_tokens": [UNK]})
    assert ours == ref
    assert not any(UNK in row for row in ours)


def test_beam_search_with_unk_blocking_matches_suppress_tokens(pair):
    ref, ours = _run_both(pair, {"unk_blocking": True}, {"suppress_tokens": [UNK]}, num_beams=3)
    assert ours == ref
    assert not any(UNK in row for row in ours)


def test_streaming_with_unk_blocking_never_emits_unk(pair):
    model, _, proc = pair
    enc = proc(text=TEXTS[:1], src_lang="eng", return_tensors="np")
    ids = mx.array(enc["input_ids"])
    kw = dict(input_ids=ids, tgt_lang="fra", max_new_tokens=16)
    blocked = [c.token_id for c in model.stream_generate(unk_blocking=True, **kw)]
    greedy = model.generate(unk_blocking=True, **kw).sequences[0, 2:].tolist()
    assert blocked == greedy and UNK not in blocked
