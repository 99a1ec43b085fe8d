"""seamless-mlx vs transformers on a full-size (v2-large shapes) random-weight checkpoint.

    python benchmarks/run.py             # everything (about 20 minutes on 2 cores)
    python benchmarks/run.py --quick     # T2TT and S2TT 10 s only
    python benchmarks/run.py --rows t2tt,s2st --frameworks mlx-fp32,transformers

1. builds once (cached in benchmarks/.cache/full-hf) a random checkpoint with
   ``SeamlessM4Tv2Config()`` shapes and the 256102-token vocabulary, through tests/checkpoints.py;
2. converts it to MLX: fp32, and 8-/4-bit (group size 64);
3. times each framework x task in its own process (loading torch next to MLX slows MKL down
   several times, so the two never share a process), on identical inputs, with the output length
   forced (``min_new_tokens = max_new_tokens = 32``) so both do the same work: one warm-up call,
   then best of N.

Reported per row: seconds, text tokens/s, real-time factor for speech (seconds of audio in or
out per second of compute: > 1 is faster than real time), the process's peak RSS, the bytes of
weights the task class holds, and the speed-up over transformers.  Also: MLX's decode-step time
against the memory-bandwidth floor, and T2TT under each BLAS MLX can use on Linux.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
HF = CACHE / "full-hf"
TOKENS = 32
TGT = "fra"
ROWS = {
    # name: (task class suffix, input kind, audio seconds)
    "t2tt": ("TextToText", "text", 0),
    "s2tt-10s": ("SpeechToText", "speech", 10),
    "s2tt-60s": ("SpeechToText", "speech", 60),
    "t2st": ("TextToSpeech", "text", 0),
    "s2st-10s": ("SpeechToSpeech", "speech", 10),
}
REPEATS = {"s2tt-60s": 1}  # ~2 minutes a call in transformers: one timed call after no warm-up
FRAMEWORKS = ["transformers", "mlx-fp32", "mlx-q8", "mlx-q4"]
QUANT_ROWS = ("t2tt",)  # MLX CPU quantized matmuls are slow (see README); speech rows would take minutes each


def peak_rss() -> int:
    """This process's peak resident memory (VmHWM).  Not ru_maxrss: a child started from a big
    parent inherits the parent's maximum through fork, which would hide the child's own."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- inputs
def make_inputs(kind: str, seconds: float):
    import numpy as np

    rng = np.random.default_rng(0)
    if kind == "text":
        return {"ids": rng.integers(4, 200, size=(1, 20))}
    t = np.arange(int(16000 * seconds)) / 16000
    audio = 0.3 * np.sin(2 * np.pi * 200 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(t.size)
    return {"audio": audio.astype(np.float32)}


def timed(fn, repeats: int, warmup: bool):
    if warmup:
        fn()
    best = float("inf")
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


# ----------------------------------------------------------------------------- workers
def worker_mlx(folder: str, row: str, repeats: int, tokens: int):
    import seamless_mlx as sm  # before mlx.core: picks the fast BLAS
    import mlx.core as mx
    from seamless_mlx import _blas
    from seamless_mlx.audio import SeamlessM4TFeatureExtractor

    suffix, kind, seconds = ROWS[row]
    cls = getattr(sm, f"SeamlessM4Tv2For{suffix}")
    t = time.perf_counter()
    model = cls.from_pretrained(folder)
    load_s = time.perf_counter() - t
    data = make_inputs(kind, seconds)
    if kind == "text":
        inputs = {"input_ids": mx.array(data["ids"])}
    else:
        f = SeamlessM4TFeatureExtractor()(data["audio"], sampling_rate=16000, return_tensors="mlx")
        inputs = {"input_features": f["input_features"], "attention_mask": f["attention_mask"]}

    def run():
        out = model.generate(**inputs, tgt_lang=TGT, max_new_tokens=tokens, min_new_tokens=tokens)
        mx.eval(out[0])
        return out

    secs, out = timed(run, repeats, warmup=seconds < 60)
    res = {"seconds": secs, "load_s": load_s, "blas": _blas.loaded or "reference"}
    if suffix.endswith("Speech"):
        res["audio_out_s"] = int(out.waveform_lengths[0].item()) / 16000
    if row == "t2tt":
        # decode-step time: the difference between a long and a short forced output
        short = tokens // 4
        s_short, _ = timed(
            lambda: mx.eval(model.generate(**inputs, tgt_lang=TGT, max_new_tokens=short, min_new_tokens=short)[0]),
            repeats,
            warmup=False,
        )
        res["step_s"] = (secs - s_short) / (tokens - short)
        # bytes a step reads: decoder weights (without cross-attention K/V, computed once) + LM head
        from mlx.utils import tree_flatten

        params = dict(tree_flatten(model.parameters()))
        res["peak_rss"] = peak_rss()  # before the 1 GiB probe
        res["step_bytes"] = sum(
            v.nbytes
            for k, v in params.items()
            if k.startswith(("text_decoder.", "shared."))
            and ".cross_attention.k_proj" not in k
            and ".cross_attention.v_proj" not in k
        )
        w = mx.random.normal((1 << 14, 1 << 14))  # 1 GiB, read once per product
        x = mx.random.normal((1, 1 << 14))
        mx.eval(w, x)
        mx.eval(x @ w.T)
        t = time.perf_counter()
        for _ in range(5):
            mx.eval(x @ w.T)
        res["bandwidth_Bps"] = 5 * w.nbytes / (time.perf_counter() - t)
    res.setdefault("peak_rss", peak_rss())
    return res


def worker_hf(folder: str, row: str, repeats: int, tokens: int):
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    suffix, kind, seconds = ROWS[row]
    cls = getattr(transformers, f"SeamlessM4Tv2For{suffix}")
    t = time.perf_counter()
    model = cls.from_pretrained(folder).eval()
    load_s = time.perf_counter() - t
    data = make_inputs(kind, seconds)
    if kind == "text":
        inputs = {"input_ids": torch.tensor(data["ids"])}
    else:
        fe = transformers.SeamlessM4TFeatureExtractor()
        f = fe(data["audio"], sampling_rate=16000, return_tensors="pt")
        inputs = {"input_features": f["input_features"], "attention_mask": f["attention_mask"]}

    def run():
        with torch.inference_mode():
            return model.generate(**inputs, tgt_lang=TGT, max_new_tokens=tokens, min_new_tokens=tokens)

    secs, out = timed(run, repeats, warmup=seconds < 60)
    res = {"seconds": secs, "load_s": load_s, "torch": torch.__version__, "threads": torch.get_num_threads()}
    if suffix.endswith("Speech"):
        res["audio_out_s"] = int(out[1].reshape(-1)[0]) / 16000
    res["peak_rss"] = peak_rss()
    return res


# ----------------------------------------------------------------------------- driver
def task_weight_bytes(folder: Path, row: str) -> int:
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    from safetensors import safe_open  # header only, no tensor data

    comps = {
        "TextToText": ("shared.", "text_encoder.", "text_decoder."),
        "SpeechToText": ("shared.", "speech_encoder.", "text_decoder."),
        "TextToSpeech": ("shared.", "text_encoder.", "text_decoder.", "t2u_model.", "vocoder."),
        "SpeechToSpeech": ("shared.", "speech_encoder.", "text_decoder.", "t2u_model.", "vocoder."),
    }[ROWS[row][0]]
    total = 0
    for shard in sorted(set(index.values())):
        with safe_open(str(folder / shard), framework="numpy") as f:
            for k in f.keys():
                if k.startswith(comps):
                    sl = f.get_slice(k)
                    n = 1
                    for d in sl.get_shape():
                        n *= d
                    total += n * {"F32": 4, "F16": 2, "BF16": 2, "U32": 4, "I32": 4}.get(sl.get_dtype(), 4)
    return total


def run_worker(framework: str, folder: Path, row: str, repeats: int, tokens: int, env=None):
    cmd = [sys.executable, str(Path(__file__)), "--worker", framework, str(folder), row, str(repeats), str(tokens)]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if p.returncode != 0:
        raise RuntimeError(f"{framework} {row} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def ensure_models(frameworks):
    if not (HF / "config.json").exists():
        log(f"building the full-size random checkpoint in {HF} (about 2 minutes, 9 GB) ...")
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); from checkpoints import build_checkpoint; "
            f"build_checkpoint({str(HF)!r}, seed=0, full_size=True, overrides={{'vocab_size': 256102}})"
        )
        subprocess.run([sys.executable, "-c", code], check=True)
    sys.path.insert(0, str(ROOT))
    from seamless_mlx.convert import convert

    folders = {"transformers": HF}
    for fw in frameworks:
        if not fw.startswith("mlx"):
            continue
        name = fw.split("-")[1]
        folder = CACHE / f"mlx-{name}"
        if not (folder / "config.json").exists():
            log(f"converting to {folder.name} ...")
            kw = {} if name == "fp32" else {"quantize": True, "q_bits": int(name[1:]), "q_group_size": 64}
            convert(HF, folder, force=True, **kw)
        folders[fw] = folder
    return folders


def fmt_table(results):
    lines = [
        "| task | framework | seconds | tokens/s | RTF | peak RSS | task weights | speed-up vs transformers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        base = results.get(row, {}).get("transformers", {}).get("seconds")
        for fw, r in results.get(row, {}).items():
            if "seconds" not in r:
                continue
            speech_s = ROWS[row][2] or r.get("audio_out_s", 0)
            rtf = f"{speech_s / r['seconds']:.2f}" if speech_s else "-"
            ratio = f"{base / r['seconds']:.2f}x" if base and fw != "transformers" else "-"
            lines.append(
                f"| {row} | {fw} | {r['seconds']:.2f} | {TOKENS / r['seconds']:.1f} | {rtf} | "
                f"{r['peak_rss'] / 1e9:.2f} GB | {r.get('weights', 0) / 1e9:.2f} GB | {ratio} |"
            )
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="T2TT and S2TT 10 s only")
    p.add_argument("--rows", default=None, help=f"comma list of {', '.join(ROWS)}")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--repeats", type=int, default=2, help="timed calls per row (best is kept)")
    p.add_argument("--no-blas", action="store_true", help="skip the BLAS comparison")
    p.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        fw, folder, row, repeats, tokens = args.worker
        fn = worker_hf if fw == "transformers" else worker_mlx
        print(json.dumps(fn(folder, row, int(repeats), int(tokens))))
        return

    rows = ["t2tt", "s2tt-10s"] if args.quick else (args.rows.split(",") if args.rows else list(ROWS))
    frameworks = args.frameworks.split(",")
    started = time.time()
    folders = ensure_models(frameworks)
    results = {}
    for row in rows:
        results[row] = {}
        for fw in frameworks:
            if fw in ("mlx-q8", "mlx-q4") and row not in QUANT_ROWS:
                continue
            reps = REPEATS.get(row, args.repeats)
            log(f"{row:9s} {fw:13s} ...")
            try:
                r = run_worker(fw, folders[fw], row, reps, TOKENS)
            except RuntimeError as e:
                log(str(e))
                continue
            r["weights"] = task_weight_bytes(folders[fw], row)
            results[row][fw] = r
            log(f"{row:9s} {fw:13s} {r['seconds']:.2f} s, peak RSS {r['peak_rss'] / 1e9:.2f} GB")
    blas = {}
    if not args.no_blas and "mlx-fp32" in folders:
        libs = {"reference": "off", "openblas": "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"}
        for name, value in libs.items():
            if name == "openblas" and not Path(value).exists():
                continue
            log(f"t2tt mlx-fp32 with {name} BLAS (4 tokens) ...")
            try:
                r = run_worker("mlx-fp32", folders["mlx-fp32"], "t2tt", 1, 8, env={"SEAMLESS_MLX_BLAS": value})
                blas[name] = r
            except RuntimeError as e:
                log(str(e))
        if "t2tt" in results and "mlx-fp32" in results["t2tt"]:
            blas["mkl"] = results["t2tt"]["mlx-fp32"]
    import importlib.metadata as md

    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "python": platform.python_version(),
        "mlx": md.version("mlx"),
        "torch": md.version("torch"),
        "transformers": md.version("transformers"),
        "tokens": TOKENS,
        "minutes": (time.time() - started) / 60,
    }
    print("\n" + fmt_table(results))
    t2 = results.get("t2tt", {}).get("mlx-fp32", {})
    if "step_s" in t2:
        floor = t2["step_bytes"] / t2["bandwidth_Bps"]
        print(
            f"\nDecode step (mlx fp32): {t2['step_s'] * 1e3:.0f} ms; bandwidth floor {floor * 1e3:.0f} ms "
            f"({t2['step_bytes'] / 1e9:.2f} GB read per token at {t2['bandwidth_Bps'] / 1e9:.1f} GB/s) "
            f"= {t2['step_s'] / floor:.2f}x the floor"
        )
    if blas:
        print("\nT2TT decode step by BLAS (mlx fp32):")
        for name, r in blas.items():
            if "step_s" in r:
                print(f"  {name:10s} {r['step_s'] * 1e3:8.0f} ms/token   ({r['blas']})")
    print(f"\n{meta}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{meta['date']}.json"
    path.write_text(json.dumps({"meta": meta, "results": results, "blas": blas}, indent=2))
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
