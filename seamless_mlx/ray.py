"""Scale out with Ray Data: translate a dataset of texts or recordings on many workers.

Install with ``pip install 'seamless-mlx[ray]'``.  :class:`Translator` is a callable class for
``ray.data.Dataset.map_batches``: Ray starts a pool of actors, each loads the model once in its
constructor and then translates the batches it is given with the batched Python API
(:func:`seamless_mlx.api.translate` on a list), so every row gets exactly the text a
single-process call would give it::

    import ray
    from seamless_mlx.ray import Translator

    ds = ray.data.read_text("sentences.txt")                       # a column "text"
    ds = ds.map_batches(Translator, fn_constructor_kwargs=dict(model="m4t-v2-mlx", tgt_lang="fra",
                        src_lang="eng"), batch_size=64, num_cpus=4,
                        compute=ray.data.ActorPoolStrategy(size=4))     # 4 workers, 4 cores each
    ds.write_parquet("translated/")

Rows keep every input column and gain ``translation`` (text) and ``error`` (empty, or why the row
could not be translated: a bad row never fails the job).  The source column (``source_column``,
default ``"text"``) holds text, audio file paths the workers can read, encoded audio files
(``ray.data.read_binary_files``' ``"bytes"`` column: storage the workers cannot see as paths,
such as S3), or waveform arrays (at the ``sampling_rate`` option, 16 kHz by default); optional per-row
``src_lang``/``tgt_lang`` columns override the constructor's languages.  Set
``DataContext.get_current().execution_options.preserve_order = True`` to get rows back in input
order (Ray may reorder them otherwise); the ``examples/ray_translate.py`` script does.

All MLX work of a worker happens on one thread the translator owns: MLX streams belong to the
thread that made them, and the loaded model holds arrays made on the loading thread's stream,
while Ray Data may call an actor from other threads than the one that constructed it.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Dict, Optional

import numpy as np

from .api import DEFAULT_MODEL, get_model, model_folder, translate
from .audio import SAMPLE_RATE, load_audio_bytes

__all__ = ["Translator"]


class Translator:
    """A ``map_batches`` callable: loads the model once per Ray worker, translates batches of rows.

    Args:
        model: converted folder, transformers folder or hub id (every worker must reach it).
        tgt_lang: target language for rows without a ``tgt_lang`` column.
        src_lang: source language of text rows without a ``src_lang`` column.
        source_column: the column holding texts or audio paths.
        output_column: the column the translations go to.
        batch_size: sentences/pieces decoded together inside a worker.
        speech_input: the rows are audio paths: load the speech model up front (else on first use).
        **options: other :func:`seamless_mlx.api.translate` options (``num_beams``, ``preset``,
            ``max_new_tokens``, ``quantize``, ...).
    """

    def __init__(self, model: str = DEFAULT_MODEL, tgt_lang: Optional[str] = None, src_lang: Optional[str] = None,
                 source_column: str = "text", output_column: str = "translation", batch_size: int = 16,
                 speech_input: bool = False, **options: Any):
        self.model = str(model_folder(model, options.get("quantize"), quiet=True))
        self.tgt_lang, self.src_lang = tgt_lang, src_lang
        self.source_column, self.output_column = source_column, output_column
        self.batch_size = int(batch_size)
        self.options = options
        # A daemon thread that is never joined, not a ThreadPoolExecutor: a thread that ran MLX's
        # compiled functions and ends while the interpreter shuts down (executors are joined at
        # exit) makes MLX 0.32 abort the process ("terminate called without an active exception")
        # from its thread-local compile cache; a daemon thread idle at exit never ends.
        self._mlx_thread: "queue.Queue" = queue.Queue()
        threading.Thread(target=_serve, args=(self._mlx_thread,), name="seamless-mlx", daemon=True).start()
        task = "s2tt" if speech_input else "t2tt"
        self._on_mlx_thread(get_model, self.model, task, options.get("quantize"))  # load once, here

    def _on_mlx_thread(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on the translator's own thread; its result, or its exception raised."""
        done: Future = Future()
        self._mlx_thread.put((done, fn, args, kwargs))
        return done.result()

    def __call__(self, batch) -> Dict[str, np.ndarray]:
        """``batch`` in Ray's ``"numpy"`` format (column -> array; ``"pandas"`` works too); returns it
        with the outputs."""
        if not isinstance(batch, dict):  # a pandas DataFrame
            batch = {str(c): batch[c].to_numpy() for c in batch.columns}
        if self.source_column not in batch:
            raise ValueError(f"the dataset has no column {self.source_column!r}; columns: {', '.join(batch)}. "
                             "Pass source_column= to name the one with the texts or audio paths.")
        column = batch[self.source_column]
        n = len(column)
        tgt = _per_row(batch, "tgt_lang", self.tgt_lang)
        src = _per_row(batch, "src_lang", self.src_lang)
        if tgt is None:
            raise ValueError("give tgt_lang= to Translator, or a tgt_lang column in the dataset.")
        texts, errors = [""] * n, [""] * n
        # encoded audio files (read_binary_files' "bytes" column) are decoded here, at 16 kHz; text,
        # paths and waveforms (at the ``sampling_rate`` option) go to translate as they are
        plain, encoded = [], []
        for i, x in enumerate(column):
            if isinstance(x, (bytes, bytearray, memoryview)):
                encoded.append(i)
            else:
                plain.append(i)
        for rows, rate in ((plain, None), (encoded, SAMPLE_RATE)):
            sources, kept = [], []
            for i in rows:
                try:
                    name = str(batch["path"][i]) if "path" in batch else "the row's audio bytes"
                    sources.append(load_audio_bytes(column[i], name) if rate else _plain(column[i]))
                    kept.append(i)
                except ValueError as e:
                    errors[i] = str(e)
            if not sources:
                continue
            opts = dict(self.options, sampling_rate=rate) if rate else self.options
            pick = lambda langs: langs if not isinstance(langs, list) else [langs[i] for i in kept]  # noqa: E731
            results = self._on_mlx_thread(
                translate, sources, tgt_lang=pick(tgt), src_lang=pick(src), model=self.model,
                batch_size=self.batch_size, **opts,
            )
            for i, r in zip(kept, results):
                texts[i], errors[i] = r.text, r.error or ""
        out = dict(batch)
        out[self.output_column] = np.array(texts, dtype=object)
        out["error"] = np.array(errors, dtype=object)
        return out


def _serve(jobs: "queue.Queue") -> None:
    while True:
        done, fn, args, kwargs = jobs.get()
        try:
            done.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the caller waiting on it
            done.set_exception(e)


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and x != x)  # None, or pandas' NaN for a missing cell


def _per_row(batch, column: str, default):
    """A per-row language column (a missing cell takes ``default``), or ``default`` without one."""
    if column not in batch:
        return default
    return [default if _missing(x) else str(x) for x in batch[column]]


def _plain(x):
    """A row's source as :func:`seamless_mlx.api.translate` takes it: a waveform (an array, or a
    list of samples) as an array, a string as itself (a sentence or an audio path)."""
    if isinstance(x, np.ndarray) and x.dtype.kind in "fiu":
        return x
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, (int, float, np.number)) for v in x):
        return np.asarray(x, dtype=np.float32)
    if isinstance(x, (str, np.str_)):
        return str(x)
    if _missing(x):
        raise ValueError("the row has no source (an empty cell).")
    raise ValueError(f"the row's source is a {type(x).__name__}: give text, an audio path, audio file bytes or a "
                     "waveform array.")
