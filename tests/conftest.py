import os
import sys

import pytest

import seamless_mlx  # noqa: F401  (before any test imports mlx.core: it picks MLX's CPU BLAS, see seamless_mlx/cpu/blas.py)

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random-weight transformers checkpoint folder (all sub-models), built once per session."""
    from checkpoints import build_checkpoint

    path, _, _ = build_checkpoint(tmp_path_factory.mktemp("tiny") / "hf", seed=0)
    return path


@pytest.fixture(scope="session")
def tiny_hf(tiny_checkpoint):
    """(transformers model, transformers processor) loaded back from ``tiny_checkpoint``."""
    from checkpoints import load_hf

    return load_hf(tiny_checkpoint)


@pytest.fixture(params=["plain", "cpu"])
def route(request):
    """``"plain"`` or ``"cpu"``: a parity test asking for it runs on both execution paths (see routes.py)."""
    return request.param
