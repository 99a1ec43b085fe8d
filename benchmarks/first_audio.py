"""Time to first audio: streamed T2ST and S2ST (``stream_generate(..., generate_speech=True)``)
against the time to the last text token and the total, and against one ``generate`` call.

    python benchmarks/first_audio.py                          # benchmarks/.cache/mlx-fp32, 32 tokens
    python benchmarks/first_audio.py --folder /work/bench/mlx-fp32 --repeats 2

The model (``SeamlessM4Tv2Model``, both tasks from one load) runs in a fresh process that never
imports torch.  Inputs and the forced text length (``min_new_tokens = max_new_tokens``) are
``benchmarks/_worker.py``'s.  Per row: one warm-up stream, then ``--repeats`` rounds that
alternate one stream and one ``generate`` call (so machine load drifts hit both alike); the best
of each is kept.  Times run from the call (features already made) to when the stream hands over
the last text token, the first piece of audio (evaluated), and its end.  The target is first
audio within 1.3x the time to the last text token: T2U and the first vocoder window are all
that may come between.  ``benchmarks/run.py`` runs it by default (``--no-first-audio`` skips).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _worker import ROWS, SR, TGT, length_kwargs, source_ids, waveform  # noqa: E402

SPEECH_ROWS = ("t2st", "s2st-10s")
TARGET = 1.3


def measure(folder, rows=SPEECH_ROWS, tokens: int = 32, repeats: int = 2):
    """Rows of timings (seconds) for each speech row in this process (MLX only)."""
    import seamless_mlx as sm  # first: preloads the fast BLAS before mlx.core

    import mlx.core as mx
    from seamless_mlx import SeamlessM4TFeatureExtractor

    model = sm.SeamlessM4Tv2Model.from_pretrained(str(folder))
    kw = dict(tgt_lang=TGT, **length_kwargs(True, tokens))
    out = []
    for row in rows:
        _, kind, seconds = ROWS[row]
        if kind == "text":
            inputs = {"input_ids": mx.array(source_ids())}
        else:
            f = SeamlessM4TFeatureExtractor()(waveform(seconds), sampling_rate=SR, return_tensors="mlx")
            inputs = {"input_features": f["input_features"], "attention_mask": f["attention_mask"]}

        def stream():
            t0 = time.perf_counter()
            marks, n_tokens, samples, pieces = {}, 0, 0, 0
            for chunk in model.stream_generate(None, **inputs, generate_speech=True, **kw):
                now = time.perf_counter() - t0
                if chunk.token_id is not None:
                    n_tokens += 1
                    marks["last_text_s"] = now
                if chunk.waveform is not None:
                    marks.setdefault("first_audio_s", now)
                    samples += chunk.waveform.shape[0]
                    pieces += 1
            marks["stream_total_s"] = time.perf_counter() - t0
            return marks, n_tokens, samples, pieces

        def one_call():
            t0 = time.perf_counter()
            wav, lengths = model.generate(**inputs, generate_speech=True, **kw)
            mx.eval(wav, lengths)
            return time.perf_counter() - t0, int(lengths[0].item())

        stream()  # warm-up
        best, generate_s = {}, []
        for _ in range(repeats):
            marks, n_tokens, samples, pieces = stream()
            for k, v in marks.items():
                best[k] = min(best.get(k, v), v)
            g, g_samples = one_call()
            generate_s.append(g)
        if n_tokens != tokens or samples != g_samples:
            raise RuntimeError(f"{row}: streamed {n_tokens} tokens / {samples} samples, generate {g_samples} samples")
        out.append({"row": row, "tokens": n_tokens, "audio_s": samples / SR, "pieces": pieces, **best,
                    "generate_s": min(generate_s), "ratio": best["first_audio_s"] / best["last_text_s"],
                    "load_average": os.getloadavg()[0]})
    return out


def run(folder, tokens: int = 32, repeats: int = 2, rows=SPEECH_ROWS, timeout: int = 1500):
    """:func:`measure` in a fresh process; its rows, or ``[{"error": ...}]``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--folder", str(folder), "--tokens", str(tokens),
           "--repeats", str(repeats), "--rows", ",".join(rows), "--json-line"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"error": f"timed out after {timeout} s"}]
    if p.returncode != 0:
        return [{"error": (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]}]
    return json.loads(p.stdout.strip().splitlines()[-1])


def fmt(rows) -> str:
    """Markdown table of :func:`measure`'s rows."""
    lines = ["| task | tokens | audio | last text token | first audio | first audio / last text | stream total | "
             "generate (one shot) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r.get('row', '?')} | failed: {r['error']} |||||||")
            continue
        ok = "" if r["ratio"] <= TARGET else f" (target {TARGET}x missed)"
        lines.append(f"| {r['row']} | {r['tokens']} | {r['audio_s']:.1f} s | {r['last_text_s']:.2f} s | "
                     f"{r['first_audio_s']:.2f} s | {r['ratio']:.3f}x{ok} | {r['stream_total_s']:.2f} s | "
                     f"{r['generate_s']:.2f} s |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", default=str(HERE / ".cache" / "mlx-fp32"), help="converted full-size MLX folder")
    p.add_argument("--tokens", type=int, default=32, help="forced number of new text tokens")
    p.add_argument("--repeats", type=int, default=2, help="alternating stream / generate rounds per row")
    p.add_argument("--rows", default=",".join(SPEECH_ROWS), help="comma list of " + ", ".join(SPEECH_ROWS))
    p.add_argument("--json-line", action="store_true", help="print the rows as one JSON line (for run.py)")
    args = p.parse_args()
    load = os.getloadavg()[0]
    rows = measure(args.folder, args.rows.split(","), args.tokens, args.repeats)
    if args.json_line:
        print(json.dumps(rows))
        return
    out = HERE / "results" / f"first-audio-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"folder": args.folder, "load_average_before": load, "rows": rows}, indent=2))
    print(fmt(rows))
    print(f"\nload average {load:.2f} before, {os.getloadavg()[0]:.2f} after; wrote {out}")


if __name__ == "__main__":
    main()
