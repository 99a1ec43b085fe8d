"""``SeamlessM4TProcessor``: the tokenizer and the feature extractor behind one call.

Routing is that of ``transformers.SeamlessM4TProcessor``: ``text=`` goes to the tokenizer (after
setting ``src_lang``/``tgt_lang`` on it, which persists), ``audios=`` (or ``audio=``) goes to the
feature extractor with ``sampling_rate``; giving both, or neither, is a ``ValueError``.

The feature extractor is built (from ``preprocessor_config.json``) on first use, so text-only use
never reads that file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from .features import SeamlessM4TFeatureExtractor
from .tokenizer import SeamlessM4TTokenizer

__all__ = ["SeamlessM4TProcessor"]

_UNSET = object()


class SeamlessM4TProcessor:
    """Wraps a :class:`SeamlessM4TTokenizer` and a :class:`SeamlessM4TFeatureExtractor`."""

    def __init__(self, feature_extractor: Optional[SeamlessM4TFeatureExtractor] = None, tokenizer: Optional[SeamlessM4TTokenizer] = None, folder=None):
        if tokenizer is None:
            raise ValueError("a tokenizer is required")
        self.tokenizer = tokenizer
        self._feature_extractor = feature_extractor
        self._folder = None if folder is None else Path(folder)

    @classmethod
    def from_pretrained(cls, folder: Union[str, os.PathLike], **tokenizer_kwargs: Any) -> "SeamlessM4TProcessor":
        """Tokenizer from the folder's sentencepiece/json files; the feature extractor from
        ``preprocessor_config.json`` (loaded on first use).

        Decoding follows transformers' *processor* (which loads the fast tokenizer), so
        ``processor.decode`` gives the strings a transformers user sees; pass
        ``decode_style="slow"`` for the slow tokenizer's stripped output.
        """
        tokenizer_kwargs.setdefault("decode_style", "fast")
        tokenizer = SeamlessM4TTokenizer.from_pretrained(folder, **tokenizer_kwargs)
        return cls(feature_extractor=None, tokenizer=tokenizer, folder=folder)

    @property
    def feature_extractor(self):
        if self._feature_extractor is None:
            if self._folder is not None:
                self._feature_extractor = SeamlessM4TFeatureExtractor.from_pretrained(self._folder)
            else:
                self._feature_extractor = SeamlessM4TFeatureExtractor()
        return self._feature_extractor

    @feature_extractor.setter
    def feature_extractor(self, value) -> None:
        self._feature_extractor = value

    def __call__(
        self,
        text=None,
        audios=None,
        audio=None,
        src_lang: Optional[str] = None,
        tgt_lang: Optional[str] = None,
        sampling_rate: Optional[int] = None,
        return_tensors: Optional[str] = _UNSET,
        **kwargs: Any,
    ):
        """Encode ``text`` (tokenizer) or ``audios``/``audio`` (feature extractor), never both.

        Extra keyword arguments go to whichever of the two does the work.  ``return_tensors``
        left out uses that component's default (python lists for text, numpy for audio).
        """
        if audios is not None and audio is not None:
            raise ValueError("give audio through `audios` or `audio`, not both")
        if audios is None:
            audios = audio
        if text is None and audios is None:
            raise ValueError("You have to specify either text or audios. Both cannot be none.")
        if text is not None and audios is not None:
            raise ValueError(
                "Text and audios are mutually exclusive when passed to `SeamlessM4T`. Specify one or another."
            )
        if return_tensors is not _UNSET:
            kwargs["return_tensors"] = return_tensors
        if text is not None:
            if tgt_lang is not None:
                self.tokenizer.tgt_lang = tgt_lang
            if src_lang is not None:
                self.tokenizer.src_lang = src_lang
            return self.tokenizer(text, **kwargs)
        return self.feature_extractor(audios, sampling_rate=sampling_rate, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def incremental_decoder(self, skip_special_tokens: bool = True):
        return self.tokenizer.incremental_decoder(skip_special_tokens=skip_special_tokens)

    def __repr__(self) -> str:
        fe = self._feature_extractor if self._feature_extractor is not None else "<lazy>"
        return f"{type(self).__name__}(tokenizer={self.tokenizer!r}, feature_extractor={fe!r})"
