"""Translate a text dataset or a folder of recordings on a Ray cluster (``pip install 'seamless-mlx[ray]'``).

    python examples/ray_translate.py sentences.txt --src-lang eng --tgt-lang fra --out translated/
    python examples/ray_translate.py recordings/ --tgt-lang fra --out translated/ --workers 4

A ``.txt`` file (or a folder of them) is read with ``ray.data.read_text``: one row per line.  A
folder of audio files becomes one row per file: its path (every worker must see the folder, e.g.
on shared storage), or with ``--as-bytes`` the file's bytes read by ``ray.data.read_binary_files``
(any storage Ray reads, ``s3://...`` included; the workers decode them).  Each worker loads the model once (``seamless_mlx.ray.Translator``) and
translates its batches; the rows come back in input order and are written as Parquet, a bad row
with its ``error`` filled in instead of failing the job.  Without ``--address`` Ray starts on
this machine.
"""

import argparse
import sys
from pathlib import Path

import seamless_mlx  # noqa: F401  (before anything imports mlx: it picks the fast CPU BLAS)
import ray
from ray.data import DataContext

from seamless_mlx.api import AUDIO_EXTENSIONS
from seamless_mlx.ray import Translator

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("source", help="a .txt file / folder of .txt files (one sentence a line) or a folder of audio files")
p.add_argument("--tgt-lang", required=True)
p.add_argument("--src-lang", default=None, help="language of text rows")
p.add_argument("--model", default="facebook/seamless-m4t-v2-large", help="converted/transformers folder or hub id")
p.add_argument("--out", default="translated", help="output folder (Parquet files)")
p.add_argument("--workers", type=int, default=1, help="model replicas (each holds a copy of the weights)")
p.add_argument("--cpus-per-worker", type=int, default=1)
p.add_argument("--batch-size", type=int, default=16, help="rows decoded together in a worker")
p.add_argument("--max-new-tokens", type=int, default=None)
p.add_argument("--address", default=None, help="a running Ray cluster (default: start one here)")
p.add_argument("--as-bytes", action="store_true", help="send the recordings' bytes to the workers, not their paths")
args = p.parse_args()

src = Path(args.source)
audio = args.as_bytes or (src.is_dir() and any(f.suffix.lower() in AUDIO_EXTENSIONS for f in src.iterdir()))
if args.address:
    ray.init(address=args.address)
else:
    # one CPU more than the model workers hold, for the read and write tasks around them
    ray.init(num_cpus=args.workers * args.cpus_per_worker + 1, include_dashboard=False)
DataContext.get_current().execution_options.preserve_order = True

column = "text"
if args.as_bytes:
    ds = ray.data.read_binary_files(args.source, include_paths=True, file_extensions=[e.lstrip(".") for e in AUDIO_EXTENSIONS])
    column = "bytes"
elif audio:
    files = sorted(str(f.resolve()) for f in src.iterdir() if f.suffix.lower() in AUDIO_EXTENSIONS)
    ds = ray.data.from_items([{"text": f} for f in files])
else:
    ds = ray.data.read_text(str(src)).filter(lambda row: bool(row["text"].strip()))

options = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}
ds = ds.map_batches(
    Translator,
    fn_constructor_kwargs=dict(model=args.model, tgt_lang=args.tgt_lang, src_lang=args.src_lang,
                               batch_size=args.batch_size, speech_input=audio, source_column=column, **options),
    batch_size=args.batch_size * 4, batch_format="numpy", num_cpus=args.cpus_per_worker,
    compute=ray.data.ActorPoolStrategy(size=args.workers),
)
if args.as_bytes:
    ds = ds.drop_columns(["bytes"])  # the recordings themselves need not be written again
ds.write_parquet(args.out)
failed = ray.data.read_parquet(args.out).filter(lambda row: bool(row["error"])).count()
print(f"wrote {args.out}/ ({failed} rows failed; see their 'error' column)", file=sys.stderr)
