"""Build step for the one compiled part: the few-row product kernel behind MLX's CPU BLAS
(seamless_mlx/cpu/_skinny.c, Linux only).  It is optional: without a C compiler the package
installs and runs, its few-row products then going to the BLAS as before.  Everything else is in
pyproject.toml."""

import sys

from setuptools import Extension, setup

extensions = []
if sys.platform.startswith("linux"):
    extensions.append(
        Extension(
            "seamless_mlx.cpu._skinny",
            ["seamless_mlx/cpu/_skinny.c"],
            depends=["seamless_mlx/cpu/_skinny_kernel.h"],
            extra_compile_args=["-O3", "-std=gnu11", "-fno-math-errno"],
            extra_link_args=["-pthread"],
            optional=True,
        )
    )

setup(ext_modules=extensions)
