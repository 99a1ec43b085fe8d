"""Batched throughput: sentences (T2TT) and 10 s clips (S2TT) per second at batch 1, 4 and 16,
seamless-mlx against transformers, on a random-weight checkpoint.

    python benchmarks/throughput.py --size tiny              # builds a tiny checkpoint: a smoke run
    python benchmarks/throughput.py --size quarter           # 512 wide, 6+6 text and 6 conformer layers
    python benchmarks/throughput.py --size full              # v2-large shapes (reuses run.py's 9 GB build)
    python benchmarks/throughput.py --size full --batches 1,16 --tasks t2tt --sentences 32

Same work on both sides: the same sentences (``tests/checkpoints.py``'s corpus, mixed lengths) or
clips, sorted by length and cut into batches the same way, padding included; every output is
forced to ``--tokens`` new tokens (``min_new_tokens = max_new_tokens``), which each worker checks.
The time runs from raw inputs (text, waveforms) to ids: tokenisation and features included.
seamless-mlx runs its batched path (``seamless_mlx.batch``: padded text encoder batches, speech
clips encoded one by one, decoder batched); transformers runs ``processor(..., padding=True)``
and ``generate`` on each batch.  Each framework x task is its own process (importing torch next
to MLX slows MKL), one warm-up batch, then one timed pass over all inputs.

Also times a 200-line document (``--document-lines``) end to end through ``translate_document``
(lines cut into sentences, sentences batched) against one ``translate`` call per line.

``--rounds N`` runs every worker N times, frameworks alternating, and keeps each batch size's best
(this VM's speed drifts 10-30 % within an hour, and not alike for both frameworks).

Writes benchmarks/results/throughput-<size>-<date>.json and prints a markdown table.
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
ROOT = HERE.parent
CACHE = HERE / ".cache"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

SR = 16000
# --size quarter: v2-large's vocabulary and heads, a quarter of its width-times-depth per stack
QUARTER = dict(
    vocab_size=256102, hidden_size=512, encoder_layers=6, decoder_layers=6, encoder_ffn_dim=2048,
    decoder_ffn_dim=2048, speech_encoder_layers=6, speech_encoder_intermediate_size=2048,
)


def log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def ensure_checkpoint(size: str) -> tuple:
    """``(transformers folder, converted MLX folder)`` for ``size``, built and converted once."""
    hf = CACHE / ("full-hf" if size == "full" else f"throughput-{size}-hf")
    mlx = CACHE / ("full-mlx-fp32" if size == "full" else f"throughput-{size}-mlx")
    if not (hf / "config.json").exists():
        kw = {"tiny": "", "quarter": f"full_size=True, overrides={QUARTER!r}",
              "full": "full_size=True, overrides={'vocab_size': 256102}"}[size]
        log(f"building the {size} random checkpoint in {hf} ...")
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); "
                        f"from checkpoints import build_checkpoint; build_checkpoint({str(hf)!r}, seed=0, {kw})"],
                       check=True)
    if not (mlx / "config.json").exists():
        log(f"converting to {mlx} ...")
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                        f"from seamless_mlx.convert import convert; convert({str(hf)!r}, {str(mlx)!r})"], check=True)
    return hf, mlx


def sentences(n: int):
    from checkpoints import CORPUS

    return [CORPUS[i % len(CORPUS)] for i in range(n)]


def clips(n: int, seconds: float):
    """``n`` different speech-like clips of ``seconds`` each (modulated tone + noise)."""
    import numpy as np

    out = []
    for k in range(n):
        rng = np.random.default_rng(k)
        t = np.arange(int(SR * seconds)) / SR
        f0 = 150 + 10 * k
        x = 0.3 * np.sin(2 * np.pi * f0 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(t.size)
        out.append(x.astype(np.float32))
    return out


def in_batches(items, lengths, b):
    order = sorted(range(len(items)), key=lambda i: lengths[i])
    return [[items[i] for i in order[k:k + b]] for k in range(0, len(order), b)]


# ----------------------------------------------------------------------------- workers


def mlx_worker(args) -> dict:
    import seamless_mlx  # noqa: F401  (first: picks the fast CPU BLAS)
    from seamless_mlx import SeamlessM4Tv2ForSpeechToText, SeamlessM4Tv2ForTextToText
    from seamless_mlx.batch import Job, run_jobs
    from seamless_mlx.processor import SeamlessM4TProcessor

    class IdsOnly(SeamlessM4TProcessor):
        """Stops at ids, as the transformers worker does: the random full-size checkpoint pairs the
        256102-token vocabulary with a small test tokenizer, which cannot decode most of its ids."""

        def decode(self, *a, **kw):
            return ""

    cls = SeamlessM4Tv2ForTextToText if args.task == "t2tt" else SeamlessM4Tv2ForSpeechToText
    model, proc = cls.from_pretrained(args.mlx), IdsOnly.from_pretrained(args.mlx)
    opts = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens}
    inputs = sentences(args.sentences) if args.task == "t2tt" else clips(args.clips, args.seconds)

    def make_jobs(items):
        jobs = []
        for x in items:
            if args.task == "t2tt":
                n = len(proc(text=x, src_lang="eng")["input_ids"])
                jobs.append(Job(model=model, processor=proc, tgt_lang="fra", gen_kwargs=opts, text=x, src_lang="eng", length=n))
            else:
                f = proc(audios=x, sampling_rate=SR, return_tensors="np")
                jobs.append(Job(model=model, processor=proc, tgt_lang="fra", gen_kwargs=opts,
                                features=f["input_features"][0], feature_mask=f["attention_mask"][0],
                                length=f["input_features"].shape[1]))
        return jobs

    def run(items, b):
        outs = run_jobs(make_jobs(items), batch_size=b)
        bad = [o for o in outs if isinstance(o, Exception) or len(o.ids) != args.tokens + 2]
        if bad:
            raise SystemExit(f"unexpected output: {bad[0]}")

    return time_batches(run, inputs, args)


def document_worker(args) -> dict:
    """A ``--document-lines`` document: one ``translate`` call per line (what a script does today)
    against ``translate_document`` (lines cut into sentences, sentences batched), end to end."""
    import seamless_mlx  # noqa: F401
    from seamless_mlx.api import get_model, translate
    from seamless_mlx.documents import translate_document

    lines = sentences(args.document_lines)
    text = "\n".join(lines)
    _, proc = get_model(args.mlx, "t2tt")
    if args.document_ids_only:  # the full-size random checkpoint's test tokenizer cannot decode its ids
        proc.decode = lambda ids, **_: f"[{len(ids)} ids]"
    kw = dict(tgt_lang="fra", src_lang="eng", model=args.mlx, max_new_tokens=args.document_tokens or args.tokens)
    translate_document("\n".join(lines[:4]), **kw)  # warm-up
    t0 = time.perf_counter()
    one = [translate(line, **kw).text for line in lines]
    t1 = time.perf_counter()
    batched = translate_document(text, batch_size=16, **kw)
    t2 = time.perf_counter()
    if len(batched.split("\n")) != len(one):
        raise SystemExit("the document lost or gained lines")
    log(f"  document of {len(lines)} lines: line by line {t1 - t0:.1f} s, batched {t2 - t1:.1f} s")
    return {"lines": len(lines), "line_by_line_s": t1 - t0, "batched_s": t2 - t1, "max_new_tokens": kw["max_new_tokens"]}


def hf_worker(args) -> dict:
    import torch
    from transformers import AutoProcessor, SeamlessM4Tv2ForSpeechToText, SeamlessM4Tv2ForTextToText

    torch.set_num_threads(os.cpu_count())
    cls = SeamlessM4Tv2ForTextToText if args.task == "t2tt" else SeamlessM4Tv2ForSpeechToText
    model, proc = cls.from_pretrained(args.hf).eval(), AutoProcessor.from_pretrained(args.hf)
    inputs = sentences(args.sentences) if args.task == "t2tt" else clips(args.clips, args.seconds)

    def run(items, b):
        if args.task == "t2tt":
            lengths = [len(proc(text=x, src_lang="eng")["input_ids"]) for x in items]
        else:
            lengths = [len(x) for x in items]
        for chunk in in_batches(items, lengths, b):
            if args.task == "t2tt":
                enc = proc(text=chunk, src_lang="eng", padding=True, return_tensors="pt")
            else:
                enc = proc(audios=chunk, sampling_rate=SR, return_tensors="pt")
            with torch.inference_mode():
                seq = model.generate(**enc, tgt_lang="fra", max_new_tokens=args.tokens, min_new_tokens=args.tokens)
            seq = seq[0] if isinstance(seq, tuple) else getattr(seq, "sequences", seq)
            if seq.shape[1] != args.tokens + 2:
                raise SystemExit(f"unexpected output length {seq.shape[1]}")

    return time_batches(run, inputs, args)


def time_batches(run, inputs, args) -> dict:
    from _worker import peak_rss

    out = {}
    for b in [int(x) for x in args.batches.split(",")]:
        run(inputs[:b], b)  # warm-up: one batch
        t0 = time.perf_counter()
        run(inputs, b)
        seconds = time.perf_counter() - t0
        out[str(b)] = {"seconds": seconds, "items_per_s": len(inputs) / seconds}
        log(f"  {args.worker} {args.task} batch {b}: {len(inputs) / seconds:.2f} items/s")
    return {"batches": out, "items": len(inputs), "peak_rss": peak_rss()}


# ----------------------------------------------------------------------------- driver


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=("tiny", "quarter", "full"), default="tiny")
    p.add_argument("--tasks", default="t2tt,s2tt")
    p.add_argument("--frameworks", default="mlx,transformers")
    p.add_argument("--batches", default="1,4,16")
    p.add_argument("--sentences", type=int, default=32, help="T2TT inputs per pass")
    p.add_argument("--clips", type=int, default=16, help="S2TT inputs per pass")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each S2TT clip")
    p.add_argument("--tokens", type=int, default=32, help="new tokens forced per output")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every framework x task this many times, alternating, and keep each batch size's best "
                        "(the VM's speed drifts 10-30 %% within an hour; all rounds go to the JSON)")
    p.add_argument("--document-lines", type=int, default=200,
                   help="also time a document of this many lines, batched vs one call per line (0: skip)")
    p.add_argument("--document-tokens", type=int, default=None,
                   help="max_new_tokens of the document's lines (default --tokens); random decoders rarely stop early")
    p.add_argument("--document-ids-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=("mlx", "transformers"), help=argparse.SUPPRESS)
    p.add_argument("--task", help=argparse.SUPPRESS)
    p.add_argument("--hf", help=argparse.SUPPRESS)
    p.add_argument("--mlx", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        if args.task == "document":
            res = document_worker(args)
        else:
            res = (mlx_worker if args.worker == "mlx" else hf_worker)(args)
        print(json.dumps(res))
        return

    hf, mlx = ensure_checkpoint(args.size)
    results = {"size": args.size, "tokens": args.tokens, "sentences": args.sentences, "clips": args.clips,
               "seconds": args.seconds, "cpus": os.cpu_count(), "rows": {}}
    results["rounds"] = []
    for task in args.tasks.split(","):
        for k in range(max(1, args.rounds)):
            for fw in args.frameworks.split(","):
                cmd = [sys.executable, __file__, "--worker", fw, "--task", task, "--hf", str(hf), "--mlx", str(mlx)]
                cmd += ["--batches", args.batches, "--sentences", str(args.sentences), "--clips", str(args.clips),
                        "--seconds", str(args.seconds), "--tokens", str(args.tokens)]
                env = dict(os.environ, PYTHONPATH=str(ROOT))
                r = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if r.returncode != 0:
                    log(r.stderr[-2000:])
                    raise SystemExit(f"{fw} {task} failed")
                got = json.loads(r.stdout.strip().splitlines()[-1])
                results["rounds"].append({"task": task, "framework": fw, "round": k, **got})
                results["rows"][f"{task}/{fw}"] = _best(results["rows"].get(f"{task}/{fw}"), got)
                log(f"{task} {fw} round {k + 1}: done")
    if args.document_lines and "mlx" in args.frameworks.split(","):
        r = subprocess.run([sys.executable, __file__, "--worker", "mlx", "--task", "document", "--mlx", str(mlx),
                            "--document-lines", str(args.document_lines), "--tokens", str(args.tokens),
                            "--document-tokens", str(args.document_tokens or args.tokens)]
                           + (["--document-ids-only"] if args.size == "full" else []),
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        if r.returncode != 0:
            log(r.stderr[-2000:])
            raise SystemExit("document run failed")
        results["document"] = json.loads(r.stdout.strip().splitlines()[-1])
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"throughput-{args.size}-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2))
    print(table(results))
    if "document" in results:
        d = results["document"]
        print(f"\n{d['lines']}-line document (seamless-mlx, at most {d.get('max_new_tokens')} new tokens a line): one call per line {d['line_by_line_s']:.1f} s, "
              f"translate_document (batch 16) {d['batched_s']:.1f} s: {d['line_by_line_s'] / d['batched_s']:.2f}x")
    log(f"wrote {path}")


def _best(kept, new) -> dict:
    """Per batch size the faster of two runs of one framework x task; the larger peak RSS."""
    if kept is None:
        return new
    out = dict(new, peak_rss=max(kept["peak_rss"], new["peak_rss"]), batches={})
    for b in new["batches"]:
        old = kept["batches"].get(b)
        out["batches"][b] = old if old and old["items_per_s"] >= new["batches"][b]["items_per_s"] else new["batches"][b]
    return out


def table(res) -> str:
    unit = {"t2tt": "sentences/s", "s2tt": f"{res['seconds']:g} s clips/s"}
    lines = ["| task | framework | batch | items/s | vs own batch 1 | vs transformers | peak RSS |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for key, row in res["rows"].items():
        task, fw = key.split("/")
        own = row["batches"].get("1", {}).get("items_per_s")
        hf = res["rows"].get(f"{task}/transformers", {}).get("batches", {})
        for b, m in row["batches"].items():
            speed = m["items_per_s"]
            ref = hf.get(b, {}).get("items_per_s") if fw != "transformers" else None
            lines.append(f"| {task} ({unit[task]}) | {fw} | {b} | {speed:.2f} | "
                         f"{f'{speed / own:.2f}x' if own else '-'} | {f'{speed / ref:.2f}x' if ref else '-'} | "
                         f"{row['peak_rss'] / 2**30:.2f} GiB |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
