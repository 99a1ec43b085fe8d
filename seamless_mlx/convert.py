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
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional

import mlx.core as mx
from mlx.utils import tree_flatten

from .config import ModelConfig
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
from .quantize import DEFAULT_DTYPE, check_quant_args, quantize_model

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
) -> Path:
    """Convert ``hf_path`` (folder or hub id) into ``mlx_path``; returns the output folder."""
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if quantize:
        check_quant_args(q_bits, q_group_size)
        dtype = dtype or DEFAULT_DTYPE
    out = Path(mlx_path).expanduser().resolve()
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force (force=True) to replace it.")
    src = resolve(hf_path)
    if not (src / "config.json").exists():
        raise CheckpointError(f"{src} has no config.json: it is not a SeamlessM4T-v2 checkpoint folder.")
    config = ModelConfig.from_pretrained(src)
    weights = read_weights(src)
    if not is_converted(src):
        weights = sanitize(weights, config)
    if dtype is not None:
        weights = cast_weights(weights, dtype)

    with open(src / "config.json", encoding="utf-8") as f:
        config_dict = json.load(f)
    config_dict[FORMAT_KEY] = {"format": FORMAT_VERSION}
    if dtype is not None:
        config_dict["torch_dtype"] = dtype
    if quantize:
        weights, qconf = quantize_weights(config, weights, q_bits, q_group_size)
        config_dict["quantization"] = qconf

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        save_sharded(weights, tmp, shard_bytes)
        with open(tmp / "config.json", "w", encoding="utf-8") as f:
            json.dump(config_dict, f, indent=2, ensure_ascii=False)
        for name in SIDE_FILES:
            if name != "config.json" and (src / name).exists():
                shutil.copy2(src / name, tmp / name)
        if quantize or not (tmp / "README.md").exists():
            write_model_card(tmp, hf_path, dtype, config_dict.get("quantization"))
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if upload_repo:
        upload(out, upload_repo)
    return out


# Quality against fp32 measured by benchmarks/quantization.py (v2-large-shaped random-weight
# checkpoint, 256 teacher-forced text positions; see README "Converting and quantizing"): a
# published folder states them.  Other settings: run the benchmark on the converted folder.
MEASURED_QUALITY = {
    (8, 64): {"text top-1 agreement": 0.949, "text logit rel. error": 0.017, "T2U unit top-1 agreement": 0.979},
    (4, 64): {"text top-1 agreement": 0.50, "text logit rel. error": 0.30},
}


def write_model_card(folder: Path, source, dtype, quantization, quality: Optional[dict] = None):
    lines = [
        "---",
        "library_name: mlx",
        "tags: [mlx, seamless_m4t_v2, speech-translation, text-to-speech, automatic-speech-recognition]",
        "---",
        f"# {folder.name}",
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
    lines += ["", "```python", "from seamless_mlx import load", f'model, processor = load("{folder.name}")', "```", ""]
    (folder / "README.md").write_text("\n".join(lines), encoding="utf-8")


def upload(folder: Path, repo: str):
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seamless-mlx convert", description="Convert a SeamlessM4T-v2 transformers checkpoint to MLX."
    )
    p.add_argument("--hf-path", default="facebook/seamless-m4t-v2-large", help="local folder or hub repo id")
    p.add_argument("--mlx-path", default="mlx_model", help="output folder")
    p.add_argument(
        "--dtype", choices=list(DTYPES), default=None,
        help="cast floating weights (default: as stored; float16 for the unquantized parts of a -q export)",
    )
    p.add_argument("-q", "--quantize", action="store_true", help="quantize linear layers and the embedding")
    p.add_argument("--q-bits", type=int, default=4, help="bits per weight (4 or 8)")
    p.add_argument("--q-group-size", type=int, default=64, help="quantization group size (32, 64 or 128)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--upload-repo", default=None, help="also upload the folder to this hub repo")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = convert(
            args.hf_path,
            args.mlx_path,
            dtype=args.dtype,
            quantize=args.quantize,
            q_bits=args.q_bits,
            q_group_size=args.q_group_size,
            force=args.force,
            upload_repo=args.upload_repo,
        )
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"seamless-mlx convert: error: {e}", file=sys.stderr)
        return 2
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
