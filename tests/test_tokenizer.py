"""Parity of seamless_mlx's tokenizer/processor with transformers' slow SeamlessM4TTokenizer.

The reference tokenizer is a real transformers tokenizer built from a freshly trained tiny
sentencepiece model (tests/checkpoints.py) and saved the way ``SeamlessM4TProcessor.save_pretrained``
saves it; both sides load that folder.
"""

import ast
import json
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from checkpoints import LANGS, build_tokenizer

from seamless_mlx.processor import SeamlessM4TProcessor
from seamless_mlx.tokenizer import IncrementalDecoder, SeamlessM4TTokenizer

TEXTS = [
    "Hello world, how are you today?",
    "Bonjour tout le monde ! Comment allez-vous ?",
    "Numbers 1234 567 89, and symbols: @#%&*()[]{}.",
    "It's a well-known fact that translation is hard; isn't it?",
    "Привет, мир! Как у тебя дела?",
    "你好，世界。今天天气很好。",
    "مرحبا بالعالم، كيف حالك؟",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "emoji 😀 and unknown ☃ characters ∮ here",
    "  leading spaces",
    "trailing spaces   ",
    "multiple    inner     spaces",
    "\ttabs\tand\nnewlines\n",
    "a",
    "?",
    "",
    " ",
    "   ",
    "▁",
    "▁already▁underlined",
    "a literal __fra__ token",
    "__fra__",
    "__fra__ at the start",
    "glued__fra__token",
    "__eng____deu__",
    "___fra__x",
    "__fr almost a code __",
    "specials <s> </s> <pad> <unk> inside",
    "ÀÉÎÕÜ ß ﬁ ① full-width ＡＢＣ",  # NFKC-normalised by the spm model
    "x" * 40,
]


def _quiet():
    warnings.simplefilter("ignore")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from transformers import SeamlessM4TFeatureExtractor
    from transformers import SeamlessM4TProcessor as HFProcessor

    root = tmp_path_factory.mktemp("tok")
    tok = build_tokenizer(root / "work")
    path = root / "hf"
    HFProcessor(feature_extractor=SeamlessM4TFeatureExtractor(), tokenizer=tok).save_pretrained(path)
    shutil.rmtree(root / "work", ignore_errors=True)
    return path


@pytest.fixture(scope="module")
def hf(folder):
    from transformers import SeamlessM4TTokenizer as HFTokenizer

    return HFTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def tok(folder):
    return SeamlessM4TTokenizer.from_pretrained(folder)


@pytest.fixture(autouse=True)
def _reset_languages(request):
    """Both tokenizers remember src_lang/tgt_lang between calls: restore the defaults after each test."""
    yield
    for name in ("tok", "hf"):
        if name in request.fixturenames:
            t = request.getfixturevalue(name)
            t.src_lang, t.tgt_lang = "eng", "fra"


def _plain(enc):
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in dict(enc).items()}


def _hf_call(hf, *args, **kwargs):
    with warnings.catch_warnings():
        _quiet()
        return _plain(hf(*args, **kwargs))


def _our_call(tok, *args, **kwargs):
    with warnings.catch_warnings():
        _quiet()
        return _plain(tok(*args, **kwargs))


def _generated_like(rng, n_vocab, lang_ids, length):
    body = [rng.randrange(4, n_vocab) for _ in range(length)]
    # sprinkle a few control / language ids in the body as a random model might
    for _ in range(rng.randrange(0, 3)):
        body.insert(rng.randrange(0, len(body) + 1), rng.choice([0, 1, 2, 3] + lang_ids))
    return [3, rng.choice(lang_ids)] + body + [3] + [0] * rng.randrange(0, 4)


# ------------------------------------------------------------------------------------------------
# vocabulary and languages
# ------------------------------------------------------------------------------------------------


def test_vocabulary_matches(tok, hf):
    assert len(tok) == len(hf)
    assert tok.vocab_size == hf.vocab_size
    assert tok.get_vocab() == hf.get_vocab()
    assert tok.all_special_tokens == hf.all_special_tokens
    assert tok.all_special_ids == hf.all_special_ids
    assert (tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2, 3)
    ids = list(range(len(hf)))
    assert tok.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
    assert tok.convert_ids_to_tokens(ids, skip_special_tokens=True) == hf.convert_ids_to_tokens(
        ids, skip_special_tokens=True
    )
    pieces = hf.convert_ids_to_tokens(ids) + ["not-a-piece", "☃", "__xyz__"]
    assert tok.convert_tokens_to_ids(pieces) == hf.convert_tokens_to_ids(pieces)
    assert tok.convert_tokens_to_ids("__fra__") == hf.convert_tokens_to_ids("__fra__")
    assert tok.convert_ids_to_tokens(5) == hf.convert_ids_to_tokens(5)


def test_languages(tok, hf):
    assert tok.supported_languages == LANGS
    for lang in LANGS:
        expected = hf.convert_tokens_to_ids(f"__{lang}__")
        assert tok.lang_code_to_id(lang) == expected
        assert tok.lang_code_to_id(f"__{lang}__") == expected
    assert tok.src_lang == "__eng__" and tok.tgt_lang == "__fra__"


def test_unknown_language_lists_codes(folder):
    tok = SeamlessM4TTokenizer.from_pretrained(folder)
    for bad in ("xyz", "__xyz__", "fr"):
        with pytest.raises(ValueError) as err:
            tok("hello", src_lang=bad)
        for lang in LANGS:
            assert lang in str(err.value)
        with pytest.raises(ValueError):
            tok.lang_code_to_id(bad)
    with pytest.raises(ValueError):
        tok(text_target="hello", tgt_lang="xyz")
    assert tok.src_lang == "__eng__"  # a failed call does not change the language


# ------------------------------------------------------------------------------------------------
# encoding
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_tokenize_and_encode_match(tok, hf, text):
    assert tok.tokenize(text) == hf.tokenize(text)
    for lang in ("eng", "fra", "__rus__", "cmn"):
        assert _our_call(tok, text, src_lang=lang) == _hf_call(hf, text, src_lang=lang)
    for kwargs in (
        dict(padding=False),
        dict(add_special_tokens=False, padding=False),
        dict(return_attention_mask=False),
        dict(pad_to_multiple_of=None),
    ):
        if not text.strip() and kwargs.get("add_special_tokens") is False:
            continue  # transformers returns {} for an empty unpadded sequence; not worth mirroring
        assert _our_call(tok, text, src_lang="eng", **kwargs) == _hf_call(hf, text, src_lang="eng", **kwargs)
    assert tok.encode(text) == hf.encode(text)


def test_empty_text_is_lang_and_eos(tok):
    assert _our_call(tok, "", src_lang="deu") == {
        "input_ids": [tok.lang_code_to_id("deu"), 3],
        "attention_mask": [1, 1],
    }
    tok.src_lang = "eng"


def test_added_token_splitting_fuzz(tok, hf):
    """Random strings made of token fragments: our splitter against transformers' Trie."""
    rng = random.Random(0)
    fragments = ["_", "__", "fra", "eng", "__fra__", "__eng__", "<", ">", "/", "s", "</s>", "<s>",
                 "<pad>", "<unk>", "un", "k", " ", "  ", "▁", "a", "hé", "П", "😀", "\n", "1", "."]
    for _ in range(400):
        text = "".join(rng.choice(fragments) for _ in range(rng.randrange(1, 10)))
        assert tok.tokenize(text) == hf.tokenize(text), repr(text)
        assert _our_call(tok, text) == _hf_call(hf, text), repr(text)


@pytest.mark.parametrize("padding", [True, "longest", "max_length", False])
@pytest.mark.parametrize("multiple", [None, 2, 8])
@pytest.mark.parametrize("tensors", [None, "np", "mlx"])
def test_batch_padding(tok, hf, padding, multiple, tensors):
    batch = TEXTS[:6] + ["", "a", "__fra__"]
    kwargs = dict(padding=padding, pad_to_multiple_of=multiple, src_lang="spa")
    if padding == "max_length":
        kwargs["max_length"] = 64
    if tensors is not None and padding is False:
        with pytest.raises(ValueError):
            tok(batch, return_tensors=tensors, **kwargs)
        return
    ours = tok(batch, return_tensors=tensors, **kwargs)
    ref = _hf_call(hf, batch, return_tensors="np" if tensors else None, **kwargs)
    if tensors == "np":
        assert isinstance(ours["input_ids"], np.ndarray) and ours["input_ids"].dtype == np.int64
    if tensors == "mlx":
        import mlx.core as mx

        assert isinstance(ours["input_ids"], mx.array) and ours["input_ids"].dtype == mx.int32
    assert _plain(ours) == ref
    tok.src_lang = hf.src_lang = "eng"


def test_single_text_tensors(tok, hf):
    for tensors in ("np", "mlx"):
        ours = tok("Hello world", return_tensors=tensors)
        assert tuple(ours["input_ids"].shape) == tuple(ours["attention_mask"].shape)
        assert len(ours["input_ids"].shape) == 2
        assert _plain(ours) == _hf_call(hf, "Hello world", return_tensors="np")
    assert tok("Hello world").input_ids == tok("Hello world")["input_ids"]


def test_padding_side_left(folder, hf):
    from transformers import SeamlessM4TTokenizer as HFTokenizer

    left_hf = HFTokenizer.from_pretrained(folder, padding_side="left")
    left = SeamlessM4TTokenizer.from_pretrained(folder, padding_side="left")
    assert _our_call(left, TEXTS[:5]) == _hf_call(left_hf, TEXTS[:5])
    assert _our_call(left, TEXTS[:5], padding_side="right") == _hf_call(hf, TEXTS[:5])


@pytest.mark.parametrize("max_length", [1, 2, 3, 4, 6, 9, 12, 200])
def test_truncation(tok, hf, max_length):
    batch = [TEXTS[0], TEXTS[4], "hi", ""]
    cases = [
        dict(truncation=True, padding=False),
        dict(truncation="longest_first", padding=False),
        dict(truncation="only_first", padding=False),
        dict(padding=False),  # max_length alone: transformers truncates
        dict(truncation=True, padding="max_length", pad_to_multiple_of=None),
        dict(truncation=True),  # padding=True with pad_to_multiple_of=2: odd lengths are an error
        dict(),  # padding=True and no truncation: max_length ignored (with a warning)
    ]
    for kwargs in cases:
        for inputs in (batch, batch[0]):
            try:
                ref = _hf_call(hf, inputs, max_length=max_length, **kwargs)
            except ValueError:
                with pytest.raises(ValueError):
                    _our_call(tok, inputs, max_length=max_length, **kwargs)
                continue
            assert _our_call(tok, inputs, max_length=max_length, **kwargs) == ref, kwargs


def test_truncation_keeps_special_tokens(tok):
    out = _our_call(tok, TEXTS[0], max_length=6, truncation=True, src_lang="fra")
    assert len(out["input_ids"]) == 6
    assert out["input_ids"][0] == tok.lang_code_to_id("fra") and out["input_ids"][-1] == 3
    tok.src_lang = "eng"


def test_text_target(tok, hf):
    for kwargs in (dict(tgt_lang="deu"), dict(tgt_lang="hin", padding=False)):
        assert _our_call(tok, text_target=TEXTS[1], **kwargs) == _hf_call(hf, text_target=TEXTS[1], **kwargs)
        assert _our_call(tok, TEXTS[0], text_target=TEXTS[1], **kwargs) == _hf_call(
            hf, TEXTS[0], text_target=TEXTS[1], **kwargs
        )
        assert _our_call(tok, TEXTS[:3], text_target=TEXTS[3:6], return_tensors="np", **kwargs | {"padding": True}) == (
            _hf_call(hf, TEXTS[:3], text_target=TEXTS[3:6], return_tensors="np", **kwargs | {"padding": True})
        )
    target = _our_call(tok, text_target="hi", tgt_lang="fra", padding=False)["input_ids"]
    assert target[:2] == [3, tok.lang_code_to_id("fra")] and target[-1] == 3
    tok.tgt_lang = hf.tgt_lang = "fra"


def test_src_lang_is_sticky_like_transformers(folder, hf):
    tok = SeamlessM4TTokenizer.from_pretrained(folder)
    tok("x", src_lang="rus")
    assert tok("x")["input_ids"][0] == tok.lang_code_to_id("rus")
    assert SeamlessM4TTokenizer.from_pretrained(folder, src_lang="arb").src_lang == "__arb__"


# ------------------------------------------------------------------------------------------------
# decoding
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sequences(tok):
    rng = random.Random(1)
    lang_ids = [tok.lang_code_to_id(l) for l in LANGS]
    seqs = [_generated_like(rng, len(tok), lang_ids, rng.randrange(0, 30)) for _ in range(60)]
    seqs += [tok.encode(t) for t in TEXTS]
    seqs += [[3, lang_ids[0]] + tok.encode(t, add_special_tokens=False) + [3, 0, 0] for t in TEXTS]
    seqs += [[], [3], [0, 0], [4], [4, 4], [lang_ids[1], lang_ids[1], 4], [2, 3, 4, 5, 1]]
    return seqs


def test_decode_matches(tok, hf, sequences):
    for seq in sequences:
        for skip in (False, True):
            for cleanup in (None, True, False):
                kw = dict(skip_special_tokens=skip, clean_up_tokenization_spaces=cleanup)
                assert tok.decode(seq, **kw) == hf.decode(seq, **kw), (seq, kw)
            kw = dict(skip_special_tokens=skip, spaces_between_special_tokens=False)
            assert tok.decode(seq, **kw) == hf.decode(seq, **kw), (seq, kw)
    assert tok.decode(7) == hf.decode(7)
    assert tok.decode(np.int64(tok.lang_code_to_id("fra"))) == hf.decode(tok.lang_code_to_id("fra"))


def test_decode_array_inputs(tok, hf, sequences):
    import mlx.core as mx

    seq = sequences[0]
    expected = hf.decode(seq, skip_special_tokens=True)
    assert tok.decode(np.array(seq), skip_special_tokens=True) == expected
    assert tok.decode(mx.array(seq), skip_special_tokens=True) == expected
    assert tok.decode(tuple(seq), skip_special_tokens=True) == expected

    width = max(len(s) for s in sequences[:8])
    rows = np.array([s + [0] * (width - len(s)) for s in sequences[:8]])
    for skip in (False, True):
        expected = hf.batch_decode(rows.tolist(), skip_special_tokens=skip)
        assert tok.batch_decode(rows, skip_special_tokens=skip) == expected
        assert tok.batch_decode(mx.array(rows), skip_special_tokens=skip) == expected
        assert tok.batch_decode(rows.tolist(), skip_special_tokens=skip) == expected


def test_decode_out_of_range(tok, hf):
    with pytest.raises(IndexError):
        tok.decode([len(tok) + 5])
    with pytest.raises(Exception):
        hf.decode([len(hf) + 5])


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tok, hf, text):
    ids = tok.encode(text)
    assert tok.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)


# ------------------------------------------------------------------------------------------------
# streaming
# ------------------------------------------------------------------------------------------------


def _stream(tok, seq, skip=True):
    dec = IncrementalDecoder(tok, skip_special_tokens=skip)
    segments = []
    for t in seq:
        dec.add_token(t)
        segments.append(dec.last_segment)
    dec.finalize()
    segments.append(dec.last_segment)
    return segments, dec


@pytest.mark.parametrize("style", ["slow", "fast"])
def test_incremental_decoder(folder, sequences, style):
    tok = SeamlessM4TTokenizer.from_pretrained(folder, decode_style=style)
    streamed_early = 0
    for seq in sequences:
        for skip in (True, False):
            segments, dec = _stream(tok, seq, skip)
            assert "".join(segments) == tok.decode(seq, skip_special_tokens=skip), seq
            assert dec.text == "".join(segments) and dec.tokens == list(seq)
        streamed_early += sum(1 for s in segments[:-1] if s)
    assert streamed_early > 100  # text comes out while tokens arrive, not only at the end


def test_incremental_decoder_word_boundaries(tok):
    ids = tok.encode("Hello world, how are you today?", add_special_tokens=False)
    segments, _ = _stream(tok, [3, tok.lang_code_to_id("eng")] + ids + [3])
    text = "".join(segments)
    assert text == "Hello world, how are you today?"
    # a segment never ends in a space that might still be stripped
    assert all(not s.endswith(" ") for s in segments[:-1] if s)


def test_incremental_decoder_with_cleanup(folder, sequences):
    tok = SeamlessM4TTokenizer.from_pretrained(folder, clean_up_tokenization_spaces=True)
    extra = [tok.encode(t, add_special_tokens=False) for t in ("a ' b", "do n't . ok ,x ' s", "x ' ' y !")]
    for seq in list(sequences) + extra:
        segments, dec = _stream(tok, seq)
        assert "".join(segments) == tok.decode(seq, skip_special_tokens=True), seq
    dec = tok.incremental_decoder()
    dec.add_tokens(np.array(extra[0]))
    dec.finalize()
    assert dec.last_segment == tok.decode(extra[0], skip_special_tokens=True)


# ------------------------------------------------------------------------------------------------
# loading variants and the fast tokenizer
# ------------------------------------------------------------------------------------------------


def _copy(folder, dest):
    dest.mkdir()
    for name in ("sentencepiece.bpe.model", "tokenizer_config.json", "special_tokens_map.json",
                 "added_tokens.json"):
        if (folder / name).exists():
            shutil.copy(folder / name, dest / name)
    return dest


def test_loads_from_tokenizer_config_only(folder, tok, tmp_path):
    dest = _copy(folder, tmp_path / "cfg_only")
    (dest / "added_tokens.json").unlink()
    (dest / "special_tokens_map.json").unlink()
    other = SeamlessM4TTokenizer.from_pretrained(dest)
    assert other.get_vocab() == tok.get_vocab()
    assert other.all_special_ids == tok.all_special_ids
    assert _our_call(other, TEXTS[:8]) == _our_call(tok, TEXTS[:8])


def test_loads_from_added_tokens_json(folder, tok, tmp_path):
    dest = _copy(folder, tmp_path / "json_only")
    config = json.loads((dest / "tokenizer_config.json").read_text())
    config.pop("added_tokens_decoder")
    config.pop("additional_special_tokens")
    (dest / "tokenizer_config.json").write_text(json.dumps(config))
    other = SeamlessM4TTokenizer.from_pretrained(dest)
    assert other.get_vocab() == tok.get_vocab()
    assert other.all_special_ids == tok.all_special_ids
    assert other.supported_languages == tok.supported_languages
    assert _our_call(other, TEXTS[:8]) == _our_call(tok, TEXTS[:8])


def test_fast_tokenizer_agrees_on_ids(folder, tok, sequences):
    try:
        from transformers import SeamlessM4TTokenizerFast

        with warnings.catch_warnings():
            _quiet()
            fast = SeamlessM4TTokenizerFast.from_pretrained(folder)
    except Exception as exc:  # pragma: no cover - optional reference
        pytest.skip(f"fast tokenizer unavailable: {exc}")
    for text in TEXTS:
        assert _our_call(tok, text)["input_ids"] == _hf_call(fast, text)["input_ids"], repr(text)
    # Strings: the fast tokenizer keeps a trailing "▁" as a space and puts no spaces around
    # language codes; decode(style="fast") reproduces it (the default follows the slow one).
    for seq in sequences:
        for skip in (False, True):
            for cleanup in (False, True):
                kw = dict(skip_special_tokens=skip, clean_up_tokenization_spaces=cleanup)
                assert tok.decode(seq, style="fast", **kw) == fast.decode(seq, **kw), (seq, kw)
    rows = [s for s in sequences if len(s) == len(sequences[0])]
    assert tok.batch_decode(rows, style="fast") == fast.batch_decode(rows)
    fast_tok = SeamlessM4TTokenizer.from_pretrained(folder, decode_style="fast")
    assert fast_tok.decode(sequences[0]) == fast.decode(sequences[0])


def test_runtime_modules_do_not_import_torch():
    root = Path(__file__).resolve().parents[1] / "seamless_mlx"
    for name in ("tokenizer.py", "processor.py"):
        tree = ast.parse((root / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                assert mod.split(".")[0] not in ("torch", "transformers", "tokenizers"), (name, mod)


# ------------------------------------------------------------------------------------------------
# processor
# ------------------------------------------------------------------------------------------------


def test_processor_text(folder):
    from transformers import SeamlessM4TProcessor as HFProcessor

    with warnings.catch_warnings():
        _quiet()
        ref = HFProcessor.from_pretrained(folder)
    # transformers' processor holds the fast tokenizer: same ids, "fast" decode strings
    assert "Fast" in type(ref.tokenizer).__name__
    proc = SeamlessM4TProcessor.from_pretrained(folder, decode_style="fast")
    for kwargs in (dict(src_lang="fra"), dict(src_lang="cmn", tgt_lang="eng"), dict(padding=False)):
        assert _plain(proc(text=TEXTS[:4], **kwargs)) == _plain(ref(text=TEXTS[:4], **kwargs))
    assert _plain(proc(text=TEXTS[0], return_tensors="np")) == _plain(ref(text=TEXTS[0], return_tensors="np"))
    import mlx.core as mx

    assert isinstance(proc(text="hi", return_tensors="mlx")["input_ids"], mx.array)
    assert proc.tokenizer.tgt_lang == "__eng__"
    seq = [3, proc.tokenizer.lang_code_to_id("fra")] + proc.tokenizer.encode("hello", add_special_tokens=False) + [3]
    assert proc.decode(seq, skip_special_tokens=True) == ref.decode(seq, skip_special_tokens=True)
    assert proc.batch_decode([seq, seq]) == ref.batch_decode([seq, seq])
    with pytest.raises(ValueError):
        proc()
    with pytest.raises(ValueError):
        proc(text="hi", audios=np.zeros(16000, dtype=np.float32))
    with pytest.raises(ValueError):
        proc(text="hi", src_lang="klingon")


def test_processor_audio(folder):
    pytest.importorskip("seamless_mlx.audio")
    proc = SeamlessM4TProcessor.from_pretrained(folder)
    wave = np.sin(np.arange(8000, dtype=np.float32) / 10.0).astype(np.float32)
    out = proc(audios=wave, sampling_rate=16000, return_tensors="np")
    direct = proc.feature_extractor(wave, sampling_rate=16000, return_tensors="np")
    assert set(out) >= {"input_features"}
    np.testing.assert_array_equal(out["input_features"], direct["input_features"])
    alias = proc(audio=[wave, wave[:4000]], sampling_rate=16000)
    assert alias["input_features"].shape[0] == 2
    with pytest.raises(ValueError):
        proc(audios=wave, audio=wave)


def test_dummy_prefix_surgery_matches_transformers(folder, hf):
    """Our protobuf-free edit of the spm model equals transformers' protobuf MergeFrom edit."""
    from transformers.convert_slow_tokenizer import import_protobuf

    from seamless_mlx.spm_proto import without_dummy_prefix

    model_pb2 = import_protobuf()
    raw = (folder / "sentencepiece.bpe.model").read_bytes()
    ours = model_pb2.ModelProto.FromString(without_dummy_prefix(raw))
    theirs = model_pb2.ModelProto.FromString(hf.sp_model.serialized_model_proto())
    assert ours.normalizer_spec.add_dummy_prefix is False
    assert ours == theirs
