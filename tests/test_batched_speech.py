"""Batched T2ST and S2ST where rows end at different steps, against transformers.

With the plain random weights every row runs to ``max_new_tokens``, so the T2U model never sees a
row that ended early.  This checkpoint raises the EOS logit (``eos_logit_offset``): some sources
stop after a few tokens and others run to the limit, so a batch carries EOS inside rows followed by
padding.  The T2U model must mask that padding, turn inner EOS into padding and give each row its
own length; units, waveform lengths and waveforms are compared with transformers, greedy and beam.
Each test first checks on transformers' output that the rows really end at different steps.
(Beam search fills a finished row with EOS, not padding, so there the T2U attention mask covers the
whole row in transformers too and only the greedy cases check that mask; both check the inner EOS.)
"""

import mlx.core as mx
import numpy as np
import pytest
import torch

import seamless_mlx as sm
from checkpoints import CORPUS, build_checkpoint, load_hf

TEXTS = [CORPUS[1], CORPUS[0], CORPUS[6], CORPUS[11]]
MAX_NEW = 14
EOS = 3


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path, _, _ = build_checkpoint(tmp_path_factory.mktemp("early_eos") / "hf", seed=0, eos_logit_offset=2.0)
    return path


@pytest.fixture(scope="module")
def hf(checkpoint):
    return load_hf(checkpoint)


@pytest.fixture(scope="module")
def model(checkpoint):
    return sm.load(checkpoint)[0]


def _audio(seed, seconds):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * (150 + 50 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def _assert_rows_end_at_different_steps(sequences):
    """The premise: some rows hold EOS before the last column (then padding), others do not."""
    ends = [int(np.flatnonzero(row[2:] == EOS)[0]) + 2 if (row[2:] == EOS).any() else None for row in sequences]
    width = sequences.shape[1]
    early = [e for e in ends if e is not None and e < width - 1]
    assert early and len(set(ends)) > 1, f"rows do not end at different steps: {ends} in width {width}"


def _check(ours, ref):
    seq = ref.sequences.numpy()
    _assert_rows_end_at_different_steps(seq)
    assert ours.sequences.tolist() == seq.tolist()
    assert ours.unit_sequences.tolist() == ref.unit_sequences.tolist()
    lens = np.atleast_1d(ref.waveform_lengths.numpy()).tolist()
    assert ours.waveform_lengths.tolist() == lens
    assert len(set(lens)) > 1
    w, r = np.array(ours.waveform), ref.waveform.numpy()
    assert w.shape == r.shape
    for i, n in enumerate(lens):
        assert _rel(w[i, :n], r[i, :n]) < 1e-4


@pytest.mark.parametrize("num_beams", [1, 3], ids=["greedy", "beam3"])
def test_batched_t2st_with_rows_ending_early_matches_transformers(model, hf, num_beams):
    hf_model, proc = hf
    enc = proc(text=TEXTS, src_lang="eng", return_tensors="pt", padding=True)
    kw = dict(tgt_lang="fra", return_intermediate_token_ids=True, max_new_tokens=MAX_NEW, num_beams=num_beams)
    with torch.no_grad():
        ref = hf_model.generate(**enc, **kw)
    ours = model.generate(input_ids=mx.array(enc["input_ids"].numpy()),
                          attention_mask=mx.array(enc["attention_mask"].numpy()), **kw)
    _check(ours, ref)


@pytest.mark.parametrize("num_beams", [1, 3], ids=["greedy", "beam3"])
def test_batched_s2st_with_rows_ending_early_matches_transformers(model, hf, num_beams):
    hf_model, proc = hf
    audios = [_audio(0, 1.0), _audio(1, 0.5), _audio(2, 0.8), _audio(3, 0.6)]
    feats = proc(audios=audios, sampling_rate=16000, return_tensors="np")
    kw = dict(tgt_lang="deu", return_intermediate_token_ids=True, max_new_tokens=MAX_NEW, num_beams=num_beams)
    with torch.no_grad():
        ref = hf_model.generate(input_features=torch.tensor(feats["input_features"]),
                                attention_mask=torch.tensor(feats["attention_mask"]), **kw)
    ours = model.generate(input_features=mx.array(feats["input_features"]),
                          attention_mask=mx.array(feats["attention_mask"]), **kw)
    _check(ours, ref)
