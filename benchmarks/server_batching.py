"""`seamless-mlx serve`: 8 concurrent LibreTranslate clients (merged into one padded generate call)
against the same 8 requests sent one after another.

    python benchmarks/server_batching.py                  # tiny random checkpoint (built once)
    python benchmarks/server_batching.py --model PATH     # any converted / transformers folder

The server runs as a real process on 127.0.0.1 (one inference worker).  Each round sends 8
different sentences (eng -> fra) sequentially, then the same 8 from 8 threads released together;
per-request latency (p50/p95 over all rounds), throughput (requests / wall time of the round,
median over rounds), the batch sizes the server reports (``X-Batch-Size``) and the server's peak
RSS (VmHWM) are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SENTENCES = [
    "Hello world, how are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "I would like a coffee, please.",
    "Where is the library? It is near the river.",
    "Machine translation with speech and text, in many languages.",
    "It's a well-known fact that translation is hard; isn't it?",
    "Numbers 1234 567 89, and symbols.",
    "Good morning, my friend.",
]


def tiny_model() -> str:
    out = HERE / ".cache" / "tiny-mlx"
    if (out / "config.json").exists():
        return str(out)
    sys.path.insert(0, str(ROOT / "tests"))
    from checkpoints import build_checkpoint

    from seamless_mlx.convert import convert

    hf, _, _ = build_checkpoint(HERE / ".cache" / "tiny-hf", seed=0)
    return str(convert(hf, out))


def post(url: str, text: str):
    import json

    body = json.dumps({"q": text, "source": "en", "target": "fr"}).encode()
    req = urllib.request.Request(url + "/translate", data=body, headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        json.loads(r.read())
        batch = int(r.headers.get("X-Batch-Size", "1"))
    return time.perf_counter() - t0, batch


def run_round(url: str, concurrent: bool):
    results = [None] * len(SENTENCES)
    if not concurrent:
        t0 = time.perf_counter()
        for i, s in enumerate(SENTENCES):
            results[i] = post(url, s)
        return time.perf_counter() - t0, results
    gate = threading.Barrier(len(SENTENCES) + 1)

    def go(i):
        gate.wait()
        results[i] = post(url, SENTENCES[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(SENTENCES))]
    for t in threads:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, results


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: the tiny random checkpoint)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=None)
    args = ap.parse_args()
    model = args.model or tiny_model()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "seamless_mlx.cli", "serve", "--model", model, "--port", str(port), "--quiet"]
    if args.max_new_tokens:
        cmd += ["--max-new-tokens", str(args.max_new_tokens)]
    proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/languages", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        run_round(url, False)  # warm-up: first-call compilation
        run_round(url, True)
        rows = {}
        for mode in ("sequential", "concurrent"):
            lat, walls, batches = [], [], []
            for _ in range(args.rounds):
                wall, res = run_round(url, mode == "concurrent")
                walls.append(wall)
                lat += [r[0] for r in res]
                batches += [r[1] for r in res]
            rows[mode] = (np.percentile(lat, 50), np.percentile(lat, 95), len(SENTENCES) / np.median(walls),
                          max(batches))
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    print(f"model: {model}; {args.rounds} rounds of {len(SENTENCES)} requests; server peak RSS {rss:.0f} MB\n")
    print("| 8 requests | p50 latency (s) | p95 latency (s) | throughput (req/s) | largest batch |")
    print("|---|---|---|---|---|")
    for mode, (p50, p95, thr, b) in rows.items():
        print(f"| {mode} | {p50:.3f} | {p95:.3f} | {thr:.1f} | {b} |")
    print(f"\nconcurrent / sequential throughput: {rows['concurrent'][2] / rows['sequential'][2]:.2f}x")


if __name__ == "__main__":
    main()
