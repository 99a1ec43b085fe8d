"""seamless-mlx: SeamlessM4T-v2 speech and text translation in MLX.

>>> from seamless_mlx import load
>>> model, processor = load("path/to/converted-or-hf-folder")
>>> inputs = processor(text="Hello", src_lang="eng", return_tensors="mlx")
>>> out = model.generate(**inputs, tgt_lang="fra", generate_speech=False)
>>> processor.decode(out[0].tolist()[0], skip_special_tokens=True)
"""

from . import cpu  # first: cpu/blas.py loads a fast BLAS before anything imports mlx.core
from .cpu import mx as _mx

from .config import GenerationConfig, ModelConfig  # noqa: E402
from .features import SeamlessM4TFeatureExtractor  # noqa: E402
from .generate import GenerateOutput, SpeechOutput  # noqa: E402
from .loading import resolve  # noqa: E402
from .model import (  # noqa: E402
    SeamlessM4Tv2ForSpeechToSpeech,
    SeamlessM4Tv2ForSpeechToText,
    SeamlessM4Tv2ForTextToSpeech,
    SeamlessM4Tv2ForTextToText,
    SeamlessM4Tv2Model,
)
from .processor import SeamlessM4TProcessor  # noqa: E402
from .tokenizer import SeamlessM4TTokenizer  # noqa: E402

from .api import Result, transcribe, translate  # noqa: E402

__version__ = "0.1.0"

cpu.blas.ensure_fast(_mx.default_device() == _mx.cpu)  # rebinds MLX's BLAS if mlx.core came first
cpu.blas.install_few_rows()  # few-row products (decoding a batch or beams) skip the BLAS's packing


def load(path, model_class=None, dtype=None, cpu_routes=None):
    """Load ``(model, processor)`` from a converted folder, a transformers folder or a hub id.

    ``cpu_routes``: see :meth:`SeamlessM4Tv2Model.from_pretrained` (default: on when MLX's default
    device is the CPU, unless ``SEAMLESS_MLX_ROUTES=generic``)."""
    folder = resolve(path)
    cls = model_class or SeamlessM4Tv2Model
    model = cls.from_pretrained(folder, dtype=dtype, cpu_routes=cpu_routes)
    return model, SeamlessM4TProcessor.from_pretrained(folder)


__all__ = [
    "load",
    "translate",
    "transcribe",
    "Result",
    "ModelConfig",
    "GenerationConfig",
    "GenerateOutput",
    "SpeechOutput",
    "SeamlessM4Tv2Model",
    "SeamlessM4Tv2ForTextToText",
    "SeamlessM4Tv2ForSpeechToText",
    "SeamlessM4Tv2ForTextToSpeech",
    "SeamlessM4Tv2ForSpeechToSpeech",
    "SeamlessM4TProcessor",
    "SeamlessM4TTokenizer",
    "SeamlessM4TFeatureExtractor",
    "__version__",
]
