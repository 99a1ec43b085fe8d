"""Lists of sources: batched results are those of one source at a time, in order, bad items isolated.

Ids are compared with ``model.generate`` on each source alone, texts and waveforms with the
single-source ``translate``/``transcribe``.  The sources mix lengths and language pairs so that
batches hold padding and several groups.
"""

import re

import numpy as np
import pytest
import soundfile as sf

from seamless_mlx import batch as B
from seamless_mlx.api import generation_kwargs, get_model, transcribe, translate

SR = 16000
MAX_NEW = 10
TEXTS = [
    ("Hello world, how are you today?", "eng", "fra"),
    ("Bonjour tout le monde ! Comment allez-vous ?", "fra", "eng"),
    ("The quick brown fox jumps over the lazy dog, and then it runs far away.", "eng", "fra"),
    ("Hi.", "eng", "fra"),
    ("Guten Morgen, wie geht es dir?", "deu", "spa"),
    ("It's a well-known fact that translation is hard; isn't it?", "eng", "deu"),
    ("Numbers 1234 567 89.", "eng", "fra"),
]


@pytest.fixture(scope="module")
def mlx_model(tiny_checkpoint, tmp_path_factory):
    from seamless_mlx.convert import convert

    return str(convert(tiny_checkpoint, tmp_path_factory.mktemp("conv") / "mlx"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Noise bursts of unequal lengths as WAV files (the speech encoder sees padding in a batch)."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    paths = []
    for k, seconds in enumerate((1.0, 2.3, 0.7, 1.6, 0.9)):
        t = np.arange(int(seconds * SR)) / SR
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(150, 600) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(folder / f"clip{k}.wav", x.astype(np.float32), SR)
        paths.append(str(folder / f"clip{k}.wav"))
    return paths


def _text_jobs(mlx_model):
    model, proc = get_model(mlx_model, "t2tt")
    jobs = []
    for text, src, tgt in TEXTS:
        n = len(proc(text=text, src_lang=src)["input_ids"])
        jobs.append(B.Job(model=model, processor=proc, tgt_lang=tgt, text=text, src_lang=src, length=n,
                          gen_kwargs=generation_kwargs("transformers", n, max_new_tokens=MAX_NEW)))
    return model, proc, jobs


def test_text_batch_ids_equal_one_at_a_time(mlx_model):
    model, proc, jobs = _text_jobs(mlx_model)
    assert len(B.batches(jobs, 3)) >= 4  # several language-pair groups, some with padding
    outs = B.run_jobs(jobs, batch_size=3)
    for (text, src, tgt), out in zip(TEXTS, outs):
        enc = proc(text=text, src_lang=src, return_tensors="mlx")
        ref = model.generate(**enc, tgt_lang=tgt, max_new_tokens=MAX_NEW)
        assert out.ids == np.array(ref.sequences[0]).tolist(), text
        assert out.text == proc.decode(out.ids, skip_special_tokens=True).strip()


def test_text_batch_encoder_states_equal_one_at_a_time(mlx_model):
    model, proc, _ = _text_jobs(mlx_model)
    texts = [t for t, s, _ in TEXTS if s == "eng"]
    enc = proc(text=texts, src_lang="eng", padding=True, return_tensors="mlx")
    states, _ = model.encode(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    for r, text in enumerate(texts):
        one = proc(text=text, src_lang="eng", return_tensors="mlx")
        alone, _ = model.encode(input_ids=one["input_ids"], attention_mask=one["attention_mask"])
        n = int(np.array(one["attention_mask"]).sum())  # the tokenizer pads to an even length
        np.testing.assert_allclose(np.array(states[r, :n]), np.array(alone[0, :n]), atol=1e-5)


def test_batches_group_language_pairs_and_sort_by_length(mlx_model):
    _, _, jobs = _text_jobs(mlx_model)
    for idx in B.batches(jobs, 2):
        assert len({jobs[i].key() for i in idx}) == 1
        assert [jobs[i].length for i in idx] == sorted(jobs[i].length for i in idx)
    assert sorted(i for idx in B.batches(jobs, 2) for i in idx) == list(range(len(jobs)))


def test_translate_list_equals_single_calls_in_order(mlx_model):
    texts = [t for t, _, _ in TEXTS] + ["First line.\n\nA second paragraph, longer than the first.\nEnd."]
    srcs = [s for _, s, _ in TEXTS] + ["eng"]
    tgts = [t for _, _, t in TEXTS] + ["fra"]
    results = translate(texts, tgt_lang=tgts, src_lang=srcs, model=mlx_model, max_new_tokens=MAX_NEW, batch_size=4)
    assert len(results) == len(texts)
    for text, src, tgt, r in zip(texts, srcs, tgts, results):
        one = translate(text, tgt_lang=tgt, src_lang=src, model=mlx_model, max_new_tokens=MAX_NEW)
        assert r.error is None and r.text == one.text
    assert results[-1].text.count("\n") == 3 and results[-1].text.split("\n")[1] == ""


def test_a_long_line_in_a_list_is_cut_at_sentences_as_alone(mlx_model):
    long_line = " ".join(f"This is sentence number {i}, which says a little more." for i in range(10))  # > 400 chars
    results = translate([long_line, "Hi."], tgt_lang="fra", src_lang="eng", model=mlx_model, max_new_tokens=MAX_NEW)
    one = translate(long_line, tgt_lang="fra", src_lang="eng", model=mlx_model, max_new_tokens=MAX_NEW)
    assert len(one.segments) == 10 and len(results[0].segments) == 10
    assert results[0].error is None and results[0].text == one.text


@pytest.mark.parametrize("bad,says", [
    (dict(max_new_tokens=100000), "254"),  # past the decoder's positions
    (dict(tgt_lang="xyz"), "tgt_lang='xyz' is not supported"),
    (dict(model="/nonexistent"), "No model folder"),
    (dict(quantize=3), "quantize must be 4 or 8"),
    (dict(speech=True, speaker_id=10**6), "speaker_id must be"),
    (dict(max_chars=0), "max_chars must be"),
    (dict(max_segment_s=0), "max_segment_s must be positive"),
    (dict(num_beams=0), "num_beams must be a whole number, at least 1"),
    (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size must be a whole number, at least 0"),
])
def test_what_every_item_would_fail_on_is_raised_once_for_the_list(mlx_model, clips, bad, says):
    """A bad option of the whole call raises, as for one source (each item getting the same error
    would hide it, and load the model once per item); a bad item only fails itself."""
    kw = dict(tgt_lang="fra", src_lang="eng", model=mlx_model, max_new_tokens=MAX_NEW, **{"speech": False})
    kw.update(bad)
    with pytest.raises(ValueError, match=re.escape(says)):
        translate(["Hello world.", clips[0]], **kw)


def test_items_keep_their_source_path_and_their_own_errors(mlx_model, clips, tmp_path):
    results = translate([clips[0], "Hello world.", "abc\udcff def", "Bye."], tgt_lang=np.array(["fra", "fra", "fra", "zzz"]),
                        src_lang="eng", model=mlx_model, max_new_tokens=MAX_NEW)
    assert results[0].source_path == str(clips[0]) and results[1].source_path is None
    spoken = translate([clips[0]], tgt_lang="fra", speech=True, model=mlx_model, max_new_tokens=MAX_NEW)[0]
    with pytest.raises(ValueError, match="is the input file"):  # save() never replaces the recording
        spoken.save(clips[0])
    assert results[1].error is None and "decode the text as UTF-8" in results[2].error and "zzz" in results[3].error


def test_transcribe_list_ids_and_text_equal_one_at_a_time(mlx_model, clips):
    model, proc = get_model(mlx_model, "s2tt")
    results = transcribe(clips, lang="eng", model=mlx_model, max_new_tokens=MAX_NEW, batch_size=4)
    jobs = []
    for path, r in zip(clips, results):
        one = transcribe(path, lang="eng", model=mlx_model, max_new_tokens=MAX_NEW)
        assert r.error is None and r.text == one.text
        assert [(s.start, s.end, s.text) for s in r.segments] == [(s.start, s.end, s.text) for s in one.segments]
        f = proc(audios=sf.read(path, dtype="float32")[0], sampling_rate=SR, return_tensors="np")
        jobs.append(B.Job(model=model, processor=proc, tgt_lang="eng", features=f["input_features"][0],
                          feature_mask=f["attention_mask"][0], length=f["input_features"].shape[1],
                          gen_kwargs={"max_new_tokens": MAX_NEW}))
    for job, out in zip(jobs, B.run_jobs(jobs, batch_size=5)):
        ref = model.generate(input_features=job.features[None], attention_mask=job.feature_mask[None],
                             tgt_lang="eng", max_new_tokens=MAX_NEW)
        assert out.ids == np.array(ref.sequences[0]).tolist()


def test_speech_output_list_equals_single_calls(mlx_model, clips):
    sources = ["Hello world, how are you today?", "Hi.", clips[0], clips[2]]
    results = translate(sources, tgt_lang="fra", src_lang="eng", speech=True, model=mlx_model, max_new_tokens=6)
    for source, r in zip(sources, results):
        one = translate(source, tgt_lang="fra", src_lang="eng", speech=True, model=mlx_model, max_new_tokens=6)
        assert r.text == one.text
        np.testing.assert_allclose(r.audio, one.audio, atol=1e-5)


def test_bad_items_get_their_own_error_and_the_rest_are_done(mlx_model, clips):
    sources = ["Hello world.", "", "Bonjour.", clips[1], "Hello again.", clips[0] + ".missing.wav"]
    srcs = ["eng", "eng", "xyz", "eng", "eng", "eng"]
    tgts = ["fra", "fra", "fra", "deu", "klingon", "fra"]
    results = translate(sources, tgt_lang=tgts, src_lang=srcs, model=mlx_model, max_new_tokens=MAX_NEW, batch_size=8)
    errors = [r.error for r in results]
    assert errors[0] is None and errors[3] is None
    assert "empty" in errors[1]
    assert "xyz" in errors[2]
    assert "klingon" in errors[4]
    assert "not found" in errors[5]
    assert results[0].text == translate("Hello world.", tgt_lang="fra", src_lang="eng", model=mlx_model,
                                        max_new_tokens=MAX_NEW).text
    assert results[3].text == translate(clips[1], tgt_lang="deu", model=mlx_model, max_new_tokens=MAX_NEW).text


# One text of several lines (a blank one among them) whose first line is cut into two sentences
# (max_chars=40): its pieces, in order, are DOC_PIECES; between two pieces comes a newline when they
# are on different lines, else a space.
DOC = "The first sentence is long enough. It has a second.\n\nHi.\nA third line, longer than the second.\nOk."
DOC_PIECES = ["The first sentence is long enough.", "It has a second.", "Hi.", "A third line, longer than the second.",
              "Ok."]
DOC_JOINERS = [" ", "\n", "\n", "\n"]


def test_on_text_gets_the_pieces_of_a_text_in_order_while_batches_run_by_length(mlx_model, monkeypatch):
    from seamless_mlx import api

    monkeypatch.setattr(api, "TEXT_BATCH", 2)  # several batches, each of pieces of similar length
    kw = dict(src_lang="eng", model=mlx_model, max_new_tokens=6, num_beams=2, max_chars=40)
    got = []
    r = translate(DOC, "fra", on_text=got.append, **kw)
    alone = [translate(p, "fra", **kw).text for p in DOC_PIECES]
    want = [alone[0]]
    for joiner, text in zip(DOC_JOINERS, alone[1:]):
        want += [joiner, text]
    assert got == want
    assert r.text == f"{alone[0]} {alone[1]}\n\n{alone[2]}\n{alone[3]}\n{alone[4]}"


def test_a_streamed_text_is_each_piece_streamed_alone_joined_in_order(mlx_model):
    kw = dict(src_lang="eng", model=mlx_model, max_new_tokens=6, max_chars=40)
    got = []
    r = translate(DOC, "fra", on_text=got.append, **kw)
    want, texts = [], []
    for k, piece in enumerate(DOC_PIECES):
        if k:
            want.append(DOC_JOINERS[k - 1])
        streamed = []
        texts.append(translate(piece, "fra", on_text=streamed.append, **kw).text)
        assert len(streamed) > 1  # token by token, not the piece's text at once
        want += streamed
    assert got == want
    assert r.text == f"{texts[0]} {texts[1]}\n\n{texts[2]}\n{texts[3]}\n{texts[4]}"


def test_run_jobs_shows_outputs_in_job_order(mlx_model):
    model, proc, jobs = _text_jobs(mlx_model)
    seen = []
    outs = B.run_jobs(jobs, batch_size=2, on_output=lambda i, o: seen.append((i, o)))
    assert [i for i, _ in seen] == list(range(len(jobs)))
    assert all(o is outs[i] for i, o in seen)


def test_speech_of_a_text_is_each_line_generated_alone_joined_with_gaps(mlx_model):
    lines = ["Hello world, how are you today?", "Hi."]  # unequal lengths: one batch with padding
    r = translate("\n".join(lines), tgt_lang="fra", src_lang="eng", speech=True, model=mlx_model, max_new_tokens=6)
    model, proc = get_model(mlx_model, "t2st")
    waves = []
    for line in lines:
        enc = proc(text=line, src_lang="eng", return_tensors="mlx")
        out = model.generate(input_ids=enc["input_ids"], attention_mask=enc.get("attention_mask"), tgt_lang="fra",
                             generate_speech=True, max_new_tokens=6)
        waves.append(np.array(out.waveform[0, : int(out.waveform_lengths[0].item())]))
    want = np.concatenate([waves[0], np.zeros(int(0.2 * SR), np.float32), waves[1]])
    assert r.audio.shape == want.shape
    np.testing.assert_allclose(r.audio, want, atol=1e-5)
