"""Speech-to-text translation with the transformers-style API.

    python examples/s2tt.py --audio talk.wav --tgt-lang fra
"""

import argparse

from seamless_mlx import SeamlessM4TProcessor, SeamlessM4Tv2ForSpeechToText
from seamless_mlx.audio import load_audio
from seamless_mlx.loading import resolve

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--model", default="facebook/seamless-m4t-v2-large", help="converted/transformers folder or hub id")
p.add_argument("--audio", required=True, help="audio file (any rate; resampled to 16 kHz); keep it under ~15 s")
p.add_argument("--tgt-lang", default="fra")
p.add_argument("--max-new-tokens", type=int, default=256)
args = p.parse_args()

folder = resolve(args.model)
processor = SeamlessM4TProcessor.from_pretrained(folder)
model = SeamlessM4Tv2ForSpeechToText.from_pretrained(folder)  # speech encoder + text decoder only

audio = load_audio(args.audio, sampling_rate=16000)
inputs = processor(audios=audio, sampling_rate=16000, return_tensors="mlx")
out = model.generate(**inputs, tgt_lang=args.tgt_lang, max_new_tokens=args.max_new_tokens)
print(processor.decode(out[0].tolist()[0], skip_special_tokens=True))
