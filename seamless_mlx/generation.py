"""``generate`` for every task, with transformers' keyword conventions.

Keyword routing follows transformers' SeamlessM4T-v2: ``text_*`` keywords go to text generation,
``speech_*`` keywords to the text-to-unit model, and an unprefixed keyword to both (the prefixed
one wins).  Defaults come from the checkpoint's ``generation_config.json``.  A keyword that no
part of generation understands is an error, never silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import mlx.core as mx
import numpy as np

from .generate import greedy_steps
from .logits import build_processors, make_sampler

TEXT_KEYS = {
    "max_new_tokens",
    "min_new_tokens",
    "max_length",
    "num_beams",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "length_penalty",
    "early_stopping",
    "num_return_sequences",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "decoder_input_ids",
    "eos_token_id",
    "pad_token_id",
    "decoder_start_token_id",
    # accepted for transformers compatibility; MLX always returns a structured output
    "return_dict_in_generate",
    "output_scores",
    "output_hidden_states",
    "use_cache",
}
SPEECH_KEYS = {"do_sample", "temperature"}


def split_kwargs(kwargs: Dict[str, Any]):
    """transformers' routing: prefixed keys to one side, unprefixed to both (prefixed wins)."""
    text, speech = {}, {}
    for key, value in kwargs.items():
        if key.startswith("text_"):
            name = key[5:]
            if name not in TEXT_KEYS:
                raise ValueError(f"Unknown text generation keyword {key!r}. Known: {_known(TEXT_KEYS, 'text_')}")
            text[name] = value
        elif key.startswith("speech_"):
            name = key[7:]
            if name not in SPEECH_KEYS:
                raise ValueError(
                    f"Unknown speech generation keyword {key!r}. Known: {_known(SPEECH_KEYS, 'speech_')}"
                )
            speech[name] = value
    for key, value in kwargs.items():
        if key.startswith(("text_", "speech_")):
            continue
        if key not in TEXT_KEYS and key not in SPEECH_KEYS:
            raise ValueError(
                f"Unknown generate() keyword {key!r}. Known: {', '.join(sorted(TEXT_KEYS | SPEECH_KEYS))}, "
                "each also with a text_ or speech_ prefix (see the SeamlessM4T-v2 docs)."
            )
        if key in TEXT_KEYS:
            text.setdefault(key, value)
        if key in SPEECH_KEYS:
            speech.setdefault(key, value)
    return text, speech


def _known(keys, prefix):
    return ", ".join(prefix + k for k in sorted(keys))


def normalise_lang(lang: Optional[str]) -> Optional[str]:
    return None if lang is None else lang.replace("__", "")


def check_lang(lang: str, table: Dict[str, int], what: str, hint: str = ""):
    if not table:
        raise ValueError(
            f"This checkpoint's generation_config.json has no language map for {what}; "
            "make sure the folder holds the model's own generation_config.json."
        )
    if lang not in table:
        codes = ", ".join(sorted(table))
        raise ValueError(f"tgt_lang={lang!r} is not supported for {what}. Supported: {codes}.{hint}")


def _option(opts: Dict[str, Any], gen, name: str):
    v = opts.get(name)
    return getattr(gen, name) if v is None else v


def decode_steps(model, memory, memory_mask, prefix: mx.array, opts: Dict[str, Any], max_new: int):
    """Greedy or sampled decode steps (:class:`~seamless_mlx.generate.DecodeStep`) on a fresh cache."""
    gen = model.generation_config
    processors = build_processors(opts, gen, prefix_len=prefix.shape[1])
    sampler = make_sampler(opts, gen) if bool(_option(opts, gen, "do_sample")) else None
    decoder = model.text_decoder
    cache = decoder.make_cache(memory)

    def step(tokens):
        h = decoder(tokens, model.shared, cache, memory_mask)
        return model.lm_logits(h[:, -1, :]), h

    eos, pad = _option(opts, gen, "eos_token_id"), _option(opts, gen, "pad_token_id")
    return greedy_steps(step, prefix, max_new, eos, pad, processors, sampler)


def generate_text(model, memory, memory_mask, decoder_prefix: mx.array, opts: Dict[str, Any], collect_hidden: bool):
    """Run the text decoder; returns ``GenerateOutput``."""
    from .model import GenerateOutput

    gen = model.generation_config
    max_new = opts.get("max_new_tokens")
    if max_new is None:
        if opts.get("max_length") is not None:
            max_new = max(int(opts["max_length"]) - decoder_prefix.shape[1], 0)
        else:
            max_new = gen.max_new_tokens
    num_beams = int(_option(opts, gen, "num_beams"))
    do_sample = bool(_option(opts, gen, "do_sample"))
    num_return = int(_option(opts, gen, "num_return_sequences"))

    if num_beams > 1:
        from .beam import beam_search

        return beam_search(model, memory, memory_mask, decoder_prefix, opts, max_new, collect_hidden)
    if num_return > 1:
        if not do_sample:
            raise ValueError("num_return_sequences > 1 needs num_beams >= num_return_sequences or do_sample=True.")
        memory = mx.repeat(memory, num_return, axis=0)
        memory_mask = None if memory_mask is None else mx.repeat(memory_mask, num_return, axis=0)
        decoder_prefix = mx.repeat(decoder_prefix, num_return, axis=0)

    tokens: List[mx.array] = []
    hidden: List[mx.array] = []
    for s in decode_steps(model, memory, memory_mask, decoder_prefix, opts, max_new):
        tokens.append(s.tokens)
        if collect_hidden:
            hidden.append(s.hidden)
    seq = mx.concatenate([decoder_prefix] + [t[:, None] for t in tokens], axis=1)
    states = mx.concatenate(hidden, axis=1) if collect_hidden and hidden else None
    return GenerateOutput(sequences=seq, decoder_hidden_states=states, encoder_hidden_states=memory)


def generate(
    model,
    input_ids=None,
    input_features=None,
    attention_mask=None,
    tgt_lang: Optional[str] = None,
    generate_speech: Optional[bool] = None,
    speaker_id: int = 0,
    return_intermediate_token_ids: Optional[bool] = None,
    **kwargs,
):
    """Translate text or speech into text (and speech).

    Args:
        input_ids: ``[B, S]`` token ids from the processor (text input).
        input_features: ``[B, T, 160]`` fbank features from the processor (speech input; wins over
            ``input_ids`` when both are given, as in transformers).
        attention_mask: ``[B, S]`` or ``[B, T]`` 1/0 mask from the processor.
        tgt_lang: target language code (``"fra"`` or ``"__fra__"``).
        generate_speech: also synthesise speech (default: True for ``SeamlessM4Tv2Model`` and the
            speech-output task classes).
        speaker_id: vocoder speaker, ``0 .. vocoder_num_spkrs - 1``.
        return_intermediate_token_ids: with speech, also return text and unit ids.
        **kwargs: generation options (``max_new_tokens``, ``num_beams``, ``do_sample``, ...),
            optionally prefixed with ``text_`` or ``speech_``.

    Returns:
        Text only: a :class:`GenerateOutput` (``out[0]``/``out.sequences``: ``[B, L]`` ids that
        start with the decoder start token and the language code).  Speech: ``(waveform [B, N],
        waveform_lengths [B])``, or a :class:`SpeechOutput` with ``return_intermediate_token_ids``.
    """
    from .model import SpeechOutput

    if input_ids is None and input_features is None:
        raise ValueError("Pass input_ids (text, from the processor) or input_features (speech).")
    if generate_speech is None:
        generate_speech = model.default_generate_speech
    if generate_speech and not hasattr(model, "t2u_model"):
        raise ValueError(f"{type(model).__name__} cannot generate speech; use generate_speech=False.")
    text_opts, speech_opts = split_kwargs(kwargs)
    gen = model.generation_config
    tgt_lang = normalise_lang(tgt_lang)

    decoder_input_ids = text_opts.pop("decoder_input_ids", None)
    if tgt_lang is not None:
        check_lang(tgt_lang, gen.text_decoder_lang_to_code_id, "text output")
        if generate_speech:
            check_lang(
                tgt_lang,
                gen.vocoder_lang_code_to_id,
                "speech output",
                " Use generate_speech=False to get text in this language.",
            )
    elif generate_speech:
        raise ValueError("tgt_lang is required to generate speech.")
    elif decoder_input_ids is None:
        raise ValueError(
            "Pass tgt_lang (e.g. tgt_lang='fra'); supported: " + ", ".join(sorted(gen.text_decoder_lang_to_code_id))
        )
    if generate_speech:
        n_spk = model.config.vocoder_num_spkrs
        if not isinstance(speaker_id, (int, np.integer)) or not 0 <= int(speaker_id) < n_spk:
            raise ValueError(f"speaker_id must be an integer in 0..{n_spk - 1}, got {speaker_id!r}.")

    memory, memory_mask = model.encode(input_ids, input_features, attention_mask)
    B = memory.shape[0]
    start = _option(text_opts, gen, "decoder_start_token_id")
    if tgt_lang is not None:
        lang_id = gen.text_decoder_lang_to_code_id[tgt_lang]
        prefix = mx.array([[start, lang_id]] * B, dtype=mx.int32)
    else:
        prefix = mx.array(np.asarray(decoder_input_ids), dtype=mx.int32).reshape(B, -1)
        if int(prefix[0, 0].item()) != start:
            prefix = mx.concatenate([mx.full((B, 1), start, dtype=mx.int32), prefix], axis=1)

    text_out = generate_text(model, memory, memory_mask, prefix, text_opts, collect_hidden=generate_speech)
    if not generate_speech:
        mx.eval(text_out.sequences)
        return text_out

    waveform, lengths, units = synthesize(
        model, text_out.sequences, text_out.decoder_hidden_states, tgt_lang, int(speaker_id), speech_opts
    )
    mx.eval(waveform, lengths, units)
    if return_intermediate_token_ids:
        return SpeechOutput(waveform, lengths, text_out.sequences, units)
    return SpeechOutput(waveform, lengths)


def synthesize(model, sequences: mx.array, decoder_states: mx.array, tgt_lang: str, speaker_id: int, opts):
    """Text ids + decoder states of ``sequences[:, :-1]`` -> (waveform, lengths, unit ids).

    The T2U model and the vocoder form one lazy graph; the only host syncs are the ones the
    length regulators need to know output sizes.
    """
    from . import t2u as t2u_mod

    gen = model.generation_config
    cfg = model.config
    seq_np = np.array(sequences)
    char_ids, char_counts = t2u_mod.char_inputs(seq_np, gen, pad_token_id=gen.pad_token_id, eos_token_id=gen.eos_token_id)
    t2u_mask = t2u_mod.t2u_attention_mask(seq_np, gen.pad_token_id)
    logits, padding_mask = model.t2u_model(
        decoder_states, mx.array(char_ids), mx.array(char_counts), mx.array(t2u_mask)
    )
    units = t2u_mod.select_units(logits, do_sample=opts.get("do_sample", False), temperature=opts.get("temperature"))
    voc_units = t2u_mod.units_for_vocoder(units, padding_mask, cfg)
    B = units.shape[0]
    lang = mx.array([gen.vocoder_lang_code_to_id[tgt_lang]] * B)
    spk = mx.array([speaker_id] * B)
    waveform, lengths = model.vocoder(voc_units, spk, lang)
    return waveform, lengths, units


def stream_generate(
    model,
    processor=None,
    input_ids=None,
    input_features=None,
    attention_mask=None,
    tgt_lang: Optional[str] = None,
    generate_speech: bool = False,
    speaker_id: int = 0,
    **kwargs,
):
    """Yield the translation as it is decoded (greedy or sampling; batch size 1).

    Yields :class:`StreamChunk` objects with the new token id and, when a ``processor`` (or
    tokenizer) is given, the newly decoded text piece (word boundaries handled, so the pieces
    concatenate to the full decoded text).  With ``generate_speech=True`` the last chunk carries
    the waveform.
    """
    from .tokenizer import IncrementalDecoder

    text_opts, speech_opts = split_kwargs(kwargs)
    if int(text_opts.get("num_beams") or 1) > 1:
        raise ValueError("stream_generate supports greedy decoding and sampling (num_beams=1) only.")
    gen = model.generation_config
    tgt_lang = normalise_lang(tgt_lang)
    if tgt_lang is None:
        raise ValueError("Pass tgt_lang (e.g. tgt_lang='fra').")
    check_lang(tgt_lang, gen.text_decoder_lang_to_code_id, "text output")
    if generate_speech:
        check_lang(tgt_lang, gen.vocoder_lang_code_to_id, "speech output", " Use generate_speech=False.")
    memory, memory_mask = model.encode(input_ids, input_features, attention_mask)
    if memory.shape[0] != 1:
        raise ValueError("stream_generate takes one input at a time; use generate() for batches.")
    prefix = mx.array([[_option(text_opts, gen, "decoder_start_token_id"), gen.text_decoder_lang_to_code_id[tgt_lang]]])
    max_new = text_opts.get("max_new_tokens") or gen.max_new_tokens
    tok = getattr(processor, "tokenizer", processor)
    detok = IncrementalDecoder(tok) if tok is not None else None
    ids, hidden = [], []
    for s in decode_steps(model, memory, memory_mask, prefix, text_opts, max_new):
        t = int(s.tokens[0].item())
        ids.append(t)
        hidden.append(s.hidden)
        piece = None
        if detok is not None:
            detok.add_token(t)
            piece = detok.last_segment
        yield StreamChunk(token_id=t, text=piece, finished=bool(s.finished[0].item()))
    if detok is not None:
        detok.finalize()
        if detok.last_segment:
            yield StreamChunk(token_id=None, text=detok.last_segment, finished=True)
    if generate_speech:
        seq = mx.concatenate([prefix, mx.array([ids])], axis=1)
        wav, lengths, units = synthesize(
            model, seq, mx.concatenate(hidden, axis=1), tgt_lang, int(speaker_id), speech_opts
        )
        mx.eval(wav, lengths)
        yield StreamChunk(token_id=None, text=None, finished=True, waveform=wav[0, : int(lengths[0].item())])


@dataclass
class StreamChunk:
    """One piece of a streamed translation (see :func:`stream_generate`)."""

    token_id: Optional[int]
    text: Optional[str]
    finished: bool
    waveform: Optional[mx.array] = None
