"""MLX's CPU BLAS in each import order, with and without torch: fresh processes, alternating.

    python benchmarks/import_orders.py MODEL_FOLDER [--rounds 2] [--other-tree PATH]

Each process imports the modules in one order, then reports the best of 20 512x512 fp32 MLX
GEMMs, the best of 2 16-token T2TT calls on MODEL_FOLDER (after a warm-up call), and which
library MLX's ``cblas_sgemm`` and MKL's threading layer ended up with.  ``--other-tree`` runs
each order a second time with another checkout's ``seamless_mlx`` on PYTHONPATH (before/after).
"""

import argparse
import json
import os
import subprocess
import sys

ORDERS = ["seamless_mlx,mlx.core", "mlx.core,seamless_mlx", "torch,seamless_mlx", "seamless_mlx,torch"]
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r"""
import importlib, json, sys, time, warnings
warnings.simplefilter("ignore")
for name in sys.argv[1].split(","):
    importlib.import_module(name)
import mlx.core as mx
import seamless_mlx

def best(fn, n):
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return min(times)

x, y = mx.random.normal((512, 512)), mx.random.normal((512, 512))
gemm = best(lambda: mx.eval(x @ y), 20)
model, proc = seamless_mlx.load(sys.argv[2])
text = proc(text="The quick brown fox jumps over the lazy dog near the river bank today.", src_lang="eng",
            return_tensors="mlx")

def t2tt():
    out = model.generate(**text, tgt_lang="fra", generate_speech=False, min_new_tokens=16, max_new_tokens=16)
    mx.eval(out[0] if isinstance(out, (tuple, list)) else out.sequences)

call = best(t2tt, 2)
with open("/proc/self/maps") as f:
    maps = f.read()
layer = next((n for n in ("intel_thread", "gnu_thread", "sequential") if f"libmkl_{n}" in maps), "-")
blas = "mkl" if "libmkl_rt" in maps else "reference"
print(json.dumps({"order": sys.argv[1], "gemm_ms": round(gemm * 1e3, 2), "t2tt16_s": round(call, 2),
                  "mkl_layer": layer, "blas_mapped": blas}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--other-tree", default=None, help="another checkout to compare with (e.g. the branch's start)")
    args = ap.parse_args()
    trees = [("this", HERE)] + ([("other", os.path.abspath(args.other_tree))] if args.other_tree else [])
    for r in range(args.rounds):
        for order in ORDERS:
            for name, tree in trees if r % 2 == 0 else trees[::-1]:
                env = {**os.environ, "PYTHONPATH": tree}
                # cwd=tree: ``python -c`` puts the working folder first on sys.path
                out = subprocess.run([sys.executable, "-c", WORKER, order, args.model], env=env, cwd=tree,
                                     capture_output=True, text=True)
                line = out.stdout.strip().splitlines()[-1] if out.returncode == 0 else out.stderr.strip()[-300:]
                print(json.dumps({"tree": name, **json.loads(line)}) if out.returncode == 0 else line, flush=True)


if __name__ == "__main__":
    main()
