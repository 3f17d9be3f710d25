"""torch.distributed plumbing for ``torchrun``: process group from the environment, rank helpers.

``torchrun --nproc-per-node N imagenet-clean predict-split --split val`` (or
``--nnodes``/``--rdzv-endpoint`` for several machines) starts N processes with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`process_group` joins
them (nccl on GPU, gloo on CPU). Prediction gives shard ``i`` to rank
``i % WORLD_SIZE``; every rank writes its shards to a shared folder and rank 0
merges them after a barrier, so the merged file equals the single-process one.
Without those variables everything runs as rank 0 of 1.

Inside DVC stages, set ``IMAGENET_CLEAN_LAUNCHER`` (e.g. ``torchrun
--nproc-per-node 8``): the commands of :data:`DISTRIBUTED_COMMANDS` then
re-execute themselves as ``<launcher> -m imagenet_clean <args>``
(:func:`relaunch_command`), so ``dvc.yaml`` keeps its plain ``imagenet-clean``
commands.
"""
from __future__ import annotations

import contextlib
import os
import shlex
from dataclasses import dataclass
from typing import Iterator, Mapping

LAUNCHER_ENV = "IMAGENET_CLEAN_LAUNCHER"
"""Environment variable holding the launcher command line, e.g. ``torchrun --nproc-per-node 8``."""

DISTRIBUTED_COMMANDS = frozenset({"fit", "predict-split", "predict", "clean"})
"""CLI commands that run sharded under torchrun (the others ignore the launcher); ``clean`` shards its CAMs."""

_TORCHRUN_VARS = ("RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, GPU ``local_rank``, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_ranks() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment variables (defaults: 0, 1, 0), without torch.

    Raises:
        ValueError: the variables are not integers or the rank is out of range.
    """
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ValueError(
            f"RANK={os.environ.get('RANK')!r} WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} "
            f"LOCAL_RANK={os.environ.get('LOCAL_RANK')!r}: not integers"
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    return rank, world, local


def env_info() -> DistInfo:
    """:func:`env_ranks` plus this process's device (its local GPU under torchrun, else CPU).

    Raises:
        ValueError: the variables are not integers or the rank is out of range.
    """
    import torch

    rank, world, local = env_ranks()
    device = f"cuda:{local % max(1, torch.cuda.device_count())}" if torch.cuda.is_available() else "cpu"
    return DistInfo(rank, world, local, device)


def dist_info() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` outside torch.distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def process_group(*, backend: str | None = None) -> Iterator[DistInfo]:
    """Join the torchrun process group for the duration (no-op for a single process).

    Args:
        backend: ``nccl`` / ``gloo``; default nccl when CUDA is available, else gloo.

    Yields:
        This process's :class:`DistInfo`.
    """
    import torch
    import torch.distributed as dist

    info = env_info()
    created = False
    if info.world_size > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(info.device.split(":")[1]))
        dist.init_process_group(backend=backend)
        created = True
    try:
        yield info
    finally:
        if created:
            dist.destroy_process_group()


def deterministic_cuda() -> None:
    """Repeatable GPU arithmetic: no cuDNN autotuning, no TF32, deterministic kernels where torch has them.

    Two runs on the same GPU model, driver and torch then give the same bits (ops
    without a deterministic kernel warn instead of failing). A GPU and the CPU
    still differ by float rounding: docs/reliability.md gives the tolerance.
    Call before the first CUDA matmul (cuBLAS reads its workspace setting once).
    """
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def barrier() -> None:
    """Wait for every rank (no-op when torch.distributed is not initialised)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl":
            import torch

            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def broadcast_error(message: str | None) -> str | None:
    """Share rank 0's error message (or None) with every rank, so all stop together."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return message
    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def relaunch_command(argv: list[str], env: Mapping[str, str]) -> list[str] | None:
    """The command line that re-executes ``imagenet-clean argv`` under the configured launcher.

    Args:
        argv: The arguments after the program name (``["fit", "--model", "resnet"]``).
        env: The environment (``os.environ``).

    Returns:
        ``[*launcher, "-m", "imagenet_clean", *argv]`` when ``IMAGENET_CLEAN_LAUNCHER``
        is set and non-blank, this process is not already under torchrun (no
        ``RANK``/``LOCAL_RANK``), the command is in :data:`DISTRIBUTED_COMMANDS`
        and help is not asked for; else None (run in this process).

    Raises:
        ValueError: the launcher is not a valid shell-quoted command line.
    """
    launcher = env.get(LAUNCHER_ENV, "").strip()
    if not launcher or any(v in env for v in _TORCHRUN_VARS):
        return None
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in DISTRIBUTED_COMMANDS or "--help" in argv:
        return None
    try:
        parts = shlex.split(launcher)
    except ValueError as e:
        raise ValueError(f"{LAUNCHER_ENV}={launcher!r} is not a valid command line: {e}") from None
    return [*parts, "-m", "imagenet_clean", *argv]


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def spawn_pool(workers: int, *, threads: int | None = None):
    """A ``ProcessPoolExecutor`` of ``workers`` spawned processes for trainings side by side on a CPU.

    Each process runs torch with ``threads`` threads (default ``cpu_count // workers``,
    at least 1), so a training gives the same weights as one run alone with that
    thread count. Spawned, not forked: a forked torch with OpenMP threads running
    can hang.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_set_threads,
                               initargs=(threads,))
