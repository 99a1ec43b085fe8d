"""Native MLX convolutions vs seamless_mlx.cpu.conv's GEMM decompositions (and torch, if installed).

    python benchmarks/conv_speed.py            # the two vocoder-sized layers
    python benchmarks/conv_speed.py --hifigan  # also v2-large's HiFi-GAN on 150 frames (~3 s of audio)

Times are medians over ``--repeats`` runs, in milliseconds, on MLX's default device.  torch is
imported only after every MLX timing: measured here, merely loading torch in the process slowed
MLX's MKL GEMMs about 6x (thread-pool contention), which would make the MLX figures meaningless.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import seamless_mlx  # noqa: E402  (loads the fast BLAS before mlx.core)
import mlx.core as mx  # noqa: E402

from seamless_mlx import cpu  # noqa: E402
from seamless_mlx.cpu import conv  # noqa: E402

def median_ms(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def mlx_ms(fn, repeats):
    return median_ms(lambda: mx.eval(fn()), repeats)


def torch_ms(make, repeats):
    try:
        import torch
    except ImportError:  # torch is only a point of comparison
        return None
    fn = make(torch)
    with torch.no_grad():
        return median_ms(fn, repeats)


def report(name, native, matmul):
    print(f"{name:52s} native {native:8.1f} ms  matmul {matmul:7.1f} ms  ({native / matmul:5.1f}x)", flush=True)


def bench_dilated(repeats):
    B, T, C, K, d = 1, 8000, 128, 11, 5
    pad = d * (K - 1) // 2
    x = mx.random.normal((B, T, C))
    w = mx.random.normal((C, K, C)) * 0.03
    b = mx.zeros((C,))
    fn = lambda: conv.conv1d(x, w, b, 1, pad, d)  # noqa: E731
    native = lambda: mx.conv1d(x, w, padding=pad, dilation=d) + b  # noqa: E731

    def make_torch(torch):
        xt, wt, bt = torch.randn(B, C, T), torch.randn(C, C, K) * 0.03, torch.zeros(C)
        return lambda: torch.nn.functional.conv1d(xt, wt, bt, padding=pad, dilation=d)

    name = f"conv1d T={T} C={C} K={K} dilation={d}"
    report(name, mlx_ms(native, repeats), mlx_ms(fn, repeats))
    return name, make_torch


def bench_transposed(repeats):
    B, T, Cin, Cout, K, s = 1, 500, 512, 256, 11, 5
    pad = (K - s) // 2
    x = mx.random.normal((B, T, Cin))
    w = mx.random.normal((Cout, K, Cin)) * 0.02
    b = mx.zeros((Cout,))
    fn = lambda: conv.conv_transpose1d(x, w, b, s, pad)  # noqa: E731
    native = lambda: mx.conv_transpose1d(x, w, stride=s, padding=pad) + b  # noqa: E731

    def make_torch(torch):
        xt, wt, bt = torch.randn(B, Cin, T), torch.randn(Cin, Cout, K) * 0.02, torch.zeros(Cout)
        return lambda: torch.nn.functional.conv_transpose1d(xt, wt, bt, stride=s, padding=pad)

    name = f"conv_transpose1d T={T} {Cin}->{Cout} K={K} stride={s}"
    report(name, mlx_ms(native, repeats), mlx_ms(fn, repeats))
    return name, make_torch


def bench_hifigan(repeats):
    from seamless_mlx.config import ModelConfig
    from seamless_mlx.vocoder import HifiGan

    cfg = ModelConfig()  # v2-large shapes
    net = HifiGan(cfg)
    mx.eval(net.parameters())
    dim = cfg.unit_embed_dim + cfg.lang_embed_dim + cfg.spkr_embed_dim
    frames = mx.random.normal((1, 150, dim))
    fn = lambda: net(frames)  # noqa: E731
    native = mlx_ms(fn, 1)
    cpu.accelerate(net)
    report("v2-large HiFi-GAN, 150 frames -> 48000 samples", native, mlx_ms(fn, repeats))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hifigan", action="store_true")
    args = parser.parse_args()
    print(f"device {mx.default_device()}, BLAS {seamless_mlx.cpu.blas.loaded or 'bundled'}")
    references = [bench_dilated(args.repeats), bench_transposed(args.repeats)]
    if args.hifigan:
        bench_hifigan(args.repeats)
    for name, make_torch in references:
        ms = torch_ms(make_torch, args.repeats)
        if ms is not None:
            print(f"{name:52s} torch  {ms:8.1f} ms", flush=True)


if __name__ == "__main__":
    main()
