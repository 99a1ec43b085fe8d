"""Quantized export on a full-size (v2-large shapes) random checkpoint: size, memory, quality.

    python benchmarks/quantization.py                      # builds/reuses benchmarks/.cache/full-hf
    python benchmarks/quantization.py --hf-path PATH       # any transformers SeamlessM4T-v2 folder

For fp32 / bf16 / 8-bit / 4-bit (group size 64) it reports: folder size on disk; peak RSS of a
process that loads the task class and runs T2TT (SeamlessM4Tv2ForTextToText) and S2ST
(SeamlessM4Tv2ForSpeechToSpeech, 10 s of audio); and quality against fp32 —

* teacher-forced text decoder logits, 4 sources x 64 target tokens: top-1 agreement and relative
  error ``||l - l_fp32|| / ||l_fp32||`` (plus the median fp32 top-1/top-2 margin and the RMS logit
  error, which together say how often a random-weight model's near-ties must flip);
* T2U unit logits for the same texts and the *fp32* decoder states (so that only the T2U weights
  differ): top-1 agreement and relative error over the samples whose unit count is unchanged (a
  duration rounded the other way shifts every later unit), and how many kept their count;
* the vocoder's waveform for 200 fixed units: relative error when its length (set by the vocoder's
  duration predictor) is unchanged, else by how many samples it changed.

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
QUALITY_SAMPLES = 4  # sources
QUALITY_TOKENS = 64  # teacher-forced decoder positions per source


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


def _quality_inputs(i: int):
    """Source ids (20 tokens) and teacher-forced decoder input (start, language, then
    ``QUALITY_TOKENS - 2`` tokens) of quality sample ``i``."""
    import numpy as np

    rng = np.random.default_rng(100 + i)
    src = rng.integers(4, 200, size=(1, 20))  # ids the tiny tokenizer knows, so id_to_text hits
    tgt = np.concatenate([[[3, 0]], rng.integers(4, 200, size=(1, QUALITY_TOKENS - 2))], axis=1)
    return src, tgt


def worker_quality(folder: str, out: str, ref: str):
    """Text logits, T2U unit logits (fed the fp32 decoder states saved under ``ref``) and a
    vocoder waveform (fixed units) of every quality sample, saved as ``out.*.npy``."""
    import numpy as np

    import seamless_mlx as sm
    import mlx.core as mx
    from seamless_mlx import t2u as t2u_mod

    model = sm.SeamlessM4Tv2ForTextToSpeech.from_pretrained(folder)
    gen = model.generation_config
    lang = gen.text_decoder_lang_to_code_id[TGT]
    texts, units = [], []
    for i in range(QUALITY_SAMPLES):
        src, tgt = _quality_inputs(i)
        tgt[0, 1] = lang
        memory, mask = model.encode_text(mx.array(src))
        cache = model.text_decoder.make_cache(memory)
        h = model.text_decoder(mx.array(tgt), model.shared, cache, mask)
        texts.append(np.array(model.lm_logits(h).astype(mx.float32)[0]))
        states_path = f"{ref}.states{i}.npy"
        if not os.path.exists(states_path):  # the fp32 run: states of every token fed
            np.save(states_path, np.array(h.astype(mx.float32)))
        states = mx.array(np.load(states_path))
        seq = np.concatenate([tgt, [[gen.eos_token_id]]], axis=1)
        chars, counts = t2u_mod.char_inputs(seq, gen, gen.pad_token_id, gen.eos_token_id)
        m = t2u_mod.t2u_attention_mask(seq, gen.pad_token_id)
        dtype = model.text_decoder.layer_norm.weight.dtype  # norms are never quantized
        ul, _ = model.t2u_model(states.astype(dtype), mx.array(chars), mx.array(counts), mx.array(m))
        units.append(np.array(ul[0].astype(mx.float32)))
    np.save(out + ".text.npy", np.stack(texts))
    np.save(out + ".unit.npy", np.concatenate(units))  # positions differ per variant: compared per sample
    np.save(out + ".unitlen.npy", np.array([len(u) for u in units]))
    ids = np.random.default_rng(7).integers(4, model.config.unit_hifi_gan_vocab_size, size=(1, 200))
    wav, _ = model.vocoder(mx.array(ids), speaker_id=0, lang_id=gen.vocoder_lang_code_to_id.get(TGT, 0))
    np.save(out + ".wave.npy", np.array(wav.astype(mx.float32)[0]))


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
        from seamless_mlx import SeamlessM4TFeatureExtractor

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
    """Top-1 agreement and relative error of logits ``a`` against the reference ``b`` (same shape)."""
    import numpy as np

    agree = float((a.argmax(-1) == b.argmax(-1)).mean())
    rel = float(np.linalg.norm(a - b) / np.linalg.norm(b))
    return agree, rel


def margin(logits):
    """Gap between the best and second-best logit of every position."""
    import numpy as np

    top2 = np.sort(logits, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


def quality(work: Path, results: dict):
    """Fill each variant's quality figures in ``results`` from the saved fp32-relative outputs."""
    import numpy as np

    base_t = np.load(work / "fp32.text.npy")
    base_t = base_t.reshape(-1, base_t.shape[-1])
    base_u, base_n = np.load(work / "fp32.unit.npy"), np.load(work / "fp32.unitlen.npy")
    base_w = np.load(work / "fp32.wave.npy")
    results["fp32"]["text_margin_median"] = float(np.median(margin(base_t)))
    for name, res in results.items():
        if not (work / f"{name}.text.npy").exists():
            continue
        t = np.load(work / f"{name}.text.npy").reshape(base_t.shape)
        res["text_top1"], res["text_rel_err"] = compare(t, base_t)
        res["text_positions"] = len(t)
        res["text_err_rms"] = float(np.sqrt(((t - base_t) ** 2).mean()))
        # units: a changed duration shifts every later unit, so position-wise figures only mean
        # something for the samples whose unit count is unchanged; the rest are counted apart
        u, n = np.load(work / f"{name}.unit.npy"), np.load(work / f"{name}.unitlen.npy")
        starts, base_starts = np.cumsum([0, *n]), np.cumsum([0, *base_n])
        same = [i for i in range(len(n)) if n[i] == base_n[i]]
        a = np.concatenate([u[starts[i] : starts[i + 1]] for i in same]) if same else np.zeros((0, 1))
        b = np.concatenate([base_u[base_starts[i] : base_starts[i + 1]] for i in same]) if same else a
        if same:
            res["unit_top1"], res["unit_rel_err"] = compare(a, b)
        res["unit_positions"], res["unit_samples_same_length"] = int(len(a)), f"{len(same)}/{len(n)}"
        w = np.load(work / f"{name}.wave.npy")
        res["wave_length_change"] = int(len(w) - len(base_w))
        if len(w) == len(base_w):
            res["wave_rel_err"] = float(np.linalg.norm(w - base_w) / np.linalg.norm(base_w))


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
    ref = str(work / "fp32")
    for name in args.variants.split(","):
        folder = CACHE / f"mlx-{name}"
        if not (folder / "config.json").exists():
            print(f"[{name}] converting ...", flush=True)
            t = time.perf_counter()
            convert(hf, folder, force=True, **VARIANTS[name])
            print(f"[{name}] converted in {time.perf_counter() - t:.0f} s", flush=True)
        res = {"size_bytes": folder_size(folder)}
        if name == "fp32" or "fp32" in results:
            print(f"[{name}] quality pass ...", flush=True)
            run_worker("quality", str(folder), str(work / name), ref)
        if not args.no_rss:
            for task in args.rss_tasks.split(","):
                print(f"[{name}] {task} memory run ...", flush=True)
                run_worker("run", str(folder), task, str(work / f"{name}.{task}.json"))
                res[task] = json.loads((work / f"{name}.{task}.json").read_text())
        results[name] = res
    if "fp32" in results:
        quality(work, results)
    print("\n| variant | folder size | T2TT peak RSS | S2ST peak RSS | text top-1 | text rel. err | unit top-1 | unit rel. err | unit lengths kept | waveform rel. err |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        gb = lambda b: f"{b / 1e9:.2f} GB" if b else "-"
        print(
            f"| {name} | {gb(r['size_bytes'])} | {gb(r.get('t2tt', {}).get('peak_rss'))} | "
            f"{gb(r.get('s2st', {}).get('peak_rss'))} | {r.get('text_top1', float('nan')):.4f} | "
            f"{r.get('text_rel_err', float('nan')):.4f} | {r.get('unit_top1', float('nan')):.4f} | "
            f"{r.get('unit_rel_err', float('nan')):.4f} | {r.get('unit_samples_same_length', '-')} | "
            + (f"{r['wave_rel_err']:.4f} |" if "wave_rel_err" in r else
               f"length {r['wave_length_change']:+d} samples |" if "wave_length_change" in r else "- |")
        )
    if "text_positions" in results.get("fp32", {}):
        f = results["fp32"]
        print(f"\n{f['text_positions']} text positions ({QUALITY_SAMPLES} sources), {f['unit_positions']} unit positions; "
              f"median fp32 top-1/top-2 logit margin {f['text_margin_median']:.4f}; logit error RMS: "
              + ", ".join(f"{n} {r['text_err_rms']:.4f}" for n, r in results.items() if "text_err_rms" in r))
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "quantization.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
