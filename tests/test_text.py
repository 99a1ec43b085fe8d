"""T2TT parity with transformers on random-weight checkpoints: encoder, decoder logits, greedy ids."""

import json
import shutil
from collections import Counter

import mlx.core as mx
import numpy as np
import pytest
import torch

from checkpoints import build_checkpoint, load_hf
from routes import use_route

import seamless_mlx as sm
from seamless_mlx.convert import convert
from seamless_mlx.loading import CheckpointError

TEXTS = [
    "Hello world, how are you today?",
    "Bonjour",
    "Привет, мир! Как у тебя дела? 1234",
]


@pytest.fixture(scope="module", params=[0, 1], ids=["tiny-seed0", "wider-seed1"])
def built(request, tmp_path_factory):
    """(mlx T2TT model, hf model, hf processor) for two shapes/seeds."""
    overrides = None
    if request.param == 1:
        overrides = dict(hidden_size=48, encoder_attention_heads=6, decoder_attention_heads=6, encoder_layers=3,
                         decoder_layers=1, t2u_variance_predictor_embed_dim=48)
    path, _, _ = build_checkpoint(tmp_path_factory.mktemp("t2tt") / "hf", seed=request.param, overrides=overrides)
    hf, proc = load_hf(path)
    return sm.SeamlessM4Tv2ForTextToText.from_pretrained(path), hf, proc, path


@pytest.fixture
def pair(built, route):
    """``built`` with its model on each execution path (plain MLX modules, CPU twins)."""
    use_route(built[0], route)
    return built


def _inputs(proc, texts, src_lang="eng"):
    enc = proc(text=texts, src_lang=src_lang, return_tensors="pt", padding=True)
    return enc, mx.array(enc["input_ids"].numpy()), mx.array(enc["attention_mask"].numpy())


def test_text_encoder_matches_transformers(pair):
    model, hf, proc, _ = pair
    enc, ids, mask = _inputs(proc, TEXTS)
    with torch.no_grad():
        ref = hf.text_encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    ours, _ = model.encode_text(ids, mask)
    valid = enc["attention_mask"].numpy().astype(bool)
    np.testing.assert_allclose(np.array(ours)[valid], ref.numpy()[valid], atol=1e-4)


def test_decoder_logits_match_transformers_teacher_forced(pair):
    model, hf, proc, _ = pair
    enc, ids, mask = _inputs(proc, TEXTS)
    rng = np.random.default_rng(0)
    dec = np.concatenate([np.full((3, 1), 3), rng.integers(4, hf.config.vocab_size, (3, 7))], axis=1)
    with torch.no_grad():
        ref = hf(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                 decoder_input_ids=torch.tensor(dec)).logits.numpy()
    memory, _ = model.encode_text(ids, mask)
    cache = model.text_decoder.make_cache(memory)
    h = model.text_decoder(mx.array(dec), model.shared, cache, mask)
    np.testing.assert_allclose(np.array(model.lm_logits(h)), ref, atol=1e-4)


# six rows: at least cpu.tuning.MANY_ROWS_MIN_ROWS, so the CPU twins run these searches on their
# many-row BLAS where the machine has one (tests/test_many_rows_blas.py checks the switch itself)
MANY = TEXTS + ["Good morning to all of you, my friends.", "Ja", "¿Dónde está la biblioteca? 42"]


def test_step_logits_of_a_many_row_search_match_transformers(pair):
    """One-token steps of six rows, inside the decoder's ``decoding`` context as the searches run
    them, against transformers' teacher-forced logits."""
    model, hf, proc, _ = pair
    enc, ids, mask = _inputs(proc, MANY)
    rng = np.random.default_rng(1)
    dec = np.concatenate([np.full((len(MANY), 1), 3), rng.integers(4, hf.config.vocab_size, (len(MANY), 6))], axis=1)
    with torch.no_grad():
        ref = hf(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                 decoder_input_ids=torch.tensor(dec)).logits.numpy()
    from seamless_mlx.text import DecoderSteps

    memory, _ = model.encode_text(ids, mask)
    with model.text_decoder.decoding(len(MANY)):
        step = DecoderSteps(model.text_decoder, model.shared, memory, mask)
        logits = [step(mx.array(dec[:, :2]))[0]]
        logits += [step(mx.array(dec[:, i : i + 1]))[0] for i in range(2, dec.shape[1])]
        logits = np.array(mx.stack(logits, axis=1))
    np.testing.assert_allclose(logits, ref[:, 1:], atol=1e-4)


def test_greedy_many_rows_ending_early_match_transformers(pair):
    model, hf, proc, _ = pair
    enc, ids, mask = _inputs(proc, MANY)
    first = hf.generate(**enc, tgt_lang="spa", generate_speech=False, max_new_tokens=15).sequences[:, 2:].tolist()

    def ends(token):  # the step at which each row would emit ``token`` first (none: the end)
        return [row.index(token) if token in row else len(row) for row in first]

    # a token the rows emit at different steps, used as EOS: rows end early, and not together
    eos = next(t for t, _ in Counter(sum(first, [])).most_common() if len(set(ends(t))) > 2)
    ref = hf.generate(**enc, tgt_lang="spa", generate_speech=False, max_new_tokens=15, eos_token_id=eos).sequences
    out = model.generate(input_ids=ids, attention_mask=mask, tgt_lang="spa", max_new_tokens=15, eos_token_id=eos)
    assert out.sequences.tolist() == ref.tolist()
    ends = [row.index(eos, 2) + 1 if eos in row[2:] else len(row) for row in ref.tolist()]
    assert len(set(ends)) > 1 and min(ends) < ref.shape[1], ends  # rows really end at different steps


def test_incremental_decoding_matches_one_pass(pair):
    model, hf, proc, _ = pair
    _, ids, mask = _inputs(proc, TEXTS[:1])
    memory, _ = model.encode_text(ids, mask)
    dec = mx.array([[3, 10, 20, 30, 40]])
    full = model.text_decoder(dec, model.shared, model.text_decoder.make_cache(memory), mask)
    cache = model.text_decoder.make_cache(memory)
    steps = [model.text_decoder(dec[:, :2], model.shared, cache, mask)]
    steps += [model.text_decoder(dec[:, i : i + 1], model.shared, cache, mask) for i in range(2, 5)]
    np.testing.assert_allclose(np.array(mx.concatenate(steps, axis=1)), np.array(full), atol=1e-5)


@pytest.mark.parametrize("tgt", ["fra", "deu"])
def test_greedy_single_matches_transformers(pair, tgt):
    model, hf, proc, _ = pair
    for text in TEXTS:
        enc, ids, mask = _inputs(proc, [text])
        ref = hf.generate(**enc, tgt_lang=tgt, generate_speech=False).sequences.tolist()
        out = model.generate(input_ids=ids, attention_mask=mask, tgt_lang=tgt)
        assert out.sequences.tolist() == ref


def test_greedy_batched_unequal_lengths_matches_transformers(pair):
    model, hf, proc, _ = pair
    enc, ids, mask = _inputs(proc, TEXTS)
    ref = hf.generate(**enc, tgt_lang="spa", generate_speech=False, max_new_tokens=15).sequences.tolist()
    out = model.generate(input_ids=ids, attention_mask=mask, tgt_lang="spa", max_new_tokens=15)
    assert out[0].tolist() == ref


def test_different_sources_give_different_translations(pair):
    """Guards the checkpoint recipe: a test on a model that ignores its input proves nothing."""
    model, _, proc, _ = pair
    _, ids, mask = _inputs(proc, TEXTS)
    seqs = model.generate(input_ids=ids, attention_mask=mask, tgt_lang="fra", max_new_tokens=10).sequences.tolist()
    assert len({tuple(s) for s in seqs}) == len(TEXTS)


def test_converted_folder_loads_to_same_outputs(pair, tmp_path):
    model, _, proc, path = pair
    out = convert(path, tmp_path / "mlx", shard_bytes=20_000)  # forces several shards
    assert len(list(out.glob("model-*.safetensors"))) > 1
    assert (out / "model.safetensors.index.json").exists()
    for name in ("generation_config.json", "sentencepiece.bpe.model", "preprocessor_config.json"):
        assert (out / name).exists()
    again = sm.SeamlessM4Tv2ForTextToText.from_pretrained(out)
    _, ids, mask = _inputs(proc, TEXTS)
    a = model.generate(input_ids=ids, attention_mask=mask, tgt_lang="fra").sequences
    b = again.generate(input_ids=ids, attention_mask=mask, tgt_lang="fra").sequences
    assert a.tolist() == b.tolist()


def test_convert_refuses_existing_output(tiny_checkpoint, tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError, match="--force"):
        convert(tiny_checkpoint, tmp_path / "out")


def test_corrupt_safetensors_is_a_clear_error_and_leaves_nothing(tiny_checkpoint, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_checkpoint, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        convert(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad"]


def test_missing_weight_is_named(tiny_checkpoint, tmp_path):
    out = convert(tiny_checkpoint, tmp_path / "mlx")
    from safetensors.numpy import load_file, save_file

    index = json.loads((out / "model.safetensors.index.json").read_text())
    shard = out / next(iter(set(index["weight_map"].values())))
    tensors = load_file(str(shard))
    dropped = sorted(k for k in tensors if k.startswith("text_decoder.layers.0.ffn.fc1"))[0]
    del tensors[dropped]
    save_file(tensors, str(shard))
    with pytest.raises(CheckpointError, match=dropped.replace(".", r"\.")):
        sm.SeamlessM4Tv2ForTextToText.from_pretrained(out)


def test_unknown_target_language_lists_supported_codes(pair):
    model, _, proc, _ = pair
    _, ids, mask = _inputs(proc, TEXTS[:1])
    with pytest.raises(ValueError, match="Supported: .*eng.*fra"):
        model.generate(input_ids=ids, attention_mask=mask, tgt_lang="xxx")


def test_unknown_generate_keyword_is_refused(pair):
    model, _, proc, _ = pair
    _, ids, mask = _inputs(proc, TEXTS[:1])
    with pytest.raises(ValueError, match="num_beam"):
        model.generate(input_ids=ids, attention_mask=mask, tgt_lang="fra", num_beam=3)


def test_load_gives_model_and_processor_like_the_transformers_docs(tiny_checkpoint, tiny_hf):
    hf, hf_proc = tiny_hf
    model, processor = sm.load(tiny_checkpoint)
    inputs = processor(text="Hello, my dog is cute", src_lang="eng", return_tensors="mlx")
    out = model.generate(**inputs, tgt_lang="fra", generate_speech=False)
    ref_inputs = hf_proc(text="Hello, my dog is cute", src_lang="eng", return_tensors="pt")
    ref = hf.generate(**ref_inputs, tgt_lang="fra", generate_speech=False)
    assert out.sequences.tolist() == ref.sequences.tolist()
    ours = processor.decode(out[0].tolist()[0], skip_special_tokens=True)
    assert ours == hf_proc.decode(ref[0].tolist()[0], skip_special_tokens=True)
