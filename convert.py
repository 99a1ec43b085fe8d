"""Convert a transformers SeamlessM4T-v2 checkpoint to MLX: ``python convert.py --help``."""

import sys

from seamless_mlx.convert import main

if __name__ == "__main__":
    sys.exit(main())
