"""Quantized export on a full-size (v2-large shapes) random checkpoint: size, memory, quality.

    python benchmarks/quantization.py                      # builds/reuses benchmarks/.cache/full-hf
    python benchmarks/quantization.py --hf-path PATH       # any transformers SeamlessM4T-v2 folder

For fp32 / bf16 / 8-bit / 4-bit (group size 64) it reports: folder size on disk; peak RSS of a
process that loads the task class and runs T2TT (SeamlessM4Tv2ForTextToText) and S2ST
(SeamlessM4Tv2ForSpeechToSpeech, 10 s of audio); and quality against fp32 —

* teacher-forced text decoder logits on a fixed 32-token target: top-1 agreement and relative
  error ``||l - l_fp32|| / ||l_fp32||``;
* T2U unit logits for the same text and the *fp32* decoder states (so that only the T2U weights
  differ): top-1 agreement and relative error over the unit positions both runs share.

Every measurement runs in its own process (no torch imported anywhere: loading torch next to MLX
slows MKL down several times), so RSS figures are per task.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _worker import peak_rss  # no torch or mlx import at module level

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
VARIANTS = {
    "fp32": dict(),
    "bf16": dict(dtype="bfloat16"),
    "q8": dict(quantize=True, q_bits=8, q_group_size=64),
    "q4": dict(quantize=True, q_bits=4, q_group_size=64),
}
TGT = "fra"


def folder_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def build_full(path: Path):
    """v2-large shapes, vocabulary 256102, random weights (tests/checkpoints.py recipe)."""
    code = (
        "import sys; sys.path.insert(0, %r); from checkpoints import build_checkpoint; "
        "build_checkpoint(%r, seed=0, full_size=True, overrides={'vocab_size': 256102})"
    ) % (str(ROOT / "tests"), str(path))
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- workers
def _inputs(seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    src = rng.integers(4, 200, size=(1, 20))  # ids the tiny tokenizer knows, so id_to_text hits
    t = np.arange(160000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 200 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(t.size))
    return src, audio.astype(np.float32)


def worker_quality(folder: str, out: str, target: str):
    import numpy as np

    import seamless_mlx as sm
    import mlx.core as mx

    src, _ = _inputs()
    model = sm.SeamlessM4Tv2ForTextToSpeech.from_pretrained(folder)
    ids = mx.array(src)
    memory, mask = model.encode_text(ids)
    tgt = np.load(target)  # [1, L] decoder input ids (start, lang, 30 tokens)
    cache = model.text_decoder.make_cache(memory)
    h = model.text_decoder(mx.array(tgt), model.shared, cache, mask)
    logits = model.lm_logits(h).astype(mx.float32)
    np.save(out + ".text.npy", np.array(logits[0]))
    states_path = target.replace(".npy", ".states.npy")
    if os.path.exists(states_path):
        states = mx.array(np.load(states_path))
    else:
        states = h  # states of every token fed, i.e. sequences[:, :-1] for seq = target + [eos]
        np.save(states_path, np.array(states.astype(mx.float32)))
    from seamless_mlx import t2u as t2u_mod

    seq = np.concatenate([tgt, [[3]]], axis=1)
    gen = model.generation_config
    chars, counts = t2u_mod.char_inputs(seq, gen, gen.pad_token_id, gen.eos_token_id)
    m = t2u_mod.t2u_attention_mask(seq, gen.pad_token_id)
    dtype = model.text_decoder.layer_norm.weight.dtype  # norms are never quantized
    ul, _ = model.t2u_model(states.astype(dtype), mx.array(chars), mx.array(counts), mx.array(m))
    np.save(out + ".unit.npy", np.array(ul[0].astype(mx.float32)))


def worker_run(folder: str, task: str, out: str):
    import seamless_mlx as sm
    import mlx.core as mx

    src, audio = _inputs()
    t0 = time.perf_counter()
    if task == "t2tt":
        model = sm.SeamlessM4Tv2ForTextToText.from_pretrained(folder)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.generate(input_ids=mx.array(src), tgt_lang=TGT, max_new_tokens=32, min_new_tokens=32)
    else:
        from seamless_mlx.audio import SeamlessM4TFeatureExtractor

        model = sm.SeamlessM4Tv2ForSpeechToSpeech.from_pretrained(folder)
        load_s = time.perf_counter() - t0
        f = SeamlessM4TFeatureExtractor()(audio, sampling_rate=16000, return_tensors="mlx")
        t0 = time.perf_counter()
        model.generate(input_features=f["input_features"], attention_mask=f["attention_mask"], tgt_lang=TGT,
                       max_new_tokens=32, min_new_tokens=32)
    run_s = time.perf_counter() - t0
    rss = peak_rss()
    Path(out).write_text(json.dumps({"load_s": load_s, "run_s": run_s, "peak_rss": rss}))


# ----------------------------------------------------------------------------- driver
def run_worker(*args):
    subprocess.run([sys.executable, __file__, "--worker", *args], check=True)


def compare(a, b):
    import numpy as np

    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    agree = float((a.argmax(-1) == b.argmax(-1)).mean())
    rel = float(np.linalg.norm(a - b) / np.linalg.norm(b))
    return agree, rel, n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hf-path", default=None)
    p.add_argument("--variants", default="fp32,bf16,q8,q4")
    p.add_argument("--no-rss", action="store_true", help="skip the T2TT/S2ST memory runs")
    p.add_argument("--rss-tasks", default="t2tt,s2st", help="tasks of the memory runs")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        kind, *rest = args.worker
        return worker_quality(*rest) if kind == "quality" else worker_run(*rest)

    import numpy as np

    CACHE.mkdir(parents=True, exist_ok=True)
    hf = Path(args.hf_path) if args.hf_path else CACHE / "full-hf"
    if not (hf / "config.json").exists():
        print(f"building full-size random checkpoint at {hf} ...", flush=True)
        build_full(hf)
    sys.path.insert(0, str(ROOT))
    from seamless_mlx.convert import convert

    work = CACHE / "quant"
    work.mkdir(exist_ok=True)
    results = {}
    rng = np.random.default_rng(1)
    target = work / "target.npy"
    np.save(target, np.concatenate([[[3, 0]], rng.integers(4, 200, size=(1, 30))], axis=1))
    for name in args.variants.split(","):
        folder = CACHE / f"mlx-{name}"
        if not (folder / "config.json").exists():
            print(f"[{name}] converting ...", flush=True)
            t = time.perf_counter()
            convert(hf, folder, force=True, **VARIANTS[name])
            print(f"[{name}] converted in {time.perf_counter() - t:.0f} s", flush=True)
        res = {"size_bytes": folder_size(folder)}
        if name == "fp32" or "fp32" in results:
            lang = json.loads((folder / "generation_config.json").read_text())["text_decoder_lang_to_code_id"][TGT]
            arr = np.load(target)
            arr[0, 1] = lang
            np.save(target, arr)
            print(f"[{name}] quality pass ...", flush=True)
            run_worker("quality", str(folder), str(work / name), str(target))
        if not args.no_rss:
            for task in args.rss_tasks.split(","):
                print(f"[{name}] {task} memory run ...", flush=True)
                run_worker("run", str(folder), task, str(work / f"{name}.{task}.json"))
                res[task] = json.loads((work / f"{name}.{task}.json").read_text())
        results[name] = res
    base_t = np.load(work / "fp32.text.npy")
    base_u = np.load(work / "fp32.unit.npy")
    for name, res in results.items():
        if (work / f"{name}.text.npy").exists():
            res["text_top1"], res["text_rel_err"], _ = compare(np.load(work / f"{name}.text.npy"), base_t)
            res["unit_top1"], res["unit_rel_err"], res["unit_positions"] = compare(
                np.load(work / f"{name}.unit.npy"), base_u
            )
    print("\n| variant | folder size | T2TT peak RSS | S2ST peak RSS | text top-1 | text rel. err | unit top-1 | unit rel. err |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        gb = lambda b: f"{b / 1e9:.2f} GB" if b else "-"
        print(
            f"| {name} | {gb(r['size_bytes'])} | {gb(r.get('t2tt', {}).get('peak_rss'))} | "
            f"{gb(r.get('s2st', {}).get('peak_rss'))} | {r.get('text_top1', float('nan')):.4f} | "
            f"{r.get('text_rel_err', float('nan')):.4f} | {r.get('unit_top1', float('nan')):.4f} | "
            f"{r.get('unit_rel_err', float('nan')):.4f} |"
        )
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "quantization.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
