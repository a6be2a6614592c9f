"""Where and how to train: device, precision, threads and the torchrun environment. The choices are pure
functions of what the machine reports, so CPU tests cover the CUDA logic."""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

from zoo.errors import ZooError, did_you_mean


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_env(environ=os.environ) -> DistEnv:
    """The process's place in a torchrun job (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE)."""
    world = int(environ.get("WORLD_SIZE", 1))
    return DistEnv(
        int(environ.get("RANK", 0)),
        world,
        int(environ.get("LOCAL_RANK", 0)),
        int(environ.get("LOCAL_WORLD_SIZE", world)),
    )


def pick_device(requested: str, cuda_available: bool, local_rank: int = 0) -> str:
    """'auto' is CUDA when present; under torchrun each process takes cuda:LOCAL_RANK."""
    if requested == "auto":
        requested = "cuda" if cuda_available else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested == "cuda" or (requested.startswith("cuda:") and requested[5:].isdigit()):
        if not cuda_available:
            raise ZooError(f"--device {requested}: CUDA is not available on this machine; use --device cpu")
        return requested if ":" in requested else f"cuda:{local_rank}"
    raise ZooError(
        f"unknown device '{requested}'{did_you_mean(requested, ('auto', 'cpu', 'cuda'))} "
        "choices: auto, cpu, cuda, cuda:N"
    )


def pick_precision(requested: str, device: str, bf16_supported: bool) -> str:
    """auto: bf16 where the device multiplies bf16 natively (a GPU that supports it; a CPU with AMX or
    AVX512-BF16, see zoo.cpu), else fp16 with a GradScaler on GPU and fp32 on CPU. ``bf16_supported`` is
    that detection, passed in so tests simulate any machine. bf16 on a CPU without it runs (emulated)."""
    on_gpu = device.startswith("cuda")
    if requested == "auto":
        if on_gpu:
            return "bf16" if bf16_supported else "fp16"
        return "bf16" if bf16_supported else "fp32"
    if requested == "fp16" and not on_gpu:
        raise ZooError("--precision fp16 needs a CUDA device; on CPU use fp32 or bf16")
    if requested == "bf16" and on_gpu and not bf16_supported:
        raise ZooError("--precision bf16: this GPU does not support bfloat16; use fp16 or fp32")
    return requested


def isa(device: str, precision: str, cpu=None) -> str:
    """The instruction set a run's matrix products use, for output and records: 'AVX512-BF16',
    'AMX-BF16', 'bf16 emulated (AVX512)', 'AVX512' (torch's fp32 kernels), 'cuda'."""
    if device.startswith("cuda"):
        return "cuda"
    import torch

    from zoo.cpu import detect

    cpu = cpu or detect()
    capability = torch.backends.cpu.get_cpu_capability()
    if precision == "bf16":
        return cpu.bf16_isa or f"bf16 emulated ({capability})"
    return capability


def autocast(device: str, precision: str):
    import torch

    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def grad_scaler(precision: str, device: str):
    """A GradScaler for fp16 on CUDA (bf16 and fp32 need none)."""
    import torch

    enabled = precision == "fp16" and device.startswith("cuda")
    return torch.amp.GradScaler("cuda", enabled=enabled)


def cpu_threads(local_world_size: int, requested: int | None = None) -> int:
    """Threads per process: the usable cores shared among the processes on this machine."""
    from zoo.threads import default_threads

    return requested or default_threads(local_world_size)


def resolve(requested_device: str, requested_precision: str, env: DistEnv) -> tuple[str, str]:
    import torch

    cuda = torch.cuda.is_available()
    device = pick_device(requested_device, cuda, env.local_rank)
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise ZooError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.startswith("cuda"):
        bf16 = torch.cuda.is_bf16_supported()
    else:
        from zoo.cpu import detect

        bf16 = detect().native_bf16
    return device, pick_precision(requested_precision, device, bf16)
