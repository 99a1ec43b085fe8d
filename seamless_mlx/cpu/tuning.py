"""Every size threshold and block size of the CPU routes, in one place.

Each is read at call time (``tuning.NAME``), so a test or a benchmark may lower one to make small
inputs take a split or blocked path.  How they were measured: ``benchmarks/README.md``.
"""

import os

# streams: element-wise kernels and mat-vecs run on one thread per stream, so large ones are split
MAX_CPU_STREAMS = 8
CPU_CORES = os.cpu_count() or 1  # read once: os.cpu_count() is slow and asked many times a step

ELEMENTWISE_SPLIT_MIN = 1 << 20  # elements: larger element-wise passes are split over CPU streams
HEAD_PARALLEL_MIN_ELEMENTS = 1 << 20  # B*H*T*S below this: attention heads are not split
ROW_SPLIT_MIN_FRAMES = 64  # frames per CPU stream, at least, when split_rows cuts a row-wise block
DEPTHWISE_SPLIT_MIN = 1 << 18  # elements: a larger depthwise conv input is cut into time spans
SPLIT_MATVEC_MIN_BYTES = 4 << 20  # a one-row product with a larger float weight is split by rows

# products
TRANSPOSED_PRODUCT_MAX_ROWS = 256  # 2..this many rows: computed as (W @ x.T).T
WIDE_PRODUCT_COLUMNS = 1024  # wider than this (with more rows than the above): column blocks
COLUMN_BLOCK = 512
DEQUANTIZE_MIN_ROWS = 8  # a quantized product with this many rows dequantizes and calls the GEMM
QUANTIZED_SPLIT_ROWS = 64  # output rows per stream, at least, of a split quantized product
STACKED_TAPS_MAX_RATIO = 4  # a conv with T_out <= this * Cin is one GEMM over stacked taps
RESBLOCK_BLOCK_BYTES = 1 << 20  # a vocoder residual block's input larger than this: time blocks ...
RESBLOCK_BLOCK_MAX_CHANNELS = 128  # ... when it has at most this many channels (wider: GEMM-bound)

# float32 products with 2..this many rows (a decoder step over a batch or beams) and an inner size
# of at least FEW_ROWS_MIN_INNER (its dot products end in one sum per output: short ones, such as a
# small conv's taps, stay on the BLAS) run on the few-row kernel (blas.install_few_rows; rows at
# most 32), shared by CPU_CORES threads from this many multiply-adds; blas.configure_few_rows()
# applies a change
FEW_ROWS_MAX_ROWS = 32
FEW_ROWS_MIN_INNER = 256
FEW_ROWS_PARALLEL_MIN_WORK = 1 << 20

# products with at least this many rows run on blas.many_rows' library where there is one: the
# text encoder, the T2U model, and a decoder search over this many rows (a batch, or beams)
MANY_ROWS_MIN_ROWS = 4
# a padded text-encoder batch whose real tokens fill at most this share of it runs packed
PACK_MAX_FILL = 0.9

# text decoder: one-token steps compiled (mx.compile) only for decoder weights up to this size
# (faster at 0.1 and 100 MB, slower at v2-large's 2.4 GB; nothing measured in between)
COMPILED_STEP_MAX_BYTES = 512 << 20

# speech encoder: long inputs in blocks whose buffers the allocators can reuse
ATTENTION_SLICE_BYTES = 64 << 20  # above this, [T, T] attention tensors are built in blocks
ATTENTION_BLOCK_BYTES = 8 << 20  # ... of one head and this many bytes of [rows, T] scores
FFN_BLOCK_BYTES = 16 << 20  # a feed-forward whose [T, intermediate] activations are larger: row blocks

# glibc's allocator (memory.keep_freed_buffers): buffers up to this size come from the heap ...
MALLOC_MMAP_THRESHOLD_BYTES = 256 << 20
# ... and up to this much freed memory stays at the top of the heap (0 for either: glibc's default)
MALLOC_TRIM_THRESHOLD_BYTES = 512 << 20
