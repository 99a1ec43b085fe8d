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
default ``"text"``) holds text, or audio file paths the workers can read; optional per-row
``src_lang``/``tgt_lang`` columns override the constructor's languages.  Set
``DataContext.get_current().execution_options.preserve_order = True`` to get rows back in input
order (Ray may reorder them otherwise); the ``examples/ray_translate.py`` script does.

All MLX work of a worker happens on one thread the translator owns: MLX streams belong to the
thread that made them, and the loaded model holds arrays made on the loading thread's stream,
while Ray Data may call an actor from other threads than the one that constructed it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Optional

import numpy as np

from .api import DEFAULT_MODEL, get_model, model_folder, translate

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
        self._mlx_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seamless-mlx")
        task = "s2tt" if speech_input else "t2tt"
        self._mlx_thread.submit(get_model, self.model, task, options.get("quantize")).result()  # load once, here

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """``batch`` in Ray's ``"numpy"`` format (column -> array); returns it with the outputs."""
        if self.source_column not in batch:
            raise ValueError(f"the dataset has no column {self.source_column!r}; columns: {', '.join(batch)}. "
                             "Pass source_column= to name the one with the texts or audio paths.")
        sources = [str(s) for s in batch[self.source_column]]
        n = len(sources)
        tgt = [str(x) for x in batch["tgt_lang"]] if "tgt_lang" in batch else self.tgt_lang
        src = [str(x) for x in batch["src_lang"]] if "src_lang" in batch else self.src_lang
        if tgt is None:
            raise ValueError("give tgt_lang= to Translator, or a tgt_lang column in the dataset.")
        results = self._mlx_thread.submit(
            translate, sources, tgt_lang=tgt, src_lang=src, model=self.model, batch_size=self.batch_size, **self.options
        ).result() if n else []
        out = dict(batch)
        out[self.output_column] = np.array([r.text for r in results], dtype=object)
        out["error"] = np.array([r.error or "" for r in results], dtype=object)
        return out
