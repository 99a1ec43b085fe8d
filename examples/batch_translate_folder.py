"""Translate every audio file (or .txt file) of a folder with the high-level API; the model loads once.

    python examples/batch_translate_folder.py recordings/ --tgt-lang fra --out translated/
    python examples/batch_translate_folder.py recordings/ --tgt-lang fra --speech --out dubbed/
    python examples/batch_translate_folder.py notes/ --src-lang eng --tgt-lang deu --out notes_de/
"""

import argparse
import sys
from pathlib import Path

from seamless_mlx.api import AUDIO_EXTENSIONS, translate

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("folder")
p.add_argument("--model", default="facebook/seamless-m4t-v2-large", help="converted/transformers folder or hub id")
p.add_argument("--tgt-lang", required=True)
p.add_argument("--src-lang", default=None, help="needed for .txt files")
p.add_argument("--speech", action="store_true", help="write translated speech (.wav) as well as text")
p.add_argument("--out", default="translated")
p.add_argument("--max-new-tokens", type=int, default=None)
p.add_argument("--quantize", type=int, choices=(4, 8), default=None)
args = p.parse_args()

out_dir = Path(args.out)
out_dir.mkdir(parents=True, exist_ok=True)
files = sorted(f for f in Path(args.folder).iterdir() if f.suffix.lower() in AUDIO_EXTENSIONS | {".txt"})
failed = 0
for f in files:
    source = f.read_text(encoding="utf-8") if f.suffix.lower() == ".txt" else str(f)
    try:
        r = translate(source, tgt_lang=args.tgt_lang, src_lang=args.src_lang, model=args.model,
                      speech=args.speech, max_new_tokens=args.max_new_tokens, quantize=args.quantize)
    except ValueError as e:  # unreadable file, missing --src-lang, ...: report and go on
        print(f"skip {f.name}: {e}", file=sys.stderr)
        failed += 1
        continue
    r.save(out_dir / f"{f.stem}.{args.tgt_lang}.txt")
    if args.speech:
        r.save(out_dir / f"{f.stem}.{args.tgt_lang}.wav")
    print(f"{f.name}: {r.text}")
print(f"{len(files) - failed}/{len(files)} files translated into {out_dir}", file=sys.stderr)
sys.exit(1 if failed else 0)
