"""``generate`` and ``stream_generate`` for every task, with transformers' keyword conventions.

Keyword routing follows transformers' SeamlessM4T-v2: ``text_*`` keywords go to text generation,
``speech_*`` keywords to the text-to-unit model, and an unprefixed keyword to both (the prefixed
one wins).  Unset keywords take the checkpoint's ``generation_config.json`` values; both are
resolved once, here, into a :class:`GenerateOptions`.  A keyword that no part of generation
understands is an error, never silently ignored.

The pieces: :mod:`seamless_mlx.search` holds the search loops (greedy/sampling, beam) over one
step function, :mod:`seamless_mlx.sample_utils` the logits processors and samplers; this module
builds the step function from the model (any object with ``encode``, ``text_decoder``, ``shared``,
``generation_config`` and ``config``; the T2U model and vocoder for speech).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Tuple

import mlx.core as mx
import numpy as np

from .sample_utils import make_logits_processors, make_sampler, make_warper
from .search import DecodeStep, beam_search, greedy_search
from .t2u import char_inputs, select_units, t2u_attention_mask, units_for_vocoder
from .text import DecoderSteps
from .vocoder import FIRST_WINDOW, LARGEST_WINDOW, window_spans

# fairseq's vocabulary layout, which every SeamlessM4T tokenizer uses: <pad>=0, <unk>=1, <s>=2, </s>=3
UNK_TOKEN_ID = 1

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
    "unk_blocking",
    "unk_token_id",
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


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


@dataclass
class GenerateOutput:
    """Text generation result; ``out[0]`` is ``sequences`` as in transformers' ``ModelOutput``."""

    sequences: mx.array  # [B * num_return_sequences, L]
    sequences_scores: Optional[mx.array] = None  # [B * num_return_sequences], beam search only
    decoder_hidden_states: Optional[mx.array] = None  # [B, L-1, D] states of sequences[:, :-1]
    encoder_hidden_states: Optional[mx.array] = None

    def __getitem__(self, i):
        return (self.sequences, self.sequences_scores)[i] if isinstance(i, int) else getattr(self, i)


@dataclass
class SpeechOutput:
    """Speech generation result; unpacks as ``(waveform [B, N], waveform_lengths [B])``.

    ``sequences`` (text ids) and ``unit_sequences`` are set with ``return_intermediate_token_ids``.
    """

    waveform: mx.array
    waveform_lengths: mx.array
    sequences: Optional[mx.array] = None
    unit_sequences: Optional[mx.array] = None

    def __getitem__(self, i):
        if isinstance(i, str):
            return getattr(self, i)
        return (self.waveform, self.waveform_lengths, self.sequences, self.unit_sequences)[i]

    def __iter__(self):
        return iter((self.waveform, self.waveform_lengths))


@dataclass
class StreamChunk:
    """One piece of a streamed translation (see :func:`stream_generate`)."""

    token_id: Optional[int]
    text: Optional[str]
    finished: bool
    waveform: Optional[mx.array] = None


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------


def split_kwargs(kwargs: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
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


@dataclass(frozen=True)
class GenerateOptions:
    """Every decoding choice, resolved: a keyword when given, else the generation config's value.

    Field names and meanings are transformers' ``GenerationConfig`` ones, plus ``unk_blocking``
    (never emit ``unk_token_id``) and the T2U model's ``speech_do_sample``/``speech_temperature``.
    """

    max_new_tokens: int
    num_beams: int = 1
    do_sample: bool = False
    temperature: Optional[float] = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    length_penalty: float = 1.0
    early_stopping: Any = False
    num_return_sequences: int = 1
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    min_new_tokens: int = 0
    unk_blocking: bool = False
    unk_token_id: int = UNK_TOKEN_ID
    eos_token_id: Tuple[int, ...] = (3,)
    pad_token_id: Optional[int] = 0
    decoder_start_token_id: int = 3
    speech_do_sample: bool = False
    speech_temperature: Optional[float] = None

    @classmethod
    def resolve(
        cls, generation_config, text: Dict[str, Any], speech: Optional[Dict[str, Any]] = None, prefix_len: int = 2
    ) -> "GenerateOptions":
        """Options from routed keywords (:func:`split_kwargs`) over ``generation_config``'s defaults.

        ``prefix_len`` (decoder start token + language code) turns ``max_length`` into
        ``max_new_tokens``.  Raises ``ValueError`` for values no search accepts.
        """
        speech = speech or {}

        def get(name):
            v = text.get(name)
            return getattr(generation_config, name, None) if v is None else v

        if text.get("max_new_tokens") is not None:
            max_new = int(text["max_new_tokens"])
        elif text.get("max_length") is not None:
            max_new = max(int(text["max_length"]) - prefix_len, 0)
        else:
            max_new = int(generation_config.max_new_tokens)
        eos = get("eos_token_id")
        eos = () if eos is None else tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))
        opts = cls(
            max_new_tokens=max_new,
            num_beams=int(get("num_beams") or 1),
            do_sample=bool(get("do_sample")),
            temperature=_float_or_none(get("temperature")),
            top_k=None if get("top_k") is None else int(get("top_k")),
            top_p=_float_or_none(get("top_p")),
            length_penalty=1.0 if get("length_penalty") is None else float(get("length_penalty")),
            early_stopping="never" if get("early_stopping") == "never" else bool(get("early_stopping")),
            num_return_sequences=int(get("num_return_sequences") or 1),
            repetition_penalty=1.0 if get("repetition_penalty") is None else float(get("repetition_penalty")),
            no_repeat_ngram_size=int(get("no_repeat_ngram_size") or 0),
            min_new_tokens=int(get("min_new_tokens") or 0),
            unk_blocking=bool(text.get("unk_blocking")),
            unk_token_id=UNK_TOKEN_ID if text.get("unk_token_id") is None else int(text["unk_token_id"]),
            eos_token_id=eos,
            pad_token_id=get("pad_token_id"),
            decoder_start_token_id=int(get("decoder_start_token_id")),
            speech_do_sample=bool(speech.get("do_sample", False)),
            speech_temperature=speech.get("temperature"),
        )
        opts._check()
        return opts

    def _check(self):
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.do_sample and self.temperature is not None and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 for sampling, got {self.temperature}")
        if self.num_beams > 1:
            if self.num_return_sequences > self.num_beams:
                raise ValueError(
                    f"num_return_sequences ({self.num_return_sequences}) must be at most num_beams "
                    f"({self.num_beams}) in beam search."
                )
            if self.max_new_tokens < 1:
                raise ValueError(f"beam search needs max_new_tokens >= 1, got {self.max_new_tokens}.")
        elif self.num_return_sequences > 1 and not self.do_sample:
            raise ValueError("num_return_sequences > 1 needs num_beams >= num_return_sequences or do_sample=True.")


def _float_or_none(v):
    return None if v is None else float(v)


def normalise_lang(lang: Optional[str]) -> Optional[str]:
    return None if lang is None else lang.replace("__", "")


def check_target(model, tgt_lang: str, generate_speech: bool, speaker_id: Any = 0) -> None:
    """``ValueError`` naming what is accepted, unless ``model`` can produce ``tgt_lang`` text (and,
    with ``generate_speech``, speech with voice ``speaker_id``)."""
    gen = model.generation_config
    _check_lang(tgt_lang, gen.text_decoder_lang_to_code_id, "text output")
    if not generate_speech:
        return
    _check_lang(
        tgt_lang,
        gen.vocoder_lang_code_to_id,
        "speech output",
        " Use generate_speech=False (CLI: --text) to get text in this language.",
    )
    n_spk = model.config.vocoder_num_spkrs
    if not isinstance(speaker_id, (int, np.integer)) or not 0 <= int(speaker_id) < n_spk:
        raise ValueError(f"speaker_id must be an integer in 0..{n_spk - 1}, got {speaker_id!r}.")


def _check_lang(lang: str, table: Dict[str, int], what: str, hint: str = ""):
    if not table:
        raise ValueError(
            f"This checkpoint's generation_config.json has no language map for {what}; "
            "make sure the folder holds the model's own generation_config.json."
        )
    if lang not in table:
        codes = ", ".join(sorted(table))
        raise ValueError(f"tgt_lang={lang!r} is not supported for {what}. Supported: {codes}.{hint}")


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def decoder_step(model, memory: mx.array, memory_mask: Optional[mx.array]):
    """The step function the searches run, with a fresh KV cache for ``memory`` ``[B, S, D]``
    (a :class:`~seamless_mlx.text.DecoderSteps`).

    ``step(tokens [B, L], rows=None) -> (logits [B, V] of the last position, hidden [B, L, D])``;
    ``rows`` ``[B]`` first gathers the cache's batch rows (beam search's reordering).
    """
    return DecoderSteps(model.text_decoder, model.shared, memory, memory_mask)


def _repeat(x: Optional[mx.array], n: int) -> Optional[mx.array]:
    return x if x is None or n == 1 else mx.repeat(x, n, axis=0)


def decode_steps(model, memory, memory_mask, prefix: mx.array, options: GenerateOptions) -> Iterator[DecodeStep]:
    """Greedy or sampled decode steps (:class:`~seamless_mlx.search.DecodeStep`) on a fresh cache."""
    warper = make_warper(options.temperature, options.top_k, options.top_p) if options.do_sample else None
    return greedy_search(
        decoder_step(model, memory, memory_mask),
        prefix,
        options.max_new_tokens,
        options.eos_token_id,
        options.pad_token_id,
        make_logits_processors(options, prefix_len=prefix.shape[1]),
        make_sampler(warper),
    )


def decode_text(
    model, memory, memory_mask, prefix: mx.array, options: GenerateOptions, collect_hidden: bool = False
) -> GenerateOutput:
    """Run the text decoder from ``prefix`` ``[B, P]`` over ``memory`` ``[B, S, D]``.

    ``collect_hidden`` also returns the decoder's final states for ``sequences[:, :-1]`` (the T2U
    model's input).  Sequences are ``[B * num_return_sequences, L]``, an item's rows together, and
    come back evaluated: the search runs inside the decoder's :meth:`~seamless_mlx.text.TextDecoder.decoding`
    context, which must hold all of its work.
    """
    per_item = options.num_beams if options.num_beams > 1 else options.num_return_sequences
    with model.text_decoder.decoding(memory.shape[0] * per_item):
        out = _decode_text(model, memory, memory_mask, prefix, options, collect_hidden)
        mx.eval([a for a in (out.sequences, out.sequences_scores, out.decoder_hidden_states) if a is not None])
    return out


def _decode_text(model, memory, memory_mask, prefix, options, collect_hidden):
    n_ret = options.num_return_sequences
    if options.num_beams > 1:
        nb = options.num_beams
        warper = None
        if options.do_sample:
            # transformers keeps #eos + 1 candidates through top-k/top-p in beam sampling
            min_keep = len(options.eos_token_id) + 1 if options.eos_token_id else 2
            warper = make_warper(options.temperature, options.top_k, options.top_p, min_keep=min_keep)
        seqs, scores = beam_search(
            decoder_step(model, _repeat(memory, nb), _repeat(memory_mask, nb)),
            prefix,
            options.max_new_tokens,
            nb,
            options.eos_token_id,
            options.pad_token_id,
            length_penalty=options.length_penalty,
            early_stopping=options.early_stopping,
            num_return_sequences=n_ret,
            logits_processors=make_logits_processors(options, prefix_len=prefix.shape[1]),
            warper=warper,
        )
        states = None
        if collect_hidden:
            _, states = decoder_step(model, _repeat(memory, n_ret), _repeat(memory_mask, n_ret))(seqs[:, :-1])
        return GenerateOutput(seqs, scores, states, memory)

    prefix = _repeat(prefix, n_ret)
    tokens, hidden = [], []
    for s in decode_steps(model, _repeat(memory, n_ret), _repeat(memory_mask, n_ret), prefix, options):
        tokens.append(s.tokens)
        if collect_hidden:
            hidden.append(s.hidden)
    seqs = mx.concatenate([prefix] + [t[:, None] for t in tokens], axis=1)
    states = mx.concatenate(hidden, axis=1) if collect_hidden and hidden else None
    return GenerateOutput(sequences=seqs, decoder_hidden_states=states, encoder_hidden_states=memory)


def vocoder_inputs(model, sequences: mx.array, decoder_states: mx.array, tgt_lang: str, speaker_id: int, options):
    """Text ids + decoder states of ``sequences[:, :-1]`` -> the T2U model's units and the
    vocoder's inputs: ``(vocoder units [B, U], speaker ids [B], language ids [B], unit ids)``."""
    gen = model.generation_config
    seq_np = np.array(sequences)
    char_ids, char_counts = char_inputs(seq_np, gen, pad_token_id=gen.pad_token_id, eos_token_id=gen.eos_token_id)
    t2u_mask = t2u_attention_mask(seq_np, gen.pad_token_id)
    logits, padding_mask = model.t2u_model(decoder_states, mx.array(char_ids), mx.array(char_counts), mx.array(t2u_mask))
    units = select_units(logits, do_sample=options.speech_do_sample, temperature=options.speech_temperature)
    voc_units = units_for_vocoder(units, padding_mask, model.config)
    B = units.shape[0]
    lang = mx.array([gen.vocoder_lang_code_to_id[tgt_lang]] * B)
    spk = mx.array([speaker_id] * B)
    return voc_units, spk, lang, units


def synthesize(model, sequences: mx.array, decoder_states: mx.array, tgt_lang: str, speaker_id: int, options):
    """Text ids + decoder states of ``sequences[:, :-1]`` -> (waveform, lengths, unit ids).

    The T2U model and the vocoder form one lazy graph; the only host syncs are the ones the
    length regulators need to know output sizes.
    """
    voc_units, spk, lang, units = vocoder_inputs(model, sequences, decoder_states, tgt_lang, speaker_id, options)
    waveform, lengths = model.vocoder(voc_units, spk, lang)
    return waveform, lengths, units


def stream_speech(
    model, sequences: mx.array, decoder_states: mx.array, tgt_lang: str, speaker_id: int, options,
    window: Optional[int] = None,
) -> Iterator[mx.array]:
    """One item's speech (``sequences`` ``[1, L]``) in evaluated pieces ``[n]`` float32, each as
    soon as its vocoder window has run; concatenated, they equal :func:`synthesize`'s waveform
    up to its length.

    The T2U model and the durations run once for the whole item; the HiFi-GAN then runs over
    windows of frames (``window`` frames each, or by default :data:`~seamless_mlx.vocoder.FIRST_WINDOW`
    frames first and twice as many each time after, up to :data:`~seamless_mlx.vocoder.LARGEST_WINDOW`).
    """
    voc_units, spk, lang, _ = vocoder_inputs(model, sequences, decoder_states, tgt_lang, speaker_id, options)
    features, lengths = model.vocoder.features(voc_units, spk, lang)
    mx.eval(features, lengths)
    spans = window_spans(features.shape[1], window or FIRST_WINDOW, None if window else LARGEST_WINDOW)
    left = int(lengths[0].item())
    for piece in model.vocoder.waveform_windows(features, spans):
        if left <= 0:  # the rest is past the item's length (transformers' length rule)
            break
        piece = piece[0, :left]
        mx.eval(piece)
        left -= piece.shape[0]
        yield piece


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


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
            optionally prefixed with ``text_`` or ``speech_``.  Beyond transformers:
            ``unk_blocking=True`` never emits the unknown token (seamless_communication's
            ``--text_unk_blocking``; ``unk_token_id`` defaults to 1).

    Returns:
        Text only: a :class:`GenerateOutput` (``out[0]``/``out.sequences``: ``[B, L]`` ids that
        start with the decoder start token and the language code).  Speech: ``(waveform [B, N],
        waveform_lengths [B])``, or a :class:`SpeechOutput` with ``return_intermediate_token_ids``.
    """
    if input_ids is None and input_features is None:
        raise ValueError("Pass input_ids (text, from the processor) or input_features (speech).")
    if generate_speech is None:
        generate_speech = model.default_generate_speech
    if generate_speech and not hasattr(model, "t2u_model"):
        raise ValueError(f"{type(model).__name__} cannot generate speech; use generate_speech=False.")
    text_kw, speech_kw = split_kwargs(kwargs)
    gen = model.generation_config
    tgt_lang = normalise_lang(tgt_lang)

    decoder_input_ids = text_kw.pop("decoder_input_ids", None)
    if tgt_lang is not None:
        check_target(model, tgt_lang, generate_speech, speaker_id)
    elif generate_speech:
        raise ValueError("tgt_lang is required to generate speech.")
    elif decoder_input_ids is None:
        raise ValueError(
            "Pass tgt_lang (e.g. tgt_lang='fra'); supported: " + ", ".join(sorted(gen.text_decoder_lang_to_code_id))
        )
    # the decoder prefix: [start, language code], or the given ids behind the start token
    start = text_kw.get("decoder_start_token_id")
    start = gen.decoder_start_token_id if start is None else int(start)
    if tgt_lang is not None:
        rows = np.array([[start, gen.text_decoder_lang_to_code_id[tgt_lang]]])
    else:
        rows = np.atleast_2d(np.asarray(decoder_input_ids))
        if int(rows[0, 0]) != start:
            rows = np.concatenate([np.full((rows.shape[0], 1), start), rows], axis=1)
    options = GenerateOptions.resolve(gen, text_kw, speech_kw, prefix_len=rows.shape[1])

    memory, memory_mask = model.encode(input_ids, input_features, attention_mask)
    B = memory.shape[0]
    if rows.shape[0] not in (1, B):
        raise ValueError(f"decoder_input_ids has {rows.shape[0]} rows for {B} inputs; give one row or one per input.")
    prefix = mx.array(np.broadcast_to(rows, (B, rows.shape[1])), dtype=mx.int32)

    text_out = decode_text(model, memory, memory_mask, prefix, options, collect_hidden=generate_speech)
    if not generate_speech:
        mx.eval(text_out.sequences)
        return text_out

    waveform, lengths, units = synthesize(
        model, text_out.sequences, text_out.decoder_hidden_states, tgt_lang, int(speaker_id), options
    )
    mx.eval(waveform, lengths, units)
    if return_intermediate_token_ids:
        return SpeechOutput(waveform, lengths, text_out.sequences, units)
    return SpeechOutput(waveform, lengths)


def stream_generate(
    model,
    processor=None,
    input_ids=None,
    input_features=None,
    attention_mask=None,
    tgt_lang: Optional[str] = None,
    generate_speech: bool = False,
    speaker_id: int = 0,
    vocoder_window: Optional[int] = None,
    **kwargs,
) -> Iterator[StreamChunk]:
    """Yield the translation as it is decoded (greedy or sampling; batch size 1).

    Yields :class:`StreamChunk` objects with the new token id and, when a ``processor`` (or
    tokenizer) is given, the newly decoded text piece (word boundaries handled, so the pieces
    concatenate to the full decoded text).  With ``generate_speech=True``, chunks with
    ``waveform`` set (``[n]`` float32, 16 kHz) follow the text, each as soon as its vocoder window
    has run (see :func:`stream_speech`; ``vocoder_window`` frames each if given); concatenated,
    they are the waveform :func:`generate` returns.  Keywords as for :func:`generate`.
    """
    text_kw, speech_kw = split_kwargs(kwargs)
    if int(text_kw.get("num_beams") or 1) > 1:
        raise ValueError("stream_generate supports greedy decoding and sampling (num_beams=1) only.")
    gen = model.generation_config
    tgt_lang = normalise_lang(tgt_lang)
    if tgt_lang is None:
        raise ValueError("Pass tgt_lang (e.g. tgt_lang='fra').")
    check_target(model, tgt_lang, generate_speech, speaker_id)
    options = GenerateOptions.resolve(gen, dict(text_kw, num_beams=1), speech_kw)
    memory, memory_mask = model.encode(input_ids, input_features, attention_mask)
    if memory.shape[0] != 1:
        raise ValueError("stream_generate takes one input at a time; use generate() for batches.")
    prefix = mx.array([[options.decoder_start_token_id, gen.text_decoder_lang_to_code_id[tgt_lang]]])
    detok = processor.incremental_decoder() if processor is not None else None
    ids, hidden = [], []
    for s in decode_steps(model, memory, memory_mask, prefix, options):
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
        states = mx.concatenate(hidden, axis=1)
        for piece in stream_speech(model, seq, states, tgt_lang, int(speaker_id), options, vocoder_window):
            yield StreamChunk(token_id=None, text=None, finished=True, waveform=piece)
