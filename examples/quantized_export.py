"""Export a 4- or 8-bit quantized MLX copy of a model, then translate with it.

    python examples/quantized_export.py --model facebook/seamless-m4t-v2-large --bits 4 --out m4t-v2-q4
    seamless-mlx translate "Hello" --src-lang eng --tgt-lang fra --model m4t-v2-q4
"""

import argparse
import time
from pathlib import Path

from seamless_mlx.api import get_model
from seamless_mlx.convert import convert

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--model", default="facebook/seamless-m4t-v2-large", help="transformers folder or hub id")
p.add_argument("--bits", type=int, choices=(4, 8), default=4)
p.add_argument("--out", default=None, help="output folder (default: <model name>-q<bits>)")
p.add_argument("--force", action="store_true")
args = p.parse_args()

out = Path(args.out or f"{Path(args.model).name}-q{args.bits}")
t0 = time.time()
convert(args.model, out, quantize=True, q_bits=args.bits, q_group_size=64, force=args.force)
size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
print(f"wrote {out} ({size / 2**20:.1f} MiB of weights) in {time.time() - t0:.1f} s")

model, processor = get_model(str(out), "t2tt")
inputs = processor(text="Hello, how are you?", src_lang="eng", return_tensors="mlx")
ids = model.generate(**inputs, tgt_lang="fra", max_new_tokens=32).sequences
print("check:", processor.decode(ids[0].tolist(), skip_special_tokens=True))
