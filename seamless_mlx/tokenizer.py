"""SeamlessM4T text tokenizer on top of sentencepiece alone (no transformers, no tokenizers).

It reproduces the ids and strings of the *slow* ``transformers.SeamlessM4TTokenizer`` (4.56.2):

* fairseq id layout: ``<pad>=0, <unk>=1, <s>=2, </s>=3``; a sentencepiece piece with spm id ``i``
  gets ``i + 1``; spm's unknown id maps to ``<unk>`` (1).  Added tokens (the ``__xxx__`` language
  codes) keep the ids written in the checkpoint, after the sentencepiece vocabulary.
* Encoding follows the "non-legacy" T5 scheme transformers uses for this model: sentencepiece's own
  dummy prefix is switched off, every "▁" in the input becomes a space, one "▁" is put in front of
  the whole text (``add_prefix_space``), the text is cut on added tokens (leftmost-longest match),
  and a segment that starts with a space is encoded behind the unknown-token string so that
  sentencepiece does not swallow its leading space.  Whitespace handling is otherwise the spm
  normaliser's (leading/trailing spaces dropped, runs collapsed, tabs/newlines become spaces).
* Special tokens: source texts get ``[src_lang] ... [</s>]``; target texts (``text_target=``) get
  ``[</s>, tgt_lang] ... [</s>]``.
* ``__call__`` keeps transformers' defaults for this class: ``padding=True`` and
  ``pad_to_multiple_of=2``, so even a single sequence is padded to an even length.  Pass
  ``padding=False`` / ``pad_to_multiple_of=None`` to switch that off.
* ``decode`` joins pieces, turns "▁" into spaces and strips the result; language codes that are not
  skipped come out as separate words joined by single spaces, exactly like transformers' slow
  tokenizer.  Note that transformers' ``SeamlessM4TProcessor``/``AutoProcessor`` load the *fast*
  tokenizer, whose ids are the same but whose strings differ in whitespace (no final strip, no
  spaces around special tokens); ``decode_style="fast"`` (constructor / ``from_pretrained``) or
  ``decode(..., style="fast")`` reproduces those strings instead.

Empty input ``""`` (or only whitespace) encodes to ``[src_lang, </s>]`` (padding leaves it at 2).

Known, deliberate differences from transformers: an unknown ``src_lang``/``tgt_lang`` raises
``ValueError`` (transformers warns and uses ``<unk>``); ``return_tensors`` accepts only ``"np"`` and
``"mlx"``; pairs (``text_pair``), pre-tokenised input and overflow outputs are not supported.  Like
transformers, ``src_lang``/``tgt_lang`` passed to ``__call__`` are remembered for later calls.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from .spm_proto import without_dummy_prefix

SPIECE_UNDERLINE = "\u2581"
VOCAB_FILE = "sentencepiece.bpe.model"
_HUGE = int(1e20)  # transformers' LARGE_INTEGER: model_max_length above it means "no limit"

__all__ = ["SeamlessM4TTokenizer", "IncrementalDecoder", "BatchEncoding", "AddedToken"]


# ------------------------------------------------------------------------------------------------
# small containers
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddedToken:
    content: str
    special: bool = True
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False
    normalized: bool = False


class BatchEncoding(dict):
    """Model inputs: a ``dict`` with attribute access, returned by the tokenizer (``input_ids``,
    ``attention_mask``, maybe ``labels``) and by the feature extractor (``input_features``,
    ``attention_mask``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, return_tensors: Optional[str]) -> "BatchEncoding":
        """Every value as numpy (``"np"``) or MLX (``"mlx"``) arrays, in a new object."""
        return BatchEncoding({k: as_tensor(v, return_tensors) for k, v in self.items()})


def _to_python(ids: Any) -> Any:
    """Lists, tuples, numpy arrays, numpy/mlx scalars and ``mx.array`` -> python ints / lists."""
    if hasattr(ids, "tolist") and not isinstance(ids, (list, tuple)):
        return ids.tolist()
    if isinstance(ids, (list, tuple)):
        return [_to_python(x) for x in ids]
    return ids


def as_tensor(value: Any, return_tensors: Optional[str]):
    """Id lists or numpy arrays -> numpy (``"np"``; id lists as int64) or ``mx.array`` (``"mlx"``;
    int64 ids as int32); ``None`` leaves ``value`` as it is."""
    if return_tensors is None:
        return value
    if return_tensors in ("np", "numpy"):
        if isinstance(value, np.ndarray):
            return value
        try:
            return np.asarray(value, dtype=np.int64)
        except ValueError as exc:
            raise ValueError(
                "cannot make a tensor from sequences of different lengths; use padding=True"
            ) from exc
    if return_tensors in ("mlx", "mx"):
        import mlx.core as mx

        arr = as_tensor(value, "np")
        return mx.array(arr.astype(np.int32) if arr.dtype == np.int64 else arr)
    raise ValueError(f"return_tensors={return_tensors!r} is not supported: use None, 'np' (numpy) or 'mlx'")


def _load_json(path: Path) -> Any:
    if path.is_file():
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    return None


def _token_text(value: Any) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return value.get("content")
    return str(value)


# ------------------------------------------------------------------------------------------------
# the tokenizer
# ------------------------------------------------------------------------------------------------


class SeamlessM4TTokenizer:
    """sentencepiece-only port of ``transformers.SeamlessM4TTokenizer`` (slow).

    Build it with :meth:`from_pretrained` from a Hugging Face folder, or directly from a
    ``sentencepiece.bpe.model`` path plus the added tokens (``{id: AddedToken or str}``).
    """

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file: Union[str, os.PathLike],
        added_tokens: Optional[Dict[int, Union[str, AddedToken]]] = None,
        additional_special_tokens: Optional[Sequence[str]] = None,
        bos_token: str = "<s>",
        eos_token: str = "</s>",
        sep_token: str = "</s>",
        cls_token: str = "<s>",
        unk_token: str = "<unk>",
        pad_token: str = "<pad>",
        src_lang: str = "eng",
        tgt_lang: str = "fra",
        add_prefix_space: bool = True,
        clean_up_tokenization_spaces: bool = False,
        padding_side: str = "right",
        truncation_side: str = "right",
        model_max_length: Optional[int] = None,
        split_special_tokens: bool = False,
        decode_style: str = "slow",
    ):
        import sentencepiece as spm

        if decode_style not in ("slow", "fast"):
            raise ValueError(f"decode_style={decode_style!r}: use 'slow' or 'fast'")
        self.decode_style = decode_style

        self.vocab_file = str(vocab_file)
        with open(self.vocab_file, "rb") as fh:
            proto = fh.read()
        self.sp_model = spm.SentencePieceProcessor()
        self.sp_model.LoadFromSerializedProto(without_dummy_prefix(proto))
        self.sp_model_size = self.sp_model.get_piece_size()
        self.fairseq_offset = 1
        self._size: Optional[int] = None

        self.bos_token, self.eos_token, self.sep_token = bos_token, eos_token, sep_token
        self.cls_token, self.unk_token, self.pad_token = cls_token, unk_token, pad_token
        self.add_prefix_space = bool(add_prefix_space)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.model_max_length = _HUGE * 10 if model_max_length is None else int(model_max_length)
        self.split_special_tokens = bool(split_special_tokens)

        # fairseq puts the four control tokens first, whatever sentencepiece does.
        decoder: Dict[int, AddedToken] = {
            0: AddedToken(pad_token),
            1: AddedToken(unk_token),
            2: AddedToken(bos_token),
            3: AddedToken(eos_token),
        }
        for idx, tok in (added_tokens or {}).items():
            decoder[int(idx)] = tok if isinstance(tok, AddedToken) else AddedToken(str(tok))
        if additional_special_tokens is None:
            named = {bos_token, eos_token, sep_token, cls_token, unk_token, pad_token}
            additional_special_tokens = [
                t.content for _, t in sorted(decoder.items()) if t.special and t.content not in named
            ]
        self.additional_special_tokens = list(additional_special_tokens)
        # Tokens named as special but absent from the table get an id the way transformers
        # would add them: their sentencepiece id when they are a piece, else the next free id.
        known = {t.content for t in decoder.values()}
        for content in self.additional_special_tokens:
            if content in known:
                continue
            spm_id = self.sp_model.piece_to_id(content)
            if spm_id:
                idx = spm_id + self.fairseq_offset
            else:
                idx = max(max(decoder) + 1, self.sp_model_size + self.fairseq_offset)
            decoder[idx] = AddedToken(content)
            known.add(content)

        self._added_decoder: Dict[int, AddedToken] = dict(sorted(decoder.items()))
        self._added_encoder: Dict[str, int] = {t.content: i for i, t in self._added_decoder.items()}
        contents = sorted(self._added_encoder, key=len, reverse=True)
        self._added_pattern = re.compile("|".join(re.escape(c) for c in contents)) if contents else None

        seen: Dict[str, None] = {}
        for t in [bos_token, eos_token, unk_token, sep_token, pad_token, cls_token]:
            seen.setdefault(t, None)
        for t in self.additional_special_tokens:
            seen.setdefault(t, None)
        self.all_special_tokens: List[str] = list(seen)
        self._special_token_set = set(self.all_special_tokens)
        self.all_special_ids: List[int] = [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]
        self._special_id_set = set(self.all_special_ids)
        # Tokens decoded as separate "words" (transformers' "legacy added tokens").
        self._standalone_tokens = (set(self._added_encoder) - self._special_token_set) | {
            t for t in self.additional_special_tokens if self.convert_tokens_to_ids(t) >= self.vocab_size
        }
        self.unk_token_length = len(self.sp_model.encode(self.unk_token, out_type=str))

        self._languages: Dict[str, int] = {}
        for idx, tok in self._added_decoder.items():
            m = re.fullmatch(r"__(.+)__", tok.content)
            if m:
                self._languages[m.group(1)] = idx

        self._src_lang = self._tgt_lang = None
        self.src_lang = src_lang
        self.tgt_lang = tgt_lang

    # -------------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(cls, folder: Union[str, os.PathLike], **overrides: Any) -> "SeamlessM4TTokenizer":
        """Load from a Hugging Face folder (``sentencepiece.bpe.model`` + json files).

        The ids of added tokens come from ``added_tokens_decoder`` in ``tokenizer_config.json``
        and/or ``added_tokens.json``; ``tokenizer.json`` is not needed.  ``overrides`` replace
        constructor arguments (e.g. ``src_lang="fra"``).
        """
        folder = Path(folder)
        vocab = folder / VOCAB_FILE
        if not vocab.is_file():
            models = sorted(folder.glob("*.model"))
            if not models:
                raise FileNotFoundError(f"no sentencepiece model ({VOCAB_FILE}) in {folder}")
            vocab = models[0]
        config = _load_json(folder / "tokenizer_config.json") or {}
        special_map = _load_json(folder / "special_tokens_map.json") or {}
        added_json = _load_json(folder / "added_tokens.json") or {}

        def pick(name, default):
            value = _token_text(config.get(name))
            if value is None:
                value = _token_text(special_map.get(name))
            return default if value is None else value

        added: Dict[int, AddedToken] = {}
        for idx, spec in (config.get("added_tokens_decoder") or {}).items():
            if isinstance(spec, str):
                spec = {"content": spec}
            added[int(idx)] = AddedToken(
                content=spec["content"],
                special=bool(spec.get("special", True)),
                lstrip=bool(spec.get("lstrip", False)),
                rstrip=bool(spec.get("rstrip", False)),
                single_word=bool(spec.get("single_word", False)),
                normalized=bool(spec.get("normalized", False)),
            )
        have = {t.content for t in added.values()}
        for content, idx in added_json.items():
            if content not in have and int(idx) not in added:
                added[int(idx)] = AddedToken(content)

        extra = config.get("additional_special_tokens")
        if extra is None:
            extra = special_map.get("additional_special_tokens")
        if extra is not None:
            extra = [_token_text(t) for t in extra]

        max_len = config.get("model_max_length")
        kwargs: Dict[str, Any] = dict(
            added_tokens=added,
            additional_special_tokens=extra,
            bos_token=pick("bos_token", "<s>"),
            eos_token=pick("eos_token", "</s>"),
            sep_token=pick("sep_token", "</s>"),
            cls_token=pick("cls_token", "<s>"),
            unk_token=pick("unk_token", "<unk>"),
            pad_token=pick("pad_token", "<pad>"),
            src_lang=config.get("src_lang") or "eng",
            tgt_lang=config.get("tgt_lang") or "fra",
            add_prefix_space=config.get("add_prefix_space", True),
            clean_up_tokenization_spaces=config.get("clean_up_tokenization_spaces", False),
            padding_side=config.get("padding_side", "right"),
            truncation_side=config.get("truncation_side", "right"),
            model_max_length=int(max_len) if isinstance(max_len, (int, float)) else None,
            split_special_tokens=config.get("split_special_tokens", False),
        )
        kwargs.update(overrides)
        return cls(vocab, **kwargs)

    # -------------------------------------------------------------------------------- vocabulary

    @property
    def vocab_size(self) -> int:
        """Size of the sentencepiece vocabulary (transformers' ``vocab_size``, added tokens excluded)."""
        return self.sp_model_size

    def get_vocab(self) -> Dict[str, int]:
        vocab = {
            self.convert_ids_to_tokens(i): i
            for i in range(self.fairseq_offset, self.sp_model_size + self.fairseq_offset)
        }
        vocab.update(self._added_encoder)
        return vocab

    def __len__(self) -> int:
        """Number of distinct tokens, added tokens included (as ``len()`` of transformers' tokenizer)."""
        if self._size is None:
            self._size = len(self.get_vocab())
        return self._size

    @property
    def added_tokens_encoder(self) -> Dict[str, int]:
        return dict(self._added_encoder)

    @property
    def added_tokens_decoder(self) -> Dict[int, AddedToken]:
        return dict(self._added_decoder)

    @property
    def pad_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.pad_token)

    @property
    def unk_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.unk_token)

    @property
    def bos_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.bos_token)

    @property
    def eos_token_id(self) -> int:
        return self.convert_tokens_to_ids(self.eos_token)

    def _piece_to_id(self, token: str) -> int:
        idx = self._added_encoder.get(token)
        if idx is not None:
            return idx
        spm_id = self.sp_model.piece_to_id(token)
        return spm_id + self.fairseq_offset if spm_id else self._added_encoder[self.unk_token]

    def convert_tokens_to_ids(self, tokens: Union[str, Iterable[str], None]):
        """One token -> id, a list of tokens -> list of ids (unknown -> ``<unk>`` id)."""
        if tokens is None:
            return None
        if isinstance(tokens, str):
            return self._piece_to_id(tokens)
        return [self._piece_to_id(t) for t in tokens]

    def _id_to_piece(self, index: int) -> str:
        tok = self._added_decoder.get(index)
        if tok is not None:
            return tok.content
        spm_id = index - self.fairseq_offset
        if not 0 <= spm_id < self.sp_model_size:
            raise IndexError(f"token id {index} is out of range for this tokenizer (size {len(self)})")
        return self.sp_model.id_to_piece(spm_id)

    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False):
        """One id -> token string; a sequence (list, numpy, mx) -> list of strings."""
        ids = _to_python(ids)
        if isinstance(ids, int):
            return self._id_to_piece(ids)
        out = []
        for index in ids:
            index = int(index)
            if skip_special_tokens and index in self._special_id_set:
                continue
            out.append(self._id_to_piece(index))
        return out

    # -------------------------------------------------------------------------------- languages

    @property
    def supported_languages(self) -> List[str]:
        """Language codes (``"eng"``, ``"fra"``, ...) that have a ``__xxx__`` token, in id order."""
        return list(self._languages)

    def _lang_token(self, lang: str) -> str:
        if not isinstance(lang, str):
            raise TypeError(f"language must be a string, got {type(lang).__name__}")
        token = lang if "__" in lang else f"__{lang}__"
        if token not in self._added_encoder or not re.fullmatch(r"__(.+)__", token):
            raise ValueError(
                f"unsupported language {lang!r}; supported codes: {', '.join(self.supported_languages)}"
            )
        return token

    def lang_code_to_id(self, lang: str) -> int:
        """Id of a language token; accepts ``"fra"`` or ``"__fra__"``. ValueError if unknown."""
        return self._added_encoder[self._lang_token(lang)]

    @property
    def src_lang(self) -> str:
        """Current source language token (``"__eng__"``); setting accepts ``"fra"`` or ``"__fra__"``."""
        return self._src_lang

    @src_lang.setter
    def src_lang(self, lang: str) -> None:
        self._src_lang = self._lang_token(lang)

    @property
    def tgt_lang(self) -> str:
        return self._tgt_lang

    @tgt_lang.setter
    def tgt_lang(self, lang: str) -> None:
        self._tgt_lang = self._lang_token(lang)

    def special_tokens(self, target: bool = False):
        """``(prefix_ids, suffix_ids)`` added around a source (or, ``target=True``, target) text."""
        eos = self.eos_token_id
        if target:
            return [eos, self._added_encoder[self._tgt_lang]], [eos]
        return [self._added_encoder[self._src_lang]], [eos]

    # -------------------------------------------------------------------------------- encoding

    def _split_added(self, text: str) -> List[str]:
        """Cut ``text`` around added tokens (leftmost, longest first); empty pieces dropped."""
        if self._added_pattern is None:
            return [text] if text else []
        parts: List[str] = []
        pos = 0
        for m in self._added_pattern.finditer(text):
            if m.start() > pos:
                parts.append(text[pos : m.start()])
            parts.append(m.group(0))
            pos = m.end()
        if pos < len(text):
            parts.append(text[pos:])
        return parts

    def _spm_pieces(self, text: str) -> List[str]:
        if not text.startswith((SPIECE_UNDERLINE, " ")):
            return self.sp_model.encode(text, out_type=str)
        # With the dummy prefix off, sentencepiece would drop the leading space: encode behind
        # the unknown-token string and cut its pieces off again.
        pieces = self.sp_model.encode(self.unk_token + text, out_type=str)
        n = self.unk_token_length
        return pieces[n:] if len(pieces) >= n else pieces

    def tokenize(self, text: str, split_special_tokens: Optional[bool] = None) -> List[str]:
        """Text -> token strings (no language/eos tokens)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        if len(text) == 0:
            return []
        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens
        text = text.replace(SPIECE_UNDERLINE, " ")
        if self.add_prefix_space:
            text = SPIECE_UNDERLINE + text

        parts = [text] if split_special_tokens else self._split_added(text)
        added = {} if split_special_tokens else self._added_encoder
        for i, part in enumerate(parts):
            if part not in added:
                continue
            tok = self._added_decoder[added[part]]
            left = parts[i - 1] if i > 0 else None
            right = parts[i + 1] if i < len(parts) - 1 else None
            if tok.rstrip and right:
                parts[i + 1] = right.lstrip()
            if tok.lstrip and left:
                parts[i - 1] = left.rstrip()
            if tok.single_word and left and left[-1] != " ":
                parts[i - 1] += part
                parts[i] = ""
            elif tok.single_word and right and right[0] != " ":
                parts[i + 1] = part + parts[i + 1]
                parts[i] = ""

        tokens: List[str] = []
        for part in parts:
            if not part:
                continue
            if part in added:
                tokens.append(part)
            else:
                tokens.extend(self._spm_pieces(part))
        if len(tokens) > 1 and tokens[0] == SPIECE_UNDERLINE and tokens[1] in self._special_token_set:
            tokens = tokens[1:]
        return tokens

    def encode(
        self,
        text: str,
        add_special_tokens: bool = True,
        src_lang: Optional[str] = None,
        target: bool = False,
    ) -> List[int]:
        """One text -> list of ids, no padding or truncation (``[src_lang] ... </s>``)."""
        if src_lang is not None:
            self.src_lang = src_lang
        ids = self.convert_tokens_to_ids(self.tokenize(text))
        if not add_special_tokens:
            return ids
        prefix, suffix = self.special_tokens(target)
        return prefix + ids + suffix

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of):
        """Resolve padding/truncation the way transformers does (same quirks)."""
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"
        if padding is True:
            if max_length is not None and truncation in (None, False, "do_not_truncate"):
                warnings.warn(
                    "`max_length` is ignored when `padding=True` and there is no truncation; "
                    "use padding='max_length' or truncation=True",
                    stacklevel=3,
                )
            pad = "longest"
        elif padding in (False, None, "do_not_pad"):
            pad = "do_not_pad"
        elif padding in ("longest", "max_length"):
            pad = padding
        else:
            raise ValueError(f"padding={padding!r}: use True/False, 'longest', 'max_length' or 'do_not_pad'")

        if truncation is True:
            trunc = "longest_first"
        elif truncation in (False, None, "do_not_truncate"):
            trunc = "do_not_truncate"
        elif truncation in ("longest_first", "only_first", "only_second"):
            trunc = truncation
        else:
            raise ValueError(f"truncation={truncation!r}: use True/False, 'longest_first' or 'only_first'")

        if max_length is None:
            if pad == "max_length":
                if self.model_max_length > _HUGE:
                    warnings.warn("padding='max_length' without max_length: not padding", stacklevel=3)
                    pad = "do_not_pad"
                else:
                    max_length = self.model_max_length
            if trunc != "do_not_truncate":
                if self.model_max_length > _HUGE:
                    warnings.warn("truncation without max_length: not truncating", stacklevel=3)
                    trunc = "do_not_truncate"
                else:
                    max_length = self.model_max_length
        if (
            trunc != "do_not_truncate"
            and pad != "do_not_pad"
            and pad_to_multiple_of is not None
            and max_length is not None
            and max_length % pad_to_multiple_of != 0
        ):
            raise ValueError(
                f"Truncation and padding are both activated but truncation length ({max_length}) "
                f"is not a multiple of pad_to_multiple_of ({pad_to_multiple_of})."
            )
        return pad, trunc, max_length

    def _truncate(self, ids: List[int], n_remove: int, trunc: str) -> List[int]:
        if n_remove <= 0 or trunc == "only_second":
            return ids
        if len(ids) <= n_remove:
            warnings.warn(
                f"cannot truncate: {n_remove} tokens would have to go but the text has only {len(ids)}",
                stacklevel=4,
            )
            return ids
        if self.truncation_side == "left":
            return ids[n_remove:]
        if self.truncation_side == "right":
            return ids[:-n_remove]
        raise ValueError(f"invalid truncation_side {self.truncation_side!r}")

    def _pad_one(self, ids, mask, target_len, side):
        diff = target_len - len(ids)
        if diff <= 0:
            return ids, mask
        pad = [self.pad_token_id] * diff
        if side == "right":
            return ids + pad, (None if mask is None else mask + [0] * diff)
        if side == "left":
            return pad + ids, (None if mask is None else [0] * diff + mask)
        raise ValueError(f"invalid padding_side {side!r}")

    def _encode_batch(
        self,
        texts: List[str],
        target: bool,
        add_special_tokens: bool,
        pad: str,
        trunc: str,
        max_length: Optional[int],
        pad_to_multiple_of: Optional[int],
        padding_side: Optional[str],
        return_attention_mask: bool,
        split_special_tokens: Optional[bool],
    ):
        prefix, suffix = self.special_tokens(target) if add_special_tokens else ([], [])
        n_special = len(prefix) + len(suffix)
        seqs = []
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"text must be a string or a list of strings, got {type(text).__name__}")
            ids = self.convert_tokens_to_ids(self.tokenize(text, split_special_tokens))
            if trunc != "do_not_truncate" and max_length and len(ids) + n_special > max_length:
                ids = self._truncate(ids, len(ids) + n_special - max_length, trunc)
            seqs.append(prefix + ids + suffix)

        if pad == "longest":
            target_len = max(len(s) for s in seqs)
        else:
            target_len = max_length
        if target_len is not None and pad_to_multiple_of and target_len % pad_to_multiple_of:
            target_len = (target_len // pad_to_multiple_of + 1) * pad_to_multiple_of
        side = padding_side or self.padding_side
        out_ids, out_mask = [], []
        for ids in seqs:
            mask = [1] * len(ids) if return_attention_mask else None
            if pad != "do_not_pad":
                ids, mask = self._pad_one(ids, mask, target_len, side)
            out_ids.append(ids)
            out_mask.append(mask)
        return out_ids, out_mask

    def __call__(
        self,
        text: Union[str, Sequence[str], None] = None,
        text_target: Union[str, Sequence[str], None] = None,
        src_lang: Optional[str] = None,
        tgt_lang: Optional[str] = None,
        padding: Union[bool, str] = True,
        max_length: Optional[int] = None,
        truncation: Union[bool, str, None] = None,
        pad_to_multiple_of: Optional[int] = 2,
        return_tensors: Optional[str] = None,
        return_attention_mask: Optional[bool] = None,
        add_special_tokens: bool = True,
        padding_side: Optional[str] = None,
        split_special_tokens: Optional[bool] = None,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Encode one text or a batch, like transformers' ``SeamlessM4TTokenizer.__call__``.

        Returns ``BatchEncoding(input_ids=..., attention_mask=...)``: python lists (flat for one
        string) or, with ``return_tensors="np"``/``"mlx"``, 2-D int64 numpy / int32 mx arrays.
        With ``text_target`` alone the target encoding is returned; with both, the target ids
        come back as ``labels``.  Defaults follow transformers: ``padding=True`` (longest) and
        ``pad_to_multiple_of=2``; ``max_length`` alone (with ``padding=False``) truncates.
        """
        for key in ("text_pair", "text_pair_target", "is_split_into_words", "return_overflowing_tokens"):
            if kwargs.pop(key, None):
                raise NotImplementedError(f"{key} is not supported by this tokenizer")
        if kwargs.pop("return_token_type_ids", None):
            raise NotImplementedError("SeamlessM4T has no token_type_ids")
        kwargs.pop("verbose", None)
        kwargs.pop("stride", None)
        if kwargs:
            warnings.warn(f"ignored keyword arguments: {sorted(kwargs)}", stacklevel=2)
        if text is None and text_target is None:
            raise ValueError("You need to specify either `text` or `text_target`.")
        if src_lang is not None:
            self.src_lang = src_lang
        if tgt_lang is not None:
            self.tgt_lang = tgt_lang
        if return_attention_mask is None:
            return_attention_mask = True
        pad, trunc, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of)

        def run(inputs, target):
            batched = isinstance(inputs, (list, tuple))
            texts = list(inputs) if batched else [inputs]
            if not texts:
                raise ValueError("empty batch: give at least one text")
            ids, mask = self._encode_batch(
                texts, target, add_special_tokens, pad, trunc, max_length, pad_to_multiple_of,
                padding_side, return_attention_mask, split_special_tokens,
            )
            enc = BatchEncoding(input_ids=ids if batched else ids[0])
            if return_attention_mask:
                enc["attention_mask"] = mask if batched else mask[0]
            if return_tensors is not None:
                for key in list(enc):
                    value = enc[key] if batched else [enc[key]]
                    enc[key] = as_tensor(value, return_tensors)
            return enc

        if text is not None:
            encoding = run(text, target=False)
            if text_target is not None:
                encoding["labels"] = run(text_target, target=True)["input_ids"]
            return encoding
        return run(text_target, target=True)

    # -------------------------------------------------------------------------------- decoding

    def convert_tokens_to_string(self, tokens: List[str]) -> str:
        tokens = list(tokens)
        if tokens and tokens[0].startswith(SPIECE_UNDERLINE) and self.add_prefix_space:
            tokens[0] = tokens[0][1:]
        return "".join(tokens).replace(SPIECE_UNDERLINE, " ").strip()

    @staticmethod
    def clean_up_tokenization(text: str) -> str:
        for before, after in (
            (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
            (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
        ):
            text = text.replace(before, after)
        return text

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: Optional[bool] = None,
        spaces_between_special_tokens: bool = True,
        style: Optional[str] = None,
    ) -> str:
        """Ids (int, list, numpy or mx array) -> text.

        ``style="slow"`` (the default unless the tokenizer was built with ``decode_style="fast"``)
        gives exactly transformers' slow ``SeamlessM4TTokenizer.decode``: the text is stripped and
        unskipped language codes stand apart as words.  ``style="fast"`` gives the strings of
        ``SeamlessM4TTokenizerFast`` (which transformers' ``SeamlessM4TProcessor``/``AutoProcessor``
        load): pieces are simply concatenated, only the first piece loses its "▁", nothing is
        stripped, and ``spaces_between_special_tokens`` has no effect.
        """
        style = style or self.decode_style
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        tokens = self.convert_ids_to_tokens(token_ids, skip_special_tokens=skip_special_tokens)
        if isinstance(tokens, str):
            tokens = [tokens]
        if style == "fast":
            text = "".join(tokens).replace(SPIECE_UNDERLINE, " ")
            if tokens and tokens[0].startswith(SPIECE_UNDERLINE):
                text = text[1:]
            return self.clean_up_tokenization(text) if clean_up_tokenization_spaces else text
        if style != "slow":
            raise ValueError(f"style={style!r}: use 'slow' or 'fast'")
        chunks: List[str] = []
        current: List[str] = []
        for tok in tokens:
            if skip_special_tokens and tok in self._special_token_set:
                continue
            if tok in self._standalone_tokens:
                if current:
                    piece = self.convert_tokens_to_string(current)
                    if piece:
                        chunks.append(piece)
                    current = []
                chunks.append(tok)
            else:
                current.append(tok)
        if current:
            chunks.append(self.convert_tokens_to_string(current))
        text = (" " if spaces_between_special_tokens else "").join(chunks)
        return self.clean_up_tokenization(text) if clean_up_tokenization_spaces else text

    def batch_decode(self, sequences: Any, **kwargs: Any) -> List[str]:
        """Decode each row of a list of lists / 2-D numpy or mx array."""
        return [self.decode(seq, **kwargs) for seq in _to_python(sequences)]

    def incremental_decoder(self, skip_special_tokens: bool = True) -> "IncrementalDecoder":
        return IncrementalDecoder(self, skip_special_tokens=skip_special_tokens)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vocab_file={self.vocab_file!r}, size={len(self)}, "
            f"languages={len(self._languages)}, src_lang={self.src_lang!r}, tgt_lang={self.tgt_lang!r})"
        )


# ------------------------------------------------------------------------------------------------
# streaming
# ------------------------------------------------------------------------------------------------


class IncrementalDecoder:
    """Turn a stream of generated ids into text pieces.

    ``add_token(id)`` after each step, then read ``last_segment`` (the text that became final
    since the previous read; reading clears it).  After the last token call ``finalize()`` and
    read ``last_segment`` once more.  The concatenation of all segments equals
    ``tokenizer.decode(all_ids, skip_special_tokens=True)`` (or ``False`` if so constructed).

    Text is released as soon as it cannot change any more: with the (default) slow decode style,
    trailing spaces wait for the next word (a "▁" piece only becomes a space once something
    follows it).  When the tokenizer cleans up
    tokenization spaces, the last two words are held back, since the clean-up rules (" ." -> ".",
    " ' " -> "'", ...) can still rewrite them.
    """

    def __init__(self, tokenizer: SeamlessM4TTokenizer, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.reset()

    def reset(self) -> None:
        self._ids: List[int] = []
        self._emitted = ""
        self._unread = ""

    @property
    def tokens(self) -> List[int]:
        return list(self._ids)

    @property
    def text(self) -> str:
        """All text released so far (read or not)."""
        return self._emitted

    def _full(self) -> str:
        return self.tokenizer.decode(self._ids, skip_special_tokens=self.skip_special_tokens)

    def _release(self, upto: str) -> None:
        if len(upto) > len(self._emitted) and upto.startswith(self._emitted):
            self._unread += upto[len(self._emitted) :]
            self._emitted = upto

    def add_token(self, token_id: Any) -> None:
        self._ids.append(int(_to_python(token_id)))
        full = self._full()
        if self.tokenizer.clean_up_tokenization_spaces:
            cut = full.rfind(" ")
            cut = full.rfind(" ", 0, cut) if cut > 0 else -1
            full = full[:cut] if cut > 0 else ""
        self._release(full)

    def add_tokens(self, token_ids: Iterable[Any]) -> None:
        for t in _to_python(token_ids):
            self.add_token(t)

    def finalize(self) -> None:
        """Release whatever is still held back."""
        full = self._full()
        if not full.startswith(self._emitted):  # cannot happen for spm pieces; keep the invariant visible
            raise RuntimeError("incremental decoding diverged from the full decode")
        self._release(full)

    @property
    def last_segment(self) -> str:
        seg, self._unread = self._unread, ""
        return seg
