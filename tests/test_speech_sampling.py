"""Sampled speech units against transformers' T2U distribution.

The T2U model is non-autoregressive: with ``speech_do_sample`` and a temperature other than 1,
transformers draws every unit independently from ``softmax(logits / temperature)``.  The expected
distribution per unit position comes from the T2U logits of transformers' own ``generate`` (read with
a forward hook); the empirical one from one batched MLX call on many copies of the same text.  As in
test_sampling.py, the bound is checked to be discriminative: a plausible wrong implementation
(temperature multiplied, or no temperature) is further than the bound from what we sampled.
"""

import mlx.core as mx
import numpy as np
import pytest
import torch

import seamless_mlx as sm

TEXT = "Hello world, how are you?"
N = 1000  # copies of the source, sampled in one call
TEMPERATURE = 0.6


@pytest.fixture(scope="module")
def setup(tiny_checkpoint, tiny_hf):
    return sm.SeamlessM4Tv2ForTextToSpeech.from_pretrained(tiny_checkpoint), *tiny_hf


def _transformers_unit_logits(hf, proc):
    captured = []
    hook = hf.t2u_model.register_forward_hook(lambda module, args, out: captured.append(out[0].detach()))
    try:
        enc = proc(text=[TEXT], src_lang="eng", return_tensors="pt")
        with torch.no_grad():
            hf.generate(**enc, tgt_lang="fra", max_new_tokens=8)
    finally:
        hook.remove()
    (logits,) = captured
    return logits[0].double()  # [U, vocab]


def _dist(logits, temperature=1.0, multiply=False):
    scaled = logits * temperature if multiply else logits / temperature
    return torch.softmax(scaled, dim=-1).numpy()


def _mean_tv(emp, expected):
    return float(0.5 * np.abs(emp - expected).sum(-1).mean())


def _bound(expected, n):
    """1.5x the expected total-variation distance of n-draw histograms from their distributions,
    averaged over positions (as in test_sampling.py), plus a little slack."""
    per_position = 0.5 * np.sqrt(2 * expected * (1 - expected) / (np.pi * n)).sum(-1)
    return 1.5 * float(per_position.mean()) + 0.005


def test_sampled_units_follow_transformers_tempered_distribution(setup):
    model, hf, proc = setup
    logits = _transformers_unit_logits(hf, proc)
    expected = _dist(logits, TEMPERATURE)

    enc = proc(text=[TEXT] * N, src_lang="eng", return_tensors="np")
    mx.random.seed(0)
    out = model.generate(input_ids=mx.array(enc["input_ids"]), attention_mask=mx.array(enc["attention_mask"]),
                         tgt_lang="fra", max_new_tokens=8, return_intermediate_token_ids=True,
                         speech_do_sample=True, speech_temperature=TEMPERATURE)
    units = np.array(out.unit_sequences)
    assert units.shape == (N, expected.shape[0])  # same text, same durations: no padding
    vocab = expected.shape[1]
    emp = np.stack([np.bincount(units[:, u], minlength=vocab) / N for u in range(units.shape[1])])

    bound = _bound(expected, N)
    assert _mean_tv(emp, expected) < bound
    for wrong in (_dist(logits, TEMPERATURE, multiply=True), _dist(logits)):
        assert _mean_tv(emp, wrong) > bound, "the bound does not tell a wrong temperature apart"
