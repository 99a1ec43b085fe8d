"""Sampling: seeded reproducibility, and the first-token distribution against transformers' warpers.

The expected distributions come from transformers itself: the first-step logits of the transformers
model for the same input, passed through ``TemperatureLogitsWarper`` / ``TopKLogitsWarper`` /
``TopPLogitsWarper`` (transformers' default ``top_k=50`` included, as its ``generate`` applies it).
The empirical one comes from a single batched MLX call (``num_return_sequences=N``,
``max_new_tokens=1``).  Each distribution test also checks that the bound is discriminative: a
plausible wrong implementation's distribution is more than the bound away from what we sampled.
"""

import mlx.core as mx
import numpy as np
import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

import seamless_mlx as sm

TEXTS = [
    "Hello world, how are you today?",
    "Bonjour",
    "Привет, мир! Как у тебя дела? 1234",
]
N = 8000  # draws, in one batched call


def _bound(expected, n):
    """1.5x the expected total-variation distance of an n-draw histogram from its own distribution
    (E|count/n - p| ~ sqrt(2 p (1 - p) / (pi n))), plus a little slack: about 0.04 for 50 live tokens,
    0.015 for 4."""
    return 1.5 * 0.5 * float(np.sqrt(2 * expected * (1 - expected) / (np.pi * n)).sum()) + 0.005


@pytest.fixture(scope="module")
def setup(tiny_checkpoint, tiny_hf):
    hf, proc = tiny_hf
    return sm.SeamlessM4Tv2ForTextToText.from_pretrained(tiny_checkpoint), hf, proc


def _mx_inputs(proc, texts):
    enc = proc(text=texts, src_lang="eng", return_tensors="np", padding=True)
    return mx.array(enc["input_ids"]), mx.array(enc["attention_mask"])


def _first_step_logits(hf, proc, text):
    enc = proc(text=[text], src_lang="eng", return_tensors="pt")
    lang = hf.generation_config.text_decoder_lang_to_code_id["fra"]
    with torch.no_grad():
        out = hf(**enc, decoder_input_ids=torch.tensor([[hf.generation_config.decoder_start_token_id, lang]]))
    return out.logits[:, -1].float()


def _warped(scores, temperature=1.0, top_k=50, top_p=1.0, min_keep=1):
    """transformers' warpers in generate's order; returns the processed scores."""
    ids = torch.zeros((scores.shape[0], 1), dtype=torch.long)
    if temperature != 1.0:
        scores = TemperatureLogitsWarper(temperature)(ids, scores)
    if top_k:
        scores = TopKLogitsWarper(top_k, min_tokens_to_keep=min_keep)(ids, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p, min_tokens_to_keep=min_keep)(ids, scores)
    return scores


def _dist(scores, **kw):
    return torch.softmax(_warped(scores.clone(), **kw), dim=-1)[0].double().numpy()


def _tv(p, q):
    return 0.5 * float(np.abs(p - q).sum())


def test_sampling_repeats_exactly_with_a_seed(setup):
    model, _, proc = setup
    ids, mask = _mx_inputs(proc, TEXTS)
    kw = dict(tgt_lang="fra", do_sample=True, temperature=0.9, max_new_tokens=10)

    def run(seed):
        mx.random.seed(seed)
        return model.generate(input_ids=ids, attention_mask=mask, **kw).sequences.tolist()

    a, b, c = run(123), run(123), run(124)
    assert a == b
    assert a != c  # the seed matters (else the equality above would prove nothing)


CASES = [
    # (sampling keywords, wrong variants that the bound must reject)
    (dict(temperature=0.7), [dict(), dict(temperature=1.0 / 0.7)]),
    (dict(top_k=5), [dict(), dict(top_k=4), dict(top_k=6)]),
    (dict(top_p=0.8), [dict(), dict(top_p=0.6)]),
    (
        dict(temperature=0.7, top_k=5, top_p=0.8),
        [dict(temperature=0.7, top_k=5), dict(top_k=5, top_p=0.8), dict(temperature=0.7, top_p=0.8)],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=["temp0.7", "topk5", "topp0.8", "combined"])
def test_first_token_distribution_matches_transformers_warpers(setup, case):
    model, hf, proc = setup
    kw, wrongs = case
    text = TEXTS[0]
    logits = _first_step_logits(hf, proc, text)
    expected = _dist(logits, **kw)

    ids, mask = _mx_inputs(proc, [text])
    mx.random.seed(0)
    out = model.generate(input_ids=ids, attention_mask=mask, tgt_lang="fra", do_sample=True,
                         num_return_sequences=N, max_new_tokens=1, **kw)
    seqs = np.array(out.sequences)
    assert seqs.shape == (N, 3)
    emp = np.bincount(seqs[:, 2], minlength=expected.shape[0]) / N

    assert set(np.flatnonzero(emp)) <= set(np.flatnonzero(expected)), "sampled a token the warpers remove"
    bound = _bound(expected, N)
    assert _tv(emp, expected) < bound
    for wrong in wrongs:
        assert _tv(emp, _dist(logits, **wrong)) > bound, f"bound does not separate {kw} from {wrong}"


def test_beam_sampling_repeats_exactly_with_a_seed(setup):
    model, _, proc = setup
    ids, mask = _mx_inputs(proc, TEXTS)
    kw = dict(tgt_lang="fra", do_sample=True, num_beams=2, num_return_sequences=2, max_new_tokens=8, temperature=0.8)

    def run(seed):
        mx.random.seed(seed)
        out = model.generate(input_ids=ids, attention_mask=mask, **kw)
        return out.sequences.tolist(), np.array(out.sequences_scores)

    (a, sa), (b, sb), (c, _) = run(7), run(7), run(8)
    assert a == b
    np.testing.assert_array_equal(sa, sb)
    assert a != c
    assert len(a) == 2 * len(TEXTS) and np.isfinite(sa).all()
    assert (sa[0::2] >= sa[1::2]).all()  # best hypothesis first within each item


def test_beam_sampling_scores_are_warped_log_prob_sums(setup):
    """transformers' beam sampling scores a hypothesis with warpers applied to the *log-probs*
    (temperature divides log_softmax, top-k keeps at least 2): recompute that teacher-forced."""
    model, hf, proc = setup
    ids, mask = _mx_inputs(proc, TEXTS)
    temperature, top_k, lp = 0.7, 5, 0.6
    mx.random.seed(3)
    out = model.generate(input_ids=ids, attention_mask=mask, tgt_lang="fra", do_sample=True, num_beams=2,
                         num_return_sequences=2, max_new_tokens=6, temperature=temperature, top_k=top_k,
                         length_penalty=lp)
    seqs = torch.tensor(np.array(out.sequences), dtype=torch.long)
    enc = proc(text=TEXTS, src_lang="eng", return_tensors="pt", padding=True)
    rep = {k: v.repeat_interleave(2, dim=0) for k, v in enc.items()}
    with torch.no_grad():
        logits = hf(**rep, decoder_input_ids=seqs[:, :-1]).logits.float()
    eos = hf.generation_config.eos_token_id
    for r in range(seqs.shape[0]):
        total, n = 0.0, 0
        for t in range(1, seqs.shape[1] - 1):
            logp = torch.log_softmax(logits[r, t][None], dim=-1)
            logp = _warped(logp, temperature=temperature, top_k=top_k, min_keep=2)
            tok = int(seqs[r, t + 1])
            total += float(logp[0, tok])
            n += 1
            if tok == eos:
                break
        assert np.isfinite(total)
        np.testing.assert_allclose(float(out.sequences_scores[r]), total / n**lp, atol=1e-4)


def test_beam_sampling_draws_without_replacement(setup):
    """First step of beam sampling: the two returned hypotheses are the first two draws *without
    replacement* from softmax(warped log-probs).  Token t is among them with probability
    p_t + sum_{s != t} p_s p_t / (1 - p_s)."""
    model, hf, proc = setup
    text = TEXTS[1]
    kw = dict(temperature=0.7, top_k=5)
    logits = _first_step_logits(hf, proc, text)
    p = torch.softmax(_warped(torch.log_softmax(logits, -1), min_keep=2, **kw), -1)[0].double().numpy()
    incl = p + p * ((p / (1 - p)).sum() - p / (1 - p))
    with_replacement = 1 - (1 - p) ** 2

    draws = 8000
    ids, mask = _mx_inputs(proc, [text] * draws)
    mx.random.seed(1)
    out = model.generate(input_ids=ids, attention_mask=mask, tgt_lang="fra", do_sample=True, num_beams=2,
                         num_return_sequences=2, max_new_tokens=1, **kw)
    seqs = np.array(out.sequences).reshape(draws, 2, 3)[:, :, 2]
    assert (seqs[:, 0] != seqs[:, 1]).all()  # two distinct continuations per item
    emp = np.bincount(seqs.ravel(), minlength=p.shape[0]) / draws
    err = np.abs(emp - incl).max()
    assert err < 0.015  # about 3 standard deviations of a frequency near 0.75 at 8000 draws
    assert np.abs(emp - with_replacement).max() > 0.04  # the check tells the two apart
