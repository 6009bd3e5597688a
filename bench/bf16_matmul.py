"""Why `bf16=auto` asks the CPU: one matrix multiply of SmolLM2's shapes in float32 and bfloat16.

    python bench/bf16_matmul.py
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python bench/bf16_matmul.py

A (2048 x 576) @ (576 x 1536) product (a batch of 2048 tokens through SmolLM2-135M's MLP width),
timed after two warm-up runs, in GFLOP/s. The second command runs it as an AVX2-only CPU would:
torch's kernels at their AVX2 level and oneDNN/MKL capped at AVX2, where bfloat16 has no fast
matrix multiply. The last line is what `sqltune.precision` concludes for this CPU.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def gflops(dtype, rows: int = 2048, inner: int = 576, cols: int = 1536, repeats: int = 5) -> float:
    import torch

    a = torch.randn(rows, inner).to(dtype)
    b = torch.randn(inner, cols).to(dtype)
    for _ in range(2):
        a @ b
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * rows * inner * cols * repeats / (time.perf_counter() - began) / 1e9


def main() -> int:
    import torch

    from sqltune.precision import cpu_description, inference_dtype

    print(f"CPU: {cpu_description()}, {torch.get_num_threads()} threads")
    for dtype in (torch.float32, torch.bfloat16):
        print(f"{str(dtype).removeprefix('torch.'):>9}: {gflops(dtype):8.1f} GFLOP/s")
    print(f"bf16=auto / infer_dtype=auto choose: {inference_dtype('auto')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
