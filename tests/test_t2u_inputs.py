"""The T2U model's character inputs against transformers' own helpers.

transformers turns generated text ids into per-subword character counts
(``_count_character_length_in_subword``: a space before a word belongs to the word, a space after a
one-character punctuation mark belongs to the mark) and into character ids (``_get_char_input_ids``).
Here both are called on the same id rows as ours: tokenized text with punctuation and non-Latin
scripts, rows with runs of bare space pieces and unknown tokens, rows that end early with EOS and
padding, and random rows over the whole vocabulary.
"""

import numpy as np
import pytest
import torch

from checkpoints import char_inputs

TEXTS = [
    "Hello world, how are you today?",
    "Bonjour tout le monde ! Comment allez-vous ?",
    "It's a well-known fact ; isn't it ?",
    "Привет, мир! Как у тебя дела?",
    "你好，世界。今天天气很好。",
    "مرحبا بالعالم، كيف حالك؟",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "Numbers 1234 567 89, and symbols: @#%&*()[]{}.",
]
PAD, UNK, EOS = 0, 1, 3


def _reference(hf, sequences):
    """transformers' T2U character inputs for ``[B, L]`` generated ids (its generate's own steps)."""
    seq = torch.tensor(sequences, dtype=torch.long)
    ids = seq[:, 2:-1].masked_fill(seq[:, 2:-1] == EOS, PAD)
    words = hf._indices_to_subwords(ids)
    counts = hf._count_character_length_in_subword(ids, words, pad_token_id=PAD)
    zero = counts.new_zeros((counts.shape[0], 1))
    counts = torch.cat([zero, counts, zero], dim=1)
    chars = hf._get_char_input_ids(ids, words, counts, pad_token_id=PAD)
    return chars.numpy(), counts.numpy()


def _rows(rows, start, lang):
    """Ragged id rows -> ``[B, L]`` generated sequences: start, language, ids, EOS, then padding."""
    width = max(len(r) for r in rows) + 3
    out = np.full((len(rows), width), PAD, dtype=np.int64)
    for b, r in enumerate(rows):
        out[b, : len(r) + 3] = [start, lang, *r, EOS]
    return out


def _check(hf, sequences):
    chars, counts = char_inputs(sequences, hf.generation_config)
    ref_chars, ref_counts = _reference(hf, sequences)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_array_equal(chars, ref_chars)


@pytest.fixture(scope="module")
def setup(tiny_hf):
    hf, proc = tiny_hf
    gen = hf.generation_config
    return hf, proc.tokenizer, gen.decoder_start_token_id, gen.text_decoder_lang_to_code_id["fra"]


def test_the_texts_exercise_the_punctuation_rule(setup):
    # else the comparisons below would pass with the rule removed
    _, tok, _, _ = setup
    pieces = [tok.convert_ids_to_tokens(i) for t in TEXTS for i in tok(t, add_special_tokens=False)["input_ids"]]
    pairs = list(zip(pieces, pieces[1:]))
    assert any(len(a) == 1 and not a.isalnum() and a != "\u2581" and len(b) > 1 and b[0] == "\u2581" for a, b in pairs)


def test_char_inputs_of_tokenized_text_match_transformers(setup):
    hf, tok, start, lang = setup
    rows = [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    _check(hf, _rows(rows, start, lang))


def test_char_inputs_with_space_runs_unknowns_and_early_eos_match_transformers(setup):
    hf, tok, start, lang = setup
    space = tok.convert_tokens_to_ids("\u2581")
    comma, world = tok(", world", add_special_tokens=False)["input_ids"][:2]
    rows = [
        [space, space, world, comma, space, space, world],
        [world, UNK, comma, world, UNK, space],
        [comma, comma, space, world, EOS, PAD, PAD],  # a row that ended early inside the batch
        [UNK],
    ]
    assert tok.convert_ids_to_tokens(space) == "\u2581"
    _check(hf, _rows(rows, start, lang))


def test_char_inputs_of_random_rows_match_transformers(setup):
    hf, tok, start, lang = setup
    rng = np.random.default_rng(0)
    vocab = len(tok)
    rows = [list(rng.integers(4, vocab, size=n)) for n in rng.integers(1, 30, size=12)]
    for r in rows[::3]:  # some unknowns among them
        r[len(r) // 2] = UNK
    _check(hf, _rows(rows, start, lang))
