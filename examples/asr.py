"""Speech recognition (ASR): speech-to-text into the language that is spoken.

    python examples/asr.py --audio talk.wav --lang eng
"""

import argparse

from seamless_mlx import SeamlessM4TProcessor, SeamlessM4Tv2ForSpeechToText
from seamless_mlx.audio import load_audio
from seamless_mlx.loading import resolve

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--model", default="facebook/seamless-m4t-v2-large", help="converted/transformers folder or hub id")
p.add_argument("--audio", required=True, help="audio file; keep it under ~15 s (see long_form_subtitles.py)")
p.add_argument("--lang", default="eng", help="language spoken in the recording")
p.add_argument("--max-new-tokens", type=int, default=256)
args = p.parse_args()

folder = resolve(args.model)
processor = SeamlessM4TProcessor.from_pretrained(folder)
model = SeamlessM4Tv2ForSpeechToText.from_pretrained(folder)

inputs = processor(audios=load_audio(args.audio), sampling_rate=16000, return_tensors="mlx")
out = model.generate(**inputs, tgt_lang=args.lang, max_new_tokens=args.max_new_tokens)  # ASR = tgt_lang is the source language
print(processor.decode(out[0].tolist()[0], skip_special_tokens=True))
