"""Streaming: the pieces yielded while decoding add up to what generate() returns."""

import pytest

import seamless_mlx as sm
from seamless_mlx.processor import SeamlessM4TProcessor

TEXTS = ["Hello world, how are you?", "Je voudrais un café, s'il vous plaît.", "Привет, мир!"]


@pytest.fixture(scope="module")
def t2tt(tiny_checkpoint):
    return sm.SeamlessM4Tv2ForTextToText.from_pretrained(tiny_checkpoint), SeamlessM4TProcessor.from_pretrained(
        tiny_checkpoint
    )


@pytest.mark.parametrize("text", TEXTS)
def test_streamed_tokens_and_text_equal_generate(t2tt, text):
    model, proc = t2tt
    inputs = proc(text=text, src_lang="eng", return_tensors="mlx")
    chunks = list(model.stream_generate(proc, **inputs, tgt_lang="fra", max_new_tokens=12))
    out = model.generate(**inputs, tgt_lang="fra", max_new_tokens=12)
    ids = [c.token_id for c in chunks if c.token_id is not None]
    assert ids == out.sequences.tolist()[0][2:]
    assert "".join(c.text or "" for c in chunks) == proc.decode(out[0].tolist()[0], skip_special_tokens=True)


def test_stream_refuses_beams(t2tt):
    model, proc = t2tt
    inputs = proc(text=TEXTS[0], src_lang="eng", return_tensors="mlx")
    with pytest.raises(ValueError, match="num_beams"):
        list(model.stream_generate(proc, **inputs, tgt_lang="fra", num_beams=2))
