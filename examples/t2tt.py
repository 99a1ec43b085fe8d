"""Text-to-text translation with the transformers-style API.

    python examples/t2tt.py --text "Hello, how are you?" --src-lang eng --tgt-lang fra
"""

import argparse

from seamless_mlx import SeamlessM4TProcessor, SeamlessM4Tv2ForTextToText
from seamless_mlx.loading import resolve

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--model", default="facebook/seamless-m4t-v2-large", help="converted/transformers folder or hub id")
p.add_argument("--text", default="Hello, my dog is cute.")
p.add_argument("--src-lang", default="eng")
p.add_argument("--tgt-lang", default="fra")
p.add_argument("--num-beams", type=int, default=1)
p.add_argument("--max-new-tokens", type=int, default=256)
args = p.parse_args()

folder = resolve(args.model)
processor = SeamlessM4TProcessor.from_pretrained(folder)
model = SeamlessM4Tv2ForTextToText.from_pretrained(folder)  # text encoder + decoder weights only

inputs = processor(text=args.text, src_lang=args.src_lang, return_tensors="mlx")
out = model.generate(**inputs, tgt_lang=args.tgt_lang, num_beams=args.num_beams, max_new_tokens=args.max_new_tokens)
print(processor.decode(out[0].tolist()[0], skip_special_tokens=True))
