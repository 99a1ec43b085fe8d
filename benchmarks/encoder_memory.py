"""Speech-encoder memory on long audio at v2-large shapes: seamless-mlx vs transformers.

    python benchmarks/encoder_memory.py [--seconds 30,120] [--frameworks mlx,transformers]

Transformers' Shaw relative-position attention builds a ``[T, T, head_dim]`` table per layer
(T = 50 frames per second of audio), which grows as T^2 * head_dim; seamless-mlx projects the
queries onto the 73 distinct clipped distances and gathers, so only the ``[H, T, T]`` scores that
attention needs anyway remain.  Each measurement runs in its own process: MLX reports
``mx.get_peak_memory()`` (arrays) and RSS; transformers reports RSS.  Weights are the speech
encoder's alone (the text decoder etc. are not loaded).
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


def audio(seconds):
    import numpy as np

    rng = np.random.default_rng(0)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 200 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def worker(framework, folder, seconds):
    seconds = float(seconds)
    if framework == "mlx":
        import seamless_mlx as sm
        import mlx.core as mx
        from seamless_mlx import SeamlessM4TFeatureExtractor

        model = sm.SeamlessM4Tv2ForSpeechToText.from_pretrained(folder)
        base_rss = peak_rss()
        f = SeamlessM4TFeatureExtractor()(audio(seconds), sampling_rate=16000, return_tensors="mlx")
        mx.reset_peak_memory()
        weights = mx.get_active_memory()
        t = time.perf_counter()
        h, _ = model.encode_speech(f["input_features"], f["attention_mask"])
        mx.eval(h)
        secs = time.perf_counter() - t
        return {"seconds": secs, "peak_bytes": mx.get_peak_memory(), "weights_bytes": weights,
                "peak_rss": peak_rss(), "rss_after_load": base_rss}
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    model = transformers.SeamlessM4Tv2ForSpeechToText.from_pretrained(folder).eval()
    base_rss = peak_rss()
    f = transformers.SeamlessM4TFeatureExtractor()(audio(seconds), sampling_rate=16000, return_tensors="pt")
    t = time.perf_counter()
    with torch.inference_mode():
        model.speech_encoder(input_features=f["input_features"], attention_mask=f["attention_mask"])
    return {"seconds": time.perf_counter() - t, "peak_rss": peak_rss(),
            "rss_after_load": base_rss}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", default="30,120")
    p.add_argument("--frameworks", default="mlx,transformers")
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    folders = {"mlx": HERE / ".cache" / "mlx-fp32", "transformers": HERE / ".cache" / "full-hf"}
    rows = []
    for fw in args.frameworks.split(","):
        for s in args.seconds.split(","):
            print(f"{fw} {s} s ...", flush=True)
            r = subprocess.run([sys.executable, __file__, "--worker", fw, str(folders[fw]), s],
                               capture_output=True, text=True)
            if r.returncode != 0:
                rows.append((fw, s, {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}))
            else:
                rows.append((fw, s, json.loads(r.stdout.strip().splitlines()[-1])))
            print(rows[-1], flush=True)
    print("\n| framework | audio | encoder seconds | peak RSS | RSS growth over the loaded model | MLX peak array memory |")
    print("|---|---|---|---|---|---|")
    for fw, s, r in rows:
        if "error" in r:
            print(f"| {fw} | {s} s | failed: {r['error']} | | | |")
            continue
        extra = f"{r['peak_bytes'] / 1e9:.2f} GB (weights {r['weights_bytes'] / 1e9:.2f} GB)" if "peak_bytes" in r else "-"
        print(f"| {fw} | {s} s | {r['seconds']:.1f} | {r['peak_rss'] / 1e9:.2f} GB | "
              f"{(r['peak_rss'] - r['rss_after_load']) / 1e9:.2f} GB | {extra} |")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "encoder_memory.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
