"""Random-resized-crop, turn and flip on whole batches of cached images: the small-dataset fast path.

With ``train.cache_images`` on, one process, and a recipe of crops, turns and
flips only (no RandAugment, erasing or colour jitter), :func:`batch_loader` decodes
every training image once into uint8 tensors (one per image size) and then draws each batch's
crops together: the boxes as torchvision's ``RandomResizedCrop`` draws them
(area fraction in ``scale``, log-uniform aspect ratio, ten tries, else a centre
crop), resampled to the input size by ``roi_align`` with adaptive sampling
(every output pixel averages the source pixels it covers, as an antialiased
resize does), then turned by up to ``train.rotate`` degrees (:func:`rotate_batch`,
bilinear, mirrored at the edges; the per-image path applies the same function
through :class:`RandomTurn`): a few milliseconds a batch. On the embedded default a whole
training is 1.1-1.4x faster than with timm's per-image PIL transform
(``benchmarks/bench_batchaug.py`` measures the two side by side).

Batches come as the loader's ``(images, labels, rows, n_dropped)``; images that
cannot be decoded are dropped once and reported with the first batch. Shuffling
and crops derive from ``seed`` and the epoch alone, so runs are reproducible.

Images of different sizes are kept at their own size, one uint8 tensor per
size: each crop box is drawn inside its own image, and each size's crops are
resampled by their own ``roi_align``, so a crop is the one the per-image path
would draw. (Before, one image of another size, a resized near copy among the
embedded default's copies, sent the whole training silently to the per-image
path, another recipe: 2 points of out-of-fold top-1 lower there.) A split of
one size draws exactly the boxes it drew before.
"""
from __future__ import annotations

import math

import numpy as np

RATIO = (3 / 4, 4 / 3)
"""Aspect-ratio range of the crops (torchvision's and timm's default)."""
TRIES = 10
"""Box draws per image before the centre-crop fallback (as torchvision)."""


def fast_path_reason(cfg, *, world_size: int) -> str | None:
    """Why the recipe cannot use :func:`batch_loader` (None: it can)."""
    if not cfg.cache_images:
        return "train.cache_images is off"
    if world_size > 1:
        return "distributed training"
    if cfg.workers:
        return "train.workers > 0"
    if cfg.auto_augment or cfg.reprob or cfg.color_jitter:
        return "the recipe has RandAugment, erasing or colour jitter"
    return None


def loader_kind(cfg, *, world_size: int = 1) -> str:
    """``"batch"`` (:func:`batch_loader`) or ``"per-image"`` (timm's transform): part of a run's fingerprint,
    since the two draw different crops."""
    return "batch" if fast_path_reason(cfg, world_size=world_size) is None else "per-image"


def sample_boxes(n: int, height: int, width: int, *, scale: tuple[float, float], generator,
                 ratio: tuple[float, float] = RATIO):
    """``(n, 4)`` float boxes ``x0, y0, x1, y1`` drawn as ``RandomResizedCrop.get_params`` draws them."""
    import torch

    area = height * width
    s = torch.empty(n, TRIES).uniform_(scale[0], scale[1], generator=generator) * area
    log_r = torch.empty(n, TRIES).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    r = torch.exp(log_r)
    w = torch.round(torch.sqrt(s * r))
    h = torch.round(torch.sqrt(s / r))
    fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.argmax(fits.int(), dim=1)  # first try that fits (0 when none does)
    rows = torch.arange(n)
    w, h, ok = w[rows, first], h[rows, first], fits[rows, first]
    # fallback: the centre crop of the whole image at the nearest allowed ratio
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    w = torch.where(ok, w, torch.tensor(float(fw)))
    h = torch.where(ok, h, torch.tensor(float(fh)))
    ux = torch.rand(n, generator=generator)
    uy = torch.rand(n, generator=generator)
    x0 = torch.where(ok, torch.floor(ux * (width - w + 1)), torch.tensor(float((width - fw) // 2)))
    y0 = torch.where(ok, torch.floor(uy * (height - h + 1)), torch.tensor(float((height - fh) // 2)))
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def rotate_batch(images, degrees):
    """``images`` (N, C, H, W) float turned by ``degrees`` (N,) about their centres.

    Bilinear, as timm's RandAugment ``Rotate`` is; where the turned image leaves
    the frame it is mirrored (no fill colour for a model to learn). Applied to
    the crops at the model's input size: 0.3 ms a batch of 32 at 16 px here.
    """
    import torch
    import torch.nn.functional as F

    n, c, h, w = images.shape
    a = torch.deg2rad(degrees.float())
    cos, sin, zero = torch.cos(a), torch.sin(a), torch.zeros(n)
    theta = torch.stack([torch.stack([cos, -sin * h / w, zero], dim=1),
                         torch.stack([sin * w / h, cos, zero], dim=1)], dim=1)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class RandomTurn:
    """The per-image transform's turn: a (C, H, W) float tensor through :func:`rotate_batch`.

    The angle is drawn from torch's global generator (DataLoader workers seed it).
    """

    def __init__(self, degrees: float):
        self.degrees = float(degrees)

    def __call__(self, image):
        import torch

        angle = torch.empty(1).uniform_(-self.degrees, self.degrees)
        return rotate_batch(image[None], angle)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(degrees={self.degrees})"


class SizedImages:
    """Decoded images of several sizes: one ``(n, 3, H, W)`` uint8 tensor per size.

    Args:
        arrays: ``(H, W, 3)`` uint8 arrays, in dataset order. A batch draws its crops size by size, in
            sorted order of the shapes; with one size, one draw for the whole batch.
    """

    def __init__(self, arrays: list):
        import torch

        shapes = sorted({a.shape for a in arrays})
        of = {shape: g for g, shape in enumerate(shapes)}
        self.group = torch.tensor([of[a.shape] for a in arrays], dtype=torch.long)
        self.slot = torch.zeros(len(arrays), dtype=torch.long)  # position inside its size's tensor
        self.tensors = []
        for g, shape in enumerate(shapes):
            members = torch.nonzero(self.group == g).flatten()
            self.slot[members] = torch.arange(len(members))
            self.tensors.append(torch.from_numpy(np.stack([arrays[i] for i in members.tolist()])).permute(0, 3, 1, 2).contiguous())

    def crops(self, idx, *, size: tuple[int, int], scale: tuple[float, float], generator):
        """``(len(idx), 3, *size)`` float crops of images ``idx``, each box drawn inside its own image."""
        import torch
        from torchvision.ops import roi_align

        out = torch.empty((len(idx), 3, *size), dtype=torch.float32)
        groups = self.group[idx]
        for g in torch.unique(groups).tolist():  # sorted: the draws follow the sizes' order
            at = torch.nonzero(groups == g).flatten()
            images = self.tensors[g][self.slot[idx[at]]]
            _, _, height, width = images.shape
            boxes = sample_boxes(len(at), height, width, scale=scale, generator=generator)
            rois = torch.cat([torch.arange(len(at), dtype=torch.float32)[:, None], boxes], dim=1)
            out[at] = roi_align(images.float(), rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        return out


class BatchLoader:
    """Shuffled, augmented batches of images decoded once (see the module docstring).

    Args:
        images: The decoded images (:class:`SizedImages`).
        labels: ``(N,)`` int64 tensor.
        rows: ``(N,)`` dataset rows of the images (undecodable rows are absent).
        dropped: How many samples could not be decoded.
        batch_size: Samples per batch.
        seed: Seeds shuffling and crops (with the epoch).
        drop_last: Drop a last incomplete batch.
        size: Output ``(height, width)``.
        scale: Crop area fraction range.
        hflip: Probability of a horizontal flip.
        mean: Per-channel mean (0-1 scale).
        std: Per-channel standard deviation (0-1 scale).
        rotate: Each crop turned by an angle drawn from ``[-rotate, rotate]`` degrees (0: none).
    """

    def __init__(self, images, labels, rows, dropped: int, *, batch_size: int, seed: int, drop_last: bool,
                 size: tuple[int, int], scale: tuple[float, float], hflip: float, mean, std, rotate: float = 0.0):
        import torch

        self.images, self.labels, self.rows, self.dropped = images, labels, rows, dropped
        self.batch_size, self.seed, self.drop_last = batch_size, seed, drop_last
        self.size, self.scale, self.hflip, self.rotate = tuple(size), tuple(scale), hflip, float(rotate)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        if self.drop_last and n >= self.batch_size:
            return n // self.batch_size
        return math.ceil(n / self.batch_size)  # fewer images than a batch (some undecodable): one short batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        import torch

        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=gen)
        reported = False
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            crops = self.images.crops(idx, size=self.size, scale=self.scale, generator=gen)
            if self.rotate:
                crops = rotate_batch(crops, torch.empty(len(idx)).uniform_(-self.rotate, self.rotate, generator=gen))
            if self.hflip:
                flip = torch.rand(len(idx), generator=gen) < self.hflip
                crops = torch.where(flip[:, None, None, None], crops.flip(3), crops)
            crops = (crops - self.mean) / self.std
            yield crops, self.labels[idx], self.rows[idx], 0 if reported else self.dropped
            reported = True


def batch_loader(dataset, *, batch_size: int, seed: int, drop_last: bool, data_cfg: dict, scale, hflip: float,
                 rotate: float = 0.0):
    """A :class:`BatchLoader` over an :class:`~.datasets.ImageSamples`.

    Decodes every image once (an image that cannot be decoded is dropped and
    counted); images of different sizes are kept at their own size.
    """
    import torch

    from .datasets import _load_image

    arrays, labels, rows, dropped = [], [], [], 0
    for i, path in enumerate(dataset.paths):
        try:
            img = _load_image(dataset.root / path, None, dataset.root)
        except (ValueError, OSError):
            dropped += 1
            continue
        arrays.append(np.asarray(img, dtype=np.uint8))
        labels.append(int(dataset.labels[i]))
        rows.append(i)
    _, h, w = data_cfg["input_size"]
    return BatchLoader(SizedImages(arrays), torch.tensor(labels, dtype=torch.long), torch.tensor(rows, dtype=torch.long), dropped,
                       batch_size=batch_size, seed=seed, drop_last=drop_last, size=(h, w), scale=scale, hflip=hflip,
                       mean=data_cfg["mean"], std=data_cfg["std"], rotate=rotate)
