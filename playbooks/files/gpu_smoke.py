"""GPU smoke test (playbooks/gpu-check.yml runs it inside the GPU singleuser image; it also
runs on any machine with PyTorch): is CUDA available, which devices, and how fast is a
matrix multiplication on each. Prints one JSON object."""

from __future__ import annotations

import json
import time


def main() -> dict[str, object]:
    try:
        import torch
    except ImportError as err:
        return {"cuda": False, "error": f"no PyTorch: {err}"}
    result: dict[str, object] = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if not result["cuda"]:
        return result
    devices = []
    size = 8192
    for index in range(torch.cuda.device_count()):
        with torch.cuda.device(index):
            a = torch.randn(size, size, device="cuda", dtype=torch.float16)
            b = torch.randn(size, size, device="cuda", dtype=torch.float16)
            torch.matmul(a, b)  # warm up
            torch.cuda.synchronize()
            runs = 10
            start = time.perf_counter()
            for _ in range(runs):
                torch.matmul(a, b)
            torch.cuda.synchronize()
            seconds = (time.perf_counter() - start) / runs
            devices.append(
                {
                    "index": index,
                    "name": torch.cuda.get_device_name(index),
                    "matmul_ms": round(seconds * 1000, 2),
                    "tflops_fp16": round(2 * size**3 / seconds / 1e12, 1),
                }
            )
    result["devices"] = devices
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
