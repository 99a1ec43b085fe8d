"""Convert a transformers SeamlessM4T-v2 checkpoint into an MLX folder.

    python -m seamless_mlx.convert --hf-path facebook/seamless-m4t-v2-large --mlx-path mlx_model
    python -m seamless_mlx.convert --hf-path ./hf_folder --mlx-path mlx_q4 -q --q-bits 4

The safetensors are read without torch; weights are renamed/re-laid-out once (channels-last convs,
weight-norm folded, tied copies dropped), optionally cast and quantized, then written as sharded
``model-XXXXX-of-YYYYY.safetensors`` with an index, next to the config, generation config,
tokenizer and feature-extractor files.  Everything is written into a temporary folder beside the
target and renamed at the end: a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Dict, Optional

import mlx.core as mx
from mlx.utils import tree_flatten

from .config import GenerationConfig, ModelConfig
from .fileio import aside_name, clean_stale_temp_folders, exit_on_sigterm, make_temp_dir, own_temp_dirs, target_lock
from .loading import (
    DTYPES,
    FORMAT_KEY,
    FORMAT_VERSION,
    SIDE_FILES,
    CheckpointError,
    cast_weights,
    is_converted,
    load_strict,
    read_weights,
    resolve,
    sanitize,
)
from .model import SeamlessM4Tv2Model
from .tokenizer import SeamlessM4TTokenizer
from .quantize import DEFAULT_DTYPE, apply_quantization, check_quant_args, quantize_model

MAX_SHARD_BYTES = 2 << 30
Q_BITS = (2, 3, 4, 5, 6, 8)



def quantize_weights(config, weights: Dict[str, mx.array], bits: int, group_size: int):
    """Full-model weights -> (quantized weights, ``{"group_size", "bits"}`` for config.json)."""
    check_quant_args(bits, group_size)
    model = SeamlessM4Tv2Model(config)
    load_strict(model, weights)
    qconf = quantize_model(model, bits, group_size)
    out = dict(tree_flatten(model.parameters()))
    mx.eval(out)
    return out, qconf

def save_sharded(weights: Dict[str, mx.array], folder: Path, max_bytes: int = MAX_SHARD_BYTES):
    """``model.safetensors`` or ``model-XXXXX-of-YYYYY.safetensors`` shards plus an index."""
    shards, current, size = [], {}, 0
    for k in sorted(weights):
        v = weights[k]
        if current and size + v.nbytes > max_bytes:
            shards.append(current)
            current, size = {}, 0
        current[k] = v
        size += v.nbytes
    if current:
        shards.append(current)
    weight_map, total = {}, 0
    n = len(shards)
    for i, shard in enumerate(shards):
        name = "model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        mx.save_safetensors(str(folder / name), shard, metadata={"format": "mlx"})
        for k, v in shard.items():
            weight_map[k] = name
            total += v.nbytes
    with open(folder / "model.safetensors.index.json", "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def convert(
    hf_path,
    mlx_path,
    dtype: Optional[str] = None,
    quantize: bool = False,
    q_bits: int = 4,
    q_group_size: int = 64,
    force: bool = False,
    shard_bytes: int = MAX_SHARD_BYTES,
    upload_repo: Optional[str] = None,
    wait: bool = False,
) -> Path:
    """Convert ``hf_path`` (folder or hub id) into ``mlx_path``; returns the output folder.

    Nothing is written before the source is known to be servable (:func:`check_source`) and the
    target allowed (:func:`check_target`).  The target is locked while it is written (a second
    conversion into it raises :class:`~seamless_mlx.fileio.LockedError`, or waits with ``wait``),
    written into a temporary folder beside it and renamed into place at the end; temporary
    folders of earlier conversions that were killed are removed first.
    """
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if quantize:
        check_quant_args(q_bits, q_group_size)
        dtype = dtype or DEFAULT_DTYPE
    out = Path(mlx_path).expanduser().resolve()
    src = resolve(hf_path)
    check_target(out, src, force)
    config, config_dict = check_source(src)
    made = _make_parent(out)
    try:
        _convert_locked(out, src, hf_path, config, config_dict, dtype, quantize, q_bits, q_group_size, force,
                        shard_bytes, wait)
    except BaseException:
        for folder in reversed(made):  # the folders made for the output, when still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    if upload_repo:
        upload(out, upload_repo)
    return out


def _convert_locked(out, src, hf_path, config, config_dict, dtype, quantize, q_bits, q_group_size, force,
                    shard_bytes, wait):
    with target_lock(out, wait=wait):
        clean_stale_temp_folders(out, ours=holds_conversion_files_only)
        check_target(out, src, force)  # made by another process while this one waited
        weights = read_weights(src)
        if not is_converted(src):
            weights = sanitize(weights, config)
        check_weights(src, config, weights)
        if dtype is not None:
            weights = cast_weights(weights, dtype)
        config_dict[FORMAT_KEY] = {"format": FORMAT_VERSION}
        if dtype is not None:
            config_dict["torch_dtype"] = dtype
        if quantize:
            weights, qconf = quantize_weights(config, weights, q_bits, q_group_size)
            config_dict["quantization"] = qconf
        _write_folder(out, src, hf_path, weights, config_dict, dtype, quantize, shard_bytes)


def _write_folder(out: Path, src: Path, source_name, weights, config_dict, dtype, quantize, shard_bytes):
    tmp = None
    try:
        tmp = make_temp_dir(out)
        save_sharded(weights, tmp, shard_bytes)
        with open(tmp / "config.json", "w", encoding="utf-8") as f:
            json.dump(config_dict, f, indent=2, ensure_ascii=False)
        for name in SIDE_FILES:
            if name != "config.json" and (src / name).exists():
                shutil.copy2(src / name, tmp / name)
        for spm in src.glob("*.model"):  # a tokenizer under another name than sentencepiece.bpe.model
            if not (tmp / spm.name).exists():
                shutil.copy2(spm, tmp / spm.name)
        if quantize or not (tmp / "README.md").exists() or is_converted(src):  # never another folder's card
            write_model_card(tmp, source_name, dtype, config_dict.get("quantization"), name=out.name)
        for entry in os.scandir(tmp):
            with open(entry.path, "rb") as f:
                os.fsync(f.fileno())
        if out.exists():
            old = aside_name(out)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        # ours, even when the interrupt came between making it and knowing its name
        for path in [tmp] if tmp is not None else own_temp_dirs(out):
            shutil.rmtree(path, ignore_errors=True)
        raise


# Files a conversion writes; a folder holding anything else is not replaced by --force.
_CONVERTED_FILE = re.compile(
    r"^(model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json|[^.][^/]*\.model|\.DS_Store)$"
)


def holds_conversion_files_only(folder: Path) -> bool:
    """True for a folder holding nothing but files a conversion writes (a partial one too): a
    temporary or set-aside folder of ours, not a user's folder that happens to share its name."""
    try:
        return all(n in SIDE_FILES or _CONVERTED_FILE.match(n) for n in os.listdir(folder))
    except OSError:
        return False


def is_conversion(folder: Path) -> bool:
    """True for a folder that is recognisably the output of this converter: a ``config.json``
    with the seamless-mlx format marker and nothing but the files a conversion writes."""
    try:
        if not is_converted(folder):
            return False
        names = os.listdir(folder)
    except (OSError, ValueError):
        return False
    return all(n in SIDE_FILES or _CONVERTED_FILE.match(n) for n in names)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_target(out: Path, src: Path, force: bool):
    """Refuse an output folder that must not be written (``FileExistsError`` / ``ValueError``).

    Without ``force`` any existing path is refused.  ``force`` replaces only a folder that
    :func:`is_conversion` recognises, and never the source, a folder holding the source, the
    working directory or a folder holding it.
    """
    src = src.resolve()
    if _inside(src, out):
        raise ValueError(f"--mlx-path {out} is (or holds) the source checkpoint {src}; choose another output folder.")
    if _inside(Path.cwd().resolve(), out):
        raise ValueError(f"--mlx-path {out} is (or holds) the working directory; choose another output folder.")
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise FileExistsError(f"--mlx-path {out} exists and is not a folder; choose another output folder.")
    if not force:
        raise FileExistsError(f"{out} already exists; pass --force (force=True) to replace it.")
    if not is_conversion(out):
        raise FileExistsError(
            f"{out} is not a folder written by seamless-mlx convert; --force replaces only those. "
            "Choose another output folder, or move this one away yourself."
        )


def _make_parent(out: Path):
    """Create the missing folders above ``out``; return them, outermost first."""
    made = []
    probe = out.parent
    while not probe.exists() and probe != probe.parent:
        made.insert(0, probe)
        probe = probe.parent
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise FileExistsError(f"cannot create {out}: {out.parent} is not a folder.") from None
    except PermissionError:
        raise PermissionError(f"cannot create {out}: permission denied.") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write in {out.parent} (permission denied); choose another --mlx-path.")
    return made


def check_source(src: Path):
    """``(ModelConfig, config.json dict)`` of a source that can be served, else a
    ``CheckpointError`` naming every file that is missing or unusable."""
    missing = []
    if not (src / "config.json").is_file():
        raise CheckpointError(f"{src} has no config.json: it is not a SeamlessM4T-v2 checkpoint folder.")
    if not (src / "generation_config.json").is_file():
        missing.append("generation_config.json (target languages, decoding defaults)")
    if not (src / "sentencepiece.bpe.model").is_file() and not list(src.glob("*.model")):
        missing.append("sentencepiece.bpe.model (the tokenizer)")
    if not list(src.glob("*.safetensors")):
        missing.append("*.safetensors (the weights)")
    if missing:
        raise CheckpointError(f"{src} cannot be served: missing {'; '.join(missing)}. Copy the whole checkpoint folder.")
    try:
        with open(src / "config.json", encoding="utf-8") as f:
            config_dict = json.load(f)
        config = ModelConfig.from_dict(config_dict)
        gen = GenerationConfig.from_pretrained(src)
        SeamlessM4TTokenizer.from_pretrained(src)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise CheckpointError(f"{src} cannot be served: {type(e).__name__}: {e}") from None
    if not gen.text_decoder_lang_to_code_id:
        raise CheckpointError(
            f"{src}/generation_config.json lists no target languages (text_decoder_lang_to_code_id); "
            "use the generation_config.json of the original checkpoint."
        )
    return config, config_dict


def check_weights(src: Path, config, weights: Dict[str, mx.array]):
    """Every weight the model has, with the shape its config gives, and no other (names them)."""
    model = SeamlessM4Tv2Model(config)
    weights = dict(weights)
    weights.pop("t2u_model.model.decoder.embed_tokens.weight", None)  # unused table of older folders
    if config.quantization:
        apply_quantization(model, config.quantization, weights)
    try:
        load_strict(model, weights)
    except CheckpointError as e:
        raise CheckpointError(f"{src} does not match its config.json: {e}") from None


# Quality against fp32 measured by benchmarks/quantization.py (v2-large-shaped random-weight
# checkpoint, 256 teacher-forced text positions; see README "Converting and quantizing"): a
# published folder states them.  Other settings: run the benchmark on the converted folder.
MEASURED_QUALITY = {
    (8, 64): {"text top-1 agreement": 0.949, "text logit rel. error": 0.017, "T2U unit top-1 agreement": 0.979},
    (4, 64): {"text top-1 agreement": 0.50, "text logit rel. error": 0.30},
}


def write_model_card(folder: Path, source, dtype, quantization, quality: Optional[dict] = None, name=None):
    """README.md for a converted folder; ``name`` is the folder's final name (default: its own)."""
    name = name or folder.name
    lines = [
        "---",
        "library_name: mlx",
        "tags: [mlx, seamless_m4t_v2, speech-translation, text-to-speech, automatic-speech-recognition]",
        "---",
        f"# {name}",
        "",
        f"SeamlessM4T-v2 converted to MLX with seamless-mlx from `{source}`.",
        "",
        f"- dtype: {dtype or 'as in the source checkpoint'}",
    ]
    if quantization:
        lines.append(f"- quantization: {quantization.get('bits')}-bit, group size {quantization.get('group_size')}")
    if quantization and quality is None:
        quality = MEASURED_QUALITY.get((quantization.get("bits"), quantization.get("group_size")))
    if quality:
        lines.append(
            "- quality vs fp32 (seamless-mlx benchmarks/quantization.py, random weights with these shapes): "
            + ", ".join(f"{k} {v}" for k, v in quality.items())
        )
    elif quantization:
        lines.append("- quality vs fp32: not measured for this setting (run seamless-mlx's benchmarks/quantization.py)")
    lines += ["", "```python", "from seamless_mlx import load", f'model, processor = load("{name}")', "```", ""]
    (folder / "README.md").write_text("\n".join(lines), encoding="utf-8")


class UploadError(RuntimeError):
    """The folder was written but could not be uploaded to the hub."""


def upload(folder: Path, repo: str):
    """Upload ``folder`` to the hub repo ``repo`` (created if needed)."""
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo)
    except Exception as e:  # noqa: BLE001 - network, login, permissions: all end the same way
        names = {c.__name__ for c in type(e).__mro__}
        if "OfflineModeIsEnabled" in names:
            reason = "HF_HUB_OFFLINE is set"
        elif names & {"ConnectionError", "Timeout", "ConnectError", "TimeoutError"}:
            reason = "the hub cannot be reached: no network?"
        else:
            reason = f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
        raise UploadError(
            f"{folder} was written, but uploading it to {repo!r} failed ({reason}). "
            f"Check the network and `huggingface-cli login`, then run `huggingface-cli upload {repo} {folder}`."
        ) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seamless-mlx convert", description="Convert a SeamlessM4T-v2 transformers checkpoint to MLX."
    )
    p.add_argument("--hf-path", default="facebook/seamless-m4t-v2-large", help="local folder or hub repo id")
    p.add_argument("--mlx-path", default="mlx_model",
                   help="output folder (must not exist, see --force); written beside it as a hidden temporary "
                        "folder and renamed at the end. A second conversion into the same folder while one "
                        "runs fails at once")
    p.add_argument(
        "--dtype", choices=list(DTYPES), default=None,
        help="cast floating weights (default: as stored; float16 for the unquantized parts of a -q export)",
    )
    p.add_argument("-q", "--quantize", action="store_true", help="quantize linear layers and the embedding")
    p.add_argument("--q-bits", type=int, default=None, help="bits per weight with -q: 4 (default) or 8")
    p.add_argument("--q-group-size", type=int, default=None, help="quantization group size with -q: 32, 64 (default) "
                   "or 128")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output folder, only if it was written by seamless-mlx convert "
                        "(never the source, the working directory, a file or any other folder)")
    p.add_argument("--upload-repo", default=None, help="also upload the folder to this hub repo")
    return p


def _error(msg, code: int) -> int:
    print(f"seamless-mlx convert: error: {' '.join(str(msg).split())}", file=sys.stderr, flush=True)
    return code


def main(argv=None) -> int:
    if argv is None:  # run as a command (`seamless-mlx convert` installs it in cli.main)
        exit_on_sigterm()
    args = build_parser().parse_args(argv)
    if not args.quantize and (args.q_bits is not None or args.q_group_size is not None):
        return _error("--q-bits and --q-group-size set how -q quantizes: add -q (or drop them).", 2)
    try:
        out = convert(
            args.hf_path,
            args.mlx_path,
            dtype=args.dtype,
            quantize=args.quantize,
            q_bits=4 if args.q_bits is None else args.q_bits,
            q_group_size=64 if args.q_group_size is None else args.q_group_size,
            force=args.force,
            upload_repo=args.upload_repo,
        )
    except KeyboardInterrupt:
        return _error("interrupted; the partial output was removed.", 130)
    except UploadError as e:
        return _error(e, 1)
    except (ValueError, OSError) as e:  # bad paths/sources, refused targets, locks, permissions
        return _error(e, 2 if isinstance(e, (ValueError, FileExistsError, FileNotFoundError, PermissionError,
                                               NotADirectoryError, IsADirectoryError)) else 1)
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
