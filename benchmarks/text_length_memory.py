"""Peak memory of translation against the length of the input: one line of text, or a recording.

    python benchmarks/text_length_memory.py [--chars 1000,10000,100000] [--model FOLDER] [--whole]
    python benchmarks/text_length_memory.py --chars 1000 --max-new-tokens 254      # the tiny model's limit
    python benchmarks/text_length_memory.py --chars "" --seconds 60,600            # speech to text

A line longer than ``seamless_mlx.segment.DEFAULT_MAX_CHARS`` is split into its sentences and
translated in batches of ``api.TEXT_BATCH``, so the peak should not depend on the length of the
text: it is the loaded model plus one batch.  ``--whole`` translates each line as one piece
instead (what happened before the split), whose attention grows with the square of the length:
keep ``--chars`` small with it (22,000 characters took 3.7 GB on the tiny model).

Without ``--model`` the tiny random-weight checkpoint of the tests is built (torch and
transformers needed, once) into ``benchmarks/.cache/tiny-mlx``.  Each length runs in its own
process; the peak is that process's ``VmHWM`` (see ``_worker.peak_rss``).  Random weights never
emit the end token, so every sentence decodes ``--max-new-tokens`` tokens (default: the
checkpoint's own limit): the worst case for time and for the decoder's cache.  ``--seconds``
measures speech-to-text on a synthetic recording (tone bursts between pauses), which is cut at
pauses into pieces of at most 15 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _worker import peak_rss  # no torch or mlx import at module level

HERE = Path(__file__).resolve().parent


def text(n_chars: int) -> str:
    """One line of English sentences, ``n_chars`` characters long."""
    out, i = [], 0
    while sum(map(len, out)) + len(out) < n_chars:
        out.append(f"This is sentence number {i}, and it says a little more about the weather.")
        i += 1
    return " ".join(out)[:n_chars]


def recording(seconds: float):
    """Tone bursts of 1.5-5 s between 0.5-1 s pauses, 16 kHz float32 (written in place: the
    recording itself, 64 KB per second, is the only memory that grows with its length)."""
    import numpy as np

    rng = np.random.default_rng(0)
    out = np.zeros(int(seconds * 16000), np.float32)
    n = 0
    while n < len(out):
        k = min(int(rng.uniform(1.5, 5.0) * 16000), len(out) - n)
        out[n : n + k] = 0.2 * np.sin(2 * np.pi * rng.uniform(120, 800) * np.arange(k, dtype=np.float32) / 16000)
        n += k + int(rng.uniform(0.5, 1.0) * 16000)
    return out


def worker(folder: str, size: str, whole: str, max_new_tokens: str):
    from seamless_mlx import api
    from seamless_mlx.segment import DEFAULT_MAX_CHARS

    limit = int(max_new_tokens) if max_new_tokens != "0" else None
    if size.endswith("s"):
        api.get_model(folder, "s2tt")
        rss_loaded = peak_rss()
        audio = recording(float(size[:-1]))
        t = time.perf_counter()
        r = api.translate(audio, "eng", model=folder, max_new_tokens=limit)
        return {"input": size, "pieces": len(r.segments), "seconds": time.perf_counter() - t,
                "rss_after_load": rss_loaded, "peak_rss": peak_rss()}
    src = text(int(size))
    api.get_model(folder, "t2tt")
    rss_loaded = peak_rss()
    max_chars = len(src) + 1 if whole == "1" else DEFAULT_MAX_CHARS
    t = time.perf_counter()
    r = api.translate(src, "fra", src_lang="eng", model=folder, max_chars=max_chars, max_new_tokens=limit)
    return {"input": f"{len(src):,} characters", "pieces": len(r.segments), "seconds": time.perf_counter() - t,
            "rss_after_load": rss_loaded, "peak_rss": peak_rss()}


def tiny_model() -> Path:
    folder = HERE / ".cache" / "tiny-mlx"
    if not (folder / "config.json").exists():
        sys.path.insert(0, str(HERE.parent / "tests"))
        from checkpoints import build_checkpoint

        from seamless_mlx.convert import convert

        hf, _, _ = build_checkpoint(HERE / ".cache" / "tiny-hf", seed=0)
        convert(hf, folder, force=folder.exists())
    return folder


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chars", default="1000,10000,100000")
    p.add_argument("--seconds", default="", help="also recordings of these lengths (speech to text)")
    p.add_argument("--model", default=None, help="a converted folder (default: the tests' tiny checkpoint)")
    p.add_argument("--whole", action="store_true", help="translate each line as one piece (no sentence split)")
    p.add_argument("--max-new-tokens", type=int, default=0, help="0: the checkpoint's generation config")
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    folder = Path(args.model) if args.model else tiny_model()
    rows = []
    sizes = [n for n in args.chars.split(",") if n] + [f"{s}s" for s in args.seconds.split(",") if s]
    for n in sizes:
        print(f"{n} ...", flush=True)
        r = subprocess.run([sys.executable, __file__, "--worker", str(folder), n, "1" if args.whole else "0",
                            str(args.max_new_tokens)], capture_output=True, text=True)
        if r.returncode != 0:
            last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
            rows.append({"input": n, "error": last})
        else:
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    print(f"\nmodel: {folder}{' (whole lines)' if args.whole else ''}, max_new_tokens {args.max_new_tokens or 'default'}\n")
    print("| input | pieces | seconds | RSS after load | peak RSS | growth over the loaded model |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['input']} | failed: {r['error']} | | | | |")
            continue
        print(f"| {r['input']} | {r['pieces']} | {r['seconds']:.1f} | {r['rss_after_load'] / 1e6:.0f} MB | "
              f"{r['peak_rss'] / 1e6:.0f} MB | {(r['peak_rss'] - r['rss_after_load']) / 1e6:.0f} MB |")
    (HERE / "results").mkdir(exist_ok=True)
    name = f"text_length_memory{'_whole' if args.whole else ''}_{int(time.time())}.json"
    (HERE / "results" / name).write_text(json.dumps({"model": str(folder), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
