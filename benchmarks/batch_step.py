"""Where a batched decode step spends its time on the CPU (issue 21's batch-16 targets).

Two parts:

* ``--gemm``: the decoder's products at 1, 4 and 16 rows (v2-large shapes: the fused q/k/v
  1024 -> 3072, 1024 -> 1024, the feed-forward 1024 -> 8192 and 8192 -> 1024, and the tied LM head
  1024 -> 256102), achieved GFLOP/s and weight-streaming GB/s for seamless-mlx's CPU route
  (``cpu.linear.linear``; also inside ``blas.many_rows`` where this CPU has that library, as
  searches over 4+ rows run), MLX's plain ``x @ W.T``, the transposed product ``(W @ x.T).T``, the
  same split by output rows over two CPU streams (what the one-row route does), and torch's
  ``F.linear`` (in its own process: torch next to MLX slows MKL).  Random weights; no checkpoint.
* ``--step FOLDER``: a converted full-size T2TT model: the decode step at batch 1 and 16 (sources
  of one sentence; at 16 also of three, ~100 tokens) with the cross-attention keys/values laid out
  as ``cpu.attention.Attention.kv`` caches them (contiguous) against the transposed views the plain
  ``layers.Attention.kv`` returns, on two caches alternating step by step; and the LM head alone.  Loads ~5 GB: run it under the
  shared lock, e.g. ``flock /work/bench/full.lock python benchmarks/batch_step.py --step
  /work/bench/mlx-fp32``.

Prints markdown tables; ``rows()`` returns the measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHAPES = [(1024, 3072), (1024, 1024), (1024, 8192), (8192, 1024), (1024, 256102)]  # (K in, N out)


def _median_s(fn, reps: int) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def _row(impl, m, k, n, seconds) -> dict:
    return {"impl": impl, "rows": m, "k": k, "n": n, "ms": seconds * 1e3,
            "gflops": 2 * m * k * n / seconds / 1e9, "weight_gbs": 4 * k * n / seconds / 1e9}


def mlx_gemm_rows(ms=(1, 4, 16)) -> list:
    import seamless_mlx  # noqa: F401  (first: binds MLX to the fast BLAS)
    import mlx.core as mx
    from seamless_mlx.cpu import blas, tuning
    from seamless_mlx.cpu.linear import linear
    from seamless_mlx.cpu.streams import on_streams, split_bounds

    out = []
    for k, n in SHAPES:
        w = mx.random.normal((n, k))
        halves = [w[a:b] for a, b in split_bounds(n, 2)]
        mx.eval(w, *halves)
        for m in ms:
            x = mx.random.normal((m, k))
            mx.eval(x)
            impls = {
                "seamless-mlx route": lambda: linear(x, w),
                "mlx x @ W.T": lambda: x @ w.T,
                "mlx (W @ x.T).T": lambda: (w @ x.T).T,
                "mlx (W @ x.T).T, 2 streams": lambda: on_streams(lambda h: (h @ x.T).T, [(h,) for h in halves], -1),
            }
            for name, f in impls.items():
                out.append(_row(name, m, k, n, _median_s(lambda f=f: mx.eval(f()), 5 if n > 100000 else 30)))
            if blas.many_rows_library():  # what a search over this many rows runs on (>= MANY_ROWS_MIN_ROWS)
                with blas.many_rows(tuning.CPU_CORES):
                    s = _median_s(lambda: mx.eval(linear(x, w)), 5 if n > 100000 else 30)
                out.append(_row("seamless-mlx route, many-row BLAS", m, k, n, s))
        del w, halves
    return out


def torch_gemm_rows(ms=(1, 4, 16)) -> list:
    import torch

    torch.set_num_threads(os.cpu_count())
    out = []
    for k, n in SHAPES:
        w = torch.randn(n, k)
        for m in ms:
            x = torch.randn(m, k)
            with torch.inference_mode():
                s = _median_s(lambda: torch.nn.functional.linear(x, w), 5 if n > 100000 else 30)
            out.append(_row("torch F.linear", m, k, n, s))
    return out


def step_rows(folder: str, cases=((1, 1), (16, 1), (16, 3)), steps: int = 8) -> list:
    """Decode-step milliseconds (medians) for each ``(batch, sentences per source)`` case, the two
    cross-attention layouts on two caches of the same sources, alternating step by step."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    import seamless_mlx  # noqa: F401
    import mlx.core as mx
    from checkpoints import CORPUS
    from seamless_mlx import SeamlessM4Tv2ForTextToText
    from seamless_mlx.processor import SeamlessM4TProcessor

    model = SeamlessM4Tv2ForTextToText.from_pretrained(folder)
    proc = SeamlessM4TProcessor.from_pretrained(folder)
    decoder = model.text_decoder
    out = []
    for b, per in cases:
        texts = [" ".join(CORPUS[(i + k) % len(CORPUS)] for k in range(per)) for i in range(b)]
        enc = proc(text=texts, src_lang="eng", padding=True, return_tensors="mlx")
        memory, mask = model.encode(input_ids=enc["input_ids"], attention_mask=enc.get("attention_mask"))
        mx.eval(memory)
        prefix = mx.array([[2, 3]] * b, dtype=mx.int32)
        arms = {}
        for layout in ("contiguous", "transposed"):
            cache = decoder.make_cache(memory)
            for _, cross in cache:
                if layout == "transposed":  # the plain layers.Attention.kv layout: [B, S, H, Dh] seen as [B, H, S, Dh]
                    cross.keys, cross.values = (mx.contiguous(t.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
                                                for t in (cross.keys, cross.values))
                mx.eval(cross.keys, cross.values)
            h = decoder(prefix, model.shared, cache, mask)
            tok = mx.argmax(model.lm_logits(h[:, -1, :]), axis=-1)[:, None]
            mx.eval(tok)
            arms[layout] = [cache, tok, []]
        head = []
        for _ in range(steps):
            for layout, arm in arms.items():
                cache, tok, ts = arm
                t = time.perf_counter()
                h = decoder(tok, model.shared, cache, mask)
                logits = model.lm_logits(h[:, -1, :])
                mx.eval(logits)
                ts.append(time.perf_counter() - t)
                arm[1] = mx.argmax(logits, axis=-1)[:, None]
                last = h[:, -1, :]
                mx.eval(last, arm[1])
                if layout == "contiguous":
                    t = time.perf_counter()
                    mx.eval(model.lm_logits(last))
                    head.append(time.perf_counter() - t)
        times = {f"step, {k} cross k/v": v[2] for k, v in arms.items()}
        times["LM head"] = head
        for what, ts in times.items():
            out.append({"batch": b, "what": what, "ms": sorted(ts)[len(ts) // 2] * 1e3,
                        "source_tokens": int(memory.shape[1]), "load": os.getloadavg()[0]})
        del arms
    return out


def gemm_table(rows) -> str:
    lines = ["| product (K -> N) | implementation | rows | ms | GFLOP/s | weights GB/s |", "|---|---|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (SHAPES.index((r["k"], r["n"])), r["rows"])):
        lines.append(f"| {r['k']} -> {r['n']} | {r['impl']} | {r['rows']} | {r['ms']:.2f} | {r['gflops']:.1f} | "
                     f"{r['weight_gbs']:.1f} |")
    return "\n".join(lines)


def step_table(rows) -> str:
    lines = ["| batch | source tokens | what | ms (median) |", "|---:|---:|---|---:|"]
    lines += [f"| {r['batch']} | {r['source_tokens']} | {r['what']} | {r['ms']:.0f} |" for r in rows]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gemm", action="store_true", help="the products at 1, 4 and 16 rows (no checkpoint)")
    p.add_argument("--step", metavar="FOLDER", help="a converted full-size model: the decode step (run under the lock)")
    p.add_argument("--rows", default="1,4,16")
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    ms = tuple(int(m) for m in args.rows.split(","))
    if args.torch_worker:
        print(json.dumps(torch_gemm_rows(ms)))
        return
    print(f"load average {os.getloadavg()[0]:.2f} (2 cores shared: read ratios within one run)")
    if args.gemm:
        torch_rows = subprocess.run([sys.executable, __file__, "--torch-worker", "--rows", args.rows],
                                    capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        print(gemm_table(mlx_gemm_rows(ms) + json.loads(torch_rows)))
    if args.step:
        print(step_table(step_rows(args.step)))
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
