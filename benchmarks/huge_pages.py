"""glibc's ``glibc.malloc.hugetlb=1`` tunable on and off, in alternating process pairs.

    python benchmarks/huge_pages.py MODEL_FOLDER [--pairs 6]

Each process loads MODEL_FOLDER, then reports the load time, the best of 3 T2TT calls (32 forced
tokens) and of 3 S2TT calls on 10 s of synthetic audio (4 tokens), and its RSS and
``AnonHugePages`` (huge pages in use) from ``/proc/self/smaps_rollup``.  Pairs alternate which
arm runs first.  Needs glibc >= 2.35 and THP in ``madvise`` mode to make a difference.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

TUNABLE = "glibc.malloc.hugetlb=1"

WORKER = r"""
import json, os, sys, time
import numpy as np
import mlx.core as mx
import seamless_mlx

t = time.perf_counter()
model, proc = seamless_mlx.load(sys.argv[1])
mx.eval(model.parameters())
res = {"load_s": time.perf_counter() - t}
text = proc(text="The quick brown fox jumps over the lazy dog near the river bank today.", src_lang="eng",
            return_tensors="mlx")
sr = 16000
tt = np.arange(10 * sr) / sr
wav = 0.3 * np.sin(2 * np.pi * 200 * tt) * (1 + 0.5 * np.sin(2 * np.pi * 3 * tt))
wav = (wav + 0.01 * np.random.default_rng(0).standard_normal(tt.size)).astype(np.float32)
speech = proc(audios=wav, sampling_rate=sr, return_tensors="mlx")

def run(inputs, tokens):
    out = model.generate(**inputs, tgt_lang="fra", generate_speech=False, min_new_tokens=tokens, max_new_tokens=tokens)
    mx.eval(out[0] if isinstance(out, (tuple, list)) else out.sequences)

for name, inputs, tokens in (("t2tt_s", text, 32), ("s2tt10_s", speech, 4)):
    run(inputs, tokens)
    times = []
    for _ in range(3):
        t = time.perf_counter(); run(inputs, tokens); times.append(time.perf_counter() - t)
    res[name] = min(times)
with open("/proc/self/smaps_rollup") as f:
    for line in f:
        if line.startswith(("Rss:", "AnonHugePages:")):
            key, value = line.split(":")
            res[key + "_mb"] = int(value.split()[0]) // 1024
print(json.dumps(res))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--pairs", type=int, default=6)
    args = ap.parse_args()
    env_off = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    arms = {"off": env_off, "on": {**env_off, "GLIBC_TUNABLES": TUNABLE}}
    results = {"off": [], "on": []}
    for i in range(args.pairs):
        for arm in ("off", "on") if i % 2 == 0 else ("on", "off"):
            out = subprocess.run([sys.executable, "-c", WORKER, args.model], env=arms[arm], capture_output=True,
                                 text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            results[arm].append(res)
            print(json.dumps({"arm": arm, **res}), flush=True)
    for key in ("load_s", "t2tt_s", "s2tt10_s"):
        off, on = (statistics.median(r[key] for r in results[a]) for a in ("off", "on"))
        print(f"{key}: median off {off:.2f}, on {on:.2f} ({(on / off - 1) * 100:+.0f} %)")


if __name__ == "__main__":
    main()
