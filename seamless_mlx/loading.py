"""Reading checkpoints: Hugging Face folders (converted on the fly) and converted MLX folders.

A converted folder is marked by ``"seamless_mlx": {"format": 1}`` in its ``config.json``; its
weights are already in MLX layout.  Anything else is treated as a transformers checkpoint and
sanitized in memory (the same code path the converter uses).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Dict, Iterable, Optional

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from . import cpu
from .config import GenerationConfig, ModelConfig, read_json_object
from .quantize import apply_quantization
from .speech_encoder import sanitize as sanitize_speech_encoder
from .t2u import sanitize as sanitize_t2u
from .vocoder import sanitize as sanitize_vocoder

FORMAT_KEY = "seamless_mlx"
FORMAT_VERSION = 1

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}

# Files a model folder needs besides weights (tokenizer, feature extractor, generation config).
SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.json",
    "sentencepiece.bpe.model",
    "README.md",
)

HUB_PATTERNS = ["*.json", "*.safetensors", "sentencepiece.bpe.model", "*.model"]


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete or corrupt."""


def is_hub_id(model_id) -> bool:
    """Whether ``model_id`` names a hub repo (``org/name``) rather than a local folder."""
    model_id = str(model_id)
    return (
        model_id.count("/") == 1
        and not model_id.startswith((".", "/", "~"))
        and not Path(os.path.expanduser(model_id)).exists()
    )


def resolve(path_or_repo) -> Path:
    """A local folder as is; otherwise a hub repo id downloaded with ``snapshot_download``."""
    p = Path(os.path.expanduser(str(path_or_repo)))
    if p.exists():
        if not p.is_dir():
            raise CheckpointError(f"{p} is a file; pass the model folder that contains config.json.")
        return p
    if not is_hub_id(path_or_repo):
        raise CheckpointError(f"No model folder at {path_or_repo!r}.")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(path_or_repo), allow_patterns=HUB_PATTERNS))
    except Exception as e:  # network, auth, unknown repo
        raise CheckpointError(
            f"Could not download {path_or_repo!r} from the Hugging Face hub: {_download_problem(e)}. The first run of "
            f"facebook/seamless-m4t-v2-large needs about {FIRST_RUN_DISK_GB} GB of free disk (a 9.2 GB download "
            "plus a 9.3 GB converted copy); or pass a local folder (a transformers checkpoint or a converted "
            "seamless-mlx folder) with --model."
        ) from None


# A first run keeps both the hub download and the converted copy: v2-large's 2.3 B float32
# parameters are ~9.2 GB of safetensors on the hub, its converted fp32 folder 9.24 GB (README,
# "Converting and quantizing").
FIRST_RUN_DISK_GB = 18.5


def _download_problem(e: BaseException) -> str:
    """What went wrong with a hub download, in words (huggingface_hub's own text is long)."""
    names = {c.__name__ for c in type(e).__mro__}
    if "GatedRepoError" in names:
        return "the repository is gated: accept its terms on huggingface.co and log in with `hf auth login`"
    if "RepositoryNotFoundError" in names:
        return "no such repository (or it is private: log in with `hf auth login`)"
    if "RevisionNotFoundError" in names:
        return "no such revision of the repository"
    if getattr(e, "errno", None) == errno.ENOSPC:
        return "the disk is full"
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "Timeout", "ConnectTimeout"}:
        return "no network (or HF_HUB_OFFLINE=1) and no copy in the local hub cache"
    return type(e).__name__


def is_converted(folder: Path) -> bool:
    return FORMAT_KEY in read_json_object(folder / "config.json")


def weight_files(folder: Path, prefixes: Optional[Iterable[str]] = None):
    """Safetensors files of a folder (single or sharded), skipping shards with no wanted weight."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        with open(index, encoding="utf-8") as f:
            weight_map: Dict[str, str] = json.load(f)["weight_map"]
        files = sorted(
            {
                fn
                for key, fn in weight_map.items()
                if prefixes is None or any(key.startswith(p) for p in prefixes)
            }
        )
        return [folder / fn for fn in files]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(
            f"No *.safetensors weights in {folder}. PyTorch .bin checkpoints are not read: "
            "re-save the model with safetensors (transformers' save_pretrained does by default)."
        )
    return files


def read_weights(folder: Path, prefixes: Optional[Iterable[str]] = None) -> Dict[str, mx.array]:
    """Every tensor (or those under ``prefixes``) of a folder's safetensors files, without torch."""
    prefixes = tuple(prefixes) if prefixes is not None else None
    out: Dict[str, mx.array] = {}
    for fn in weight_files(folder, prefixes):
        if not fn.exists():
            raise CheckpointError(f"Weight shard {fn.name} listed in the index is missing from {folder}.")
        try:
            tensors = mx.load(str(fn))
        except Exception as e:
            raise CheckpointError(
                f"Cannot read {fn}: the file is truncated or corrupt ({e}). Download or convert it again."
            ) from None
        for k, v in tensors.items():
            if prefixes is None or k.startswith(prefixes):
                out[k] = v
    return out


def sanitize(weights: Dict[str, mx.array], config: ModelConfig) -> Dict[str, mx.array]:
    """Transformers state dict -> MLX parameter names and layouts (idempotent on names).

    Drops the copies of the tied text embedding (encoder/decoder ``embed_tokens``, ``lm_head``),
    and hands each sub-model's tensors to that sub-model's own ``sanitize`` (conv layouts,
    weight-norm folding).
    """
    w = dict(weights)
    if "shared.weight" not in w:
        for alt in ("text_decoder.embed_tokens.weight", "text_encoder.embed_tokens.weight", "lm_head.weight"):
            if alt in w:
                w["shared.weight"] = w[alt]
                break
    for k in ("text_encoder.embed_tokens.weight", "text_decoder.embed_tokens.weight", "lm_head.weight"):
        w.pop(k, None)

    out: Dict[str, mx.array] = {}
    groups = {"speech_encoder.": sanitize_speech_encoder, "t2u_model.": sanitize_t2u, "vocoder.": sanitize_vocoder}
    for prefix, sanitize_group in groups.items():
        sub = {k[len(prefix) :]: v for k, v in w.items() if k.startswith(prefix)}
        if sub:
            for k, v in sanitize_group(sub).items():
                out[prefix + k] = v
    for k, v in w.items():
        if not k.startswith(tuple(groups)):
            out[k] = v
    return out


def load_config(folder: Path):
    config = ModelConfig.from_pretrained(folder)
    gen = GenerationConfig.from_pretrained(folder)
    return config, gen


def load_model(path, cls, dtype: Optional[str] = None, lazy: bool = False, cpu_routes: Optional[bool] = None):
    """Build ``cls`` for the folder at ``path`` and load its weights strictly.

    Quantized folders are quantized on the built model (``nn.quantize``) before the weights load;
    then, when ``cpu_routes`` (default: :func:`seamless_mlx.cpu.wanted`), the CPU-tuned modules are
    swapped in (:func:`seamless_mlx.cpu.accelerate`)."""
    folder = resolve(path)
    if not (folder / "config.json").exists():
        raise CheckpointError(f"{folder} has no config.json: it is not a model folder.")
    config, gen = load_config(folder)
    model = cls(config, gen)
    prefixes = model.weight_prefixes()
    weights = read_weights(folder, prefixes)
    if not is_converted(folder):
        weights = sanitize(weights, config)
    weights = {k: v for k, v in weights.items() if k.startswith(prefixes)}
    if config.quantization:
        apply_quantization(model, config.quantization, weights)
    if dtype is None and mx.default_device() == mx.cpu and any(
        v.dtype in (mx.float16, mx.bfloat16) for v in weights.values()
    ):
        dtype = "float32"  # half-precision kernels are many times slower than float32 on the CPU
    if dtype is not None:
        weights = cast_weights(weights, dtype, materialize=not lazy)
    load_strict(model, weights)
    if not lazy:
        mx.eval(model.parameters())
    if cpu.wanted() if cpu_routes is None else cpu_routes:
        cpu.accelerate(model)
    return model


def cast_weights(weights: Dict[str, mx.array], dtype: str, materialize: bool = False) -> Dict[str, mx.array]:
    """Floating-point weights (quantization scales included) cast to ``dtype``.

    ``materialize`` casts one tensor at a time, taking it out of ``weights`` (which ends empty), and
    hands the freed source buffers back to the system as it goes, so that a bf16 folder loaded as float32 peaks at the float32 size, not at
    float32 + bf16 (measured: T2TT RSS 6.30 -> 5.6 GB)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    target = DTYPES[dtype]
    out = {}
    for i, k in enumerate(list(weights)):
        v = weights.pop(k) if materialize else weights[k]
        out[k] = v.astype(target) if mx.issubdtype(v.dtype, mx.floating) and v.dtype != target else v
        if materialize:
            del v
            mx.eval(out[k])
            if i % 32 == 31:
                mx.clear_cache()
    if materialize:
        mx.clear_cache()
    return out


def load_strict(model: nn.Module, weights: Dict[str, mx.array]):
    """``load_weights(strict=True)`` with messages that name every missing/unexpected weight."""
    expected = dict(tree_flatten(model.parameters()))
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing weights ({len(missing)}): {', '.join(missing[:20])}")
        if unexpected:
            parts.append(f"unexpected weights ({len(unexpected)}): {', '.join(unexpected[:20])}")
        raise CheckpointError("Checkpoint does not match the model: " + "; ".join(parts))
    for k, v in weights.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(
                f"weight {k} has shape {tuple(v.shape)}, the model expects {tuple(expected[k].shape)}"
            )
    model.load_weights(list(weights.items()), strict=True)
