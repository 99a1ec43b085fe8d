"""Many inputs at once: jobs grouped by kind, language pair and length, decoded in padded batches.

The decoder's cost per step is dominated by reading its weights, so a batch of 16 sentences
costs little more per step than one.  Batching never changes a result here; every job gives the
same ids and text as a call of ``model.generate`` on it alone:

* text: one padded ``processor(text=[...], padding=True)`` batch per group.  The text encoder
  masks padded keys, so each row's states are those of the row alone.
* speech: each clip goes through the speech encoder on its own and only the decoder is batched,
  over the encoder states padded to the longest clip with a memory mask.  Padding the *features*
  instead would change the output: the conformer and the adaptor's strided convolution read
  padded frames near the end of each clip (transformers behaves the same way), so a batched
  clip would not be translated as it is alone.  The decoder is where batching pays.

Jobs are grouped by (model, kind, source language, target language, decoding options) and
sorted by length within a group, so a batch holds inputs of similar length and padding stays
small.  Speech output (the T2U model and the vocoder) runs per job after the batched decoder,
for the same reason as the speech encoder.  A batch that fails is retried one job at a time, so
one bad job gets its own error and the others their results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import mlx.core as mx
import numpy as np

from .generate import (
    GenerateOptions, check_target, decode_text, normalise_lang, split_kwargs, stream_generate, synthesize,
)

__all__ = ["Job", "JobOutput", "run_jobs", "batches"]


@dataclass
class Job:
    """One model call's worth of input: a line of text or one clip's features.

    ``length`` is the encoder input length (tokens or feature frames), used to sort jobs so that
    a batch holds inputs of similar length.
    """

    model: Any
    processor: Any
    tgt_lang: str
    gen_kwargs: Dict[str, Any]
    text: Optional[str] = None
    src_lang: Optional[str] = None
    features: Optional[np.ndarray] = None  # [T, 160]
    feature_mask: Optional[np.ndarray] = None  # [T], the processor's 1/0 mask
    length: int = 0
    speech: bool = False
    speaker_id: int = 0

    def key(self) -> Tuple:
        kind = "text" if self.text is not None else "speech"
        return (id(self.model), kind, self.src_lang, self.tgt_lang, self.speech, self.speaker_id,
                tuple(sorted(self.gen_kwargs.items())))


@dataclass
class JobOutput:
    """A job's translation: ``ids`` as ``model.generate`` returns them for the job alone."""

    text: str
    ids: List[int]
    waveform: Optional[np.ndarray] = None


# Most jobs decoded together: a batch's activations, decoder cache and, for lists of sources, the
# window of inputs read ahead (4 batches) grow with it; past a few dozen rows no machine gains.
MAX_BATCH_SIZE = 256


def check_batch_size(batch_size) -> int:
    """``batch_size`` as an int from 1 to :data:`MAX_BATCH_SIZE`, or a ValueError saying so."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be a whole number from 1 to {MAX_BATCH_SIZE}, got {batch_size!r}.")
    return batch_size


def batches(jobs: Sequence[Job], batch_size: int) -> List[List[int]]:
    """Indices of ``jobs`` in batches of at most ``batch_size``: one group (see :meth:`Job.key`)
    per batch, sorted by length within a group so that neighbours pad little."""
    check_batch_size(batch_size)
    groups: Dict[Tuple, List[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.key(), []).append(i)
    out: List[List[int]] = []
    for idx in groups.values():
        idx.sort(key=lambda i: jobs[i].length)
        out.extend(idx[k:k + batch_size] for k in range(0, len(idx), batch_size))
    return out


def run_jobs(
    jobs: Sequence[Job],
    batch_size: int = 16,
    on_progress: Optional[Callable[[int], None]] = None,
    on_output: Optional[Callable[[int, Union[JobOutput, Exception]], None]] = None,
    stream: Optional[Callable[[int, str], None]] = None,
) -> List[Union[JobOutput, Exception]]:
    """Translate ``jobs`` in padded batches; results in the order of ``jobs``.

    A job that fails gets its exception in its place (the others still run); ``on_progress(n)``
    is called after each batch with the number of jobs it finished.  ``on_output(i, output)`` is
    called once per job, in the order of ``jobs``, as soon as job ``i`` and every job before it are
    done (``output`` is the job's result or its exception; an exception raised by the hook stops
    the run): batches run in length order, a caller showing pieces as they come needs them in
    input order.  With ``stream(i, piece)`` the jobs run one at a time in their order, and a greedy
    text-output job is decoded token by token, ``stream`` getting each newly decoded piece of its
    text (the pieces concatenate to the text before it is stripped); other jobs run as usual.
    """
    results: List[Union[JobOutput, Exception, None]] = [None] * len(jobs)
    shown = 0
    order = [[i] for i in range(len(jobs))] if stream is not None else batches(jobs, batch_size)
    for idx in order:
        if stream is not None and _streams(jobs[idx[0]]):
            try:
                outs = [_stream_job(jobs[idx[0]], lambda piece, i=idx[0]: stream(i, piece))]
            except Exception as e:  # noqa: BLE001 - the job's own error, reported in its result
                outs = [e]
        else:
            try:
                outs = _run_batch([jobs[i] for i in idx])
            except Exception:  # noqa: BLE001 - isolate the bad job: retry one at a time
                outs = []
                for i in idx:
                    try:
                        outs.extend(_run_batch([jobs[i]]))
                    except Exception as e:  # noqa: BLE001 - the job's own error, reported in its result
                        outs.append(e)
        for i, o in zip(idx, outs):
            results[i] = o
        if on_progress is not None:
            on_progress(len(idx))
        while on_output is not None and shown < len(jobs) and results[shown] is not None:
            shown += 1
            on_output(shown - 1, results[shown - 1])  # type: ignore[arg-type]
    return results  # type: ignore[return-value]


def _streams(job: Job) -> bool:
    beams = job.gen_kwargs.get("num_beams") or job.model.generation_config.num_beams or 1
    return job.text is not None and not job.speech and int(beams) == 1


def _stream_job(job: Job, emit: Callable[[str], None]) -> JobOutput:
    """One greedy text job through :func:`~seamless_mlx.generate.stream_generate`: what
    :func:`_run_batch` gives for it, with the text passed to ``emit`` as it is decoded."""
    enc = job.processor(text=job.text, src_lang=job.src_lang, return_tensors="mlx")
    tgt = normalise_lang(job.tgt_lang)
    ids, pieces = [], []
    for chunk in stream_generate(job.model, job.processor, input_ids=enc["input_ids"],
                                 attention_mask=enc.get("attention_mask"), tgt_lang=tgt, **job.gen_kwargs):
        if chunk.token_id is not None:
            ids.append(chunk.token_id)
        if chunk.text:
            pieces.append(chunk.text)
            emit(chunk.text)
    gen = job.model.generation_config
    start = GenerateOptions.resolve(gen, *split_kwargs(dict(job.gen_kwargs))).decoder_start_token_id
    return JobOutput(text="".join(pieces).strip(), ids=[start, gen.text_decoder_lang_to_code_id[tgt]] + ids)


def _run_batch(group: List[Job]) -> List[JobOutput]:
    first = group[0]
    model, processor = first.model, first.processor
    gen = model.generation_config
    tgt = normalise_lang(first.tgt_lang)
    check_target(model, tgt, first.speech, first.speaker_id)
    text_opts, speech_opts = split_kwargs(dict(first.gen_kwargs))
    options = GenerateOptions.resolve(gen, text_opts, speech_opts)
    if first.text is not None:
        enc = processor(text=[j.text for j in group], src_lang=first.src_lang, padding=True, return_tensors="mlx")
        memory, mask = model.encode(input_ids=enc["input_ids"], attention_mask=enc.get("attention_mask"))
    else:
        memory, mask = _encode_clips(model, [(j.features, j.feature_mask) for j in group])
    start = options.decoder_start_token_id
    prefix = mx.array([[start, gen.text_decoder_lang_to_code_id[tgt]]] * len(group), dtype=mx.int32)
    out = decode_text(model, memory, mask, prefix, options, collect_hidden=first.speech)
    seqs = np.array(out.sequences)
    eos = set(options.eos_token_id)
    results = []
    for r in range(len(group)):
        ids = _trim(seqs[r].tolist(), eos, prefix.shape[1])
        wav = None
        if first.speech:
            # per row: the text-to-unit model and the vocoder see padding in a batch, so a batched
            # waveform would differ from the job's own; they cost little next to the decoder
            n = len(ids)
            w, wl, _ = synthesize(model, out.sequences[r : r + 1, :n], out.decoder_hidden_states[r : r + 1, : n - 1],
                                  tgt, first.speaker_id, options)
            mx.eval(w, wl)
            wav = np.array(w[0, : int(wl[0].item())], dtype=np.float32)
        text = processor.decode(ids, skip_special_tokens=True).strip()
        results.append(JobOutput(text=text, ids=ids, waveform=wav))
    return results


def _encode_clips(model, clips: List[Tuple[np.ndarray, Optional[np.ndarray]]]):
    """Each clip through the speech encoder alone (as ``generate`` would see it), the states
    padded into ``[B, T', D]`` and the encoder's own masks padded with zeros."""
    states, masks = [], []
    for f, m in clips:
        s, sm = model.encode(input_features=mx.array(f[None]), attention_mask=None if m is None else mx.array(m[None]))
        states.append(s)
        masks.append(np.ones(s.shape[1], np.int32) if sm is None else np.array(sm[0], dtype=np.int32))
    if len(states) == 1:
        return states[0], None if clips[0][1] is None else mx.array(masks[0][None])
    longest = max(int(s.shape[1]) for s in states)
    memory = mx.concatenate([mx.pad(s, [(0, 0), (0, longest - s.shape[1]), (0, 0)]) for s in states], axis=0)
    mask = np.zeros((len(states), longest), np.int32)
    for r, m in enumerate(masks):
        mask[r, : len(m)] = m
    return memory, mx.array(mask)


def _trim(ids: List[int], eos: set, prefix_len: int) -> List[int]:
    """A batch row cut after its first EOS: what ``generate`` returns for the row's job alone."""
    for k in range(prefix_len, len(ids)):
        if ids[k] in eos:
            return ids[: k + 1]
    return ids
