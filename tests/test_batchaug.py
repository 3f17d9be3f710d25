"""The batched crop-and-flip fast path (models/batchaug.py): boxes, determinism, resampling, bad images."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from imagenet_clean.config import TrainConfig
from imagenet_clean.models.batchaug import RATIO, BatchLoader, RandomTurn, batch_loader, fast_path_reason, rotate_batch, sample_boxes
from imagenet_clean.models.datasets import ImageSamples, set_epoch

DATA_CFG = {"input_size": (3, 16, 16), "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def write_images(root, n=10, size=64, seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = f"c{i % 3}/img{i}.png"
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / p)
        paths.append(p)
    return paths


def loader_of(root, paths, **kw):
    ds = ImageSamples(paths, [i % 3 for i in range(len(paths))], root, transform=None)
    args = dict(batch_size=4, seed=0, drop_last=False, data_cfg=DATA_CFG, scale=(0.5, 1.0), hflip=0.0)
    return batch_loader(ds, **{**args, **kw})


def test_boxes_lie_inside_the_image_with_the_drawn_area_and_ratio():
    g = torch.Generator().manual_seed(0)
    boxes = sample_boxes(2000, 64, 48, scale=(0.3, 0.9), generator=g)
    x0, y0, x1, y1 = boxes.unbind(1)
    w, h = x1 - x0, y1 - y0
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 48).all() and (y1 <= 64).all()
    area = w * h / (64 * 48)
    assert area.min() > 0.25 and area.max() < 0.95  # scale range, up to rounding
    assert (w / h).min() > RATIO[0] * 0.9 and (w / h).max() < RATIO[1] * 1.1
    again = sample_boxes(2000, 64, 48, scale=(0.3, 0.9), generator=torch.Generator().manual_seed(0))
    assert torch.equal(boxes, again)


def test_a_crop_that_cannot_fit_falls_back_to_the_centre_crop():
    boxes = sample_boxes(50, 10, 40, scale=(1.0, 1.0), generator=torch.Generator().manual_seed(1))
    # a 4:1 image never holds a full-area crop of ratio <= 4/3: centre crop of ratio 4/3
    assert torch.equal(boxes, torch.tensor([[13.0, 0.0, 26.0, 10.0]]).expand(50, 4))  # 13 = round(10 * 4 / 3)


def test_whole_image_crops_equal_an_area_average_resize(tmp_path):
    paths = write_images(tmp_path, n=3)
    loader = loader_of(tmp_path, paths, scale=(1.0, 1.0))
    images, labels, rows, dropped = next(iter(loader))
    assert images.shape == (3, 3, 16, 16) and dropped == 0
    for img, row in zip(images, rows):
        ref = np.asarray(Image.open(tmp_path / paths[int(row)]).convert("RGB").resize((16, 16), Image.BOX), np.float32)
        assert np.abs(img.permute(1, 2, 0).numpy() * 255 - ref).max() <= 1.0  # PIL's fixed-point box filter, in uint8


def test_batches_are_seeded_by_seed_and_epoch(tmp_path):
    paths = write_images(tmp_path)
    a, b = loader_of(tmp_path, paths), loader_of(tmp_path, paths)
    first = [x[0] for x in a]
    assert all(torch.equal(x, y[0]) for x, y in zip(first, b))
    assert [len(x) for x in first] == [4, 4, 2] and len(a) == 3
    set_epoch(a, 1)
    assert not torch.equal(next(iter(a))[0], first[0])
    assert not torch.equal(next(iter(loader_of(tmp_path, paths, seed=1)))[0], first[0])
    assert len(loader_of(tmp_path, paths, drop_last=True)) == 2


def test_flip_and_normalisation(tmp_path):
    paths = write_images(tmp_path, n=2)
    plain = next(iter(loader_of(tmp_path, paths, scale=(1.0, 1.0))))[0]
    flipped = next(iter(loader_of(tmp_path, paths, scale=(1.0, 1.0), hflip=1.0)))[0]
    assert torch.allclose(flipped, plain.flip(3))
    cfg = {**DATA_CFG, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    norm = next(iter(loader_of(tmp_path, paths, scale=(1.0, 1.0), data_cfg=cfg)))[0]
    assert torch.allclose(norm, (plain - 0.5) / 0.25, atol=1e-5)


def test_turns_are_exact_at_0_and_90_degrees_and_mirror_at_the_edges():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 255
    assert torch.allclose(rotate_batch(x, torch.zeros(3)), x)
    assert torch.allclose(rotate_batch(x, torch.full((3,), 90.0)), torch.rot90(x, 1, dims=(2, 3)), atol=1e-3)
    assert torch.allclose(rotate_batch(x, torch.full((3,), -90.0)), torch.rot90(x, -1, dims=(2, 3)), atol=1e-3)
    flat = torch.full((1, 3, 8, 8), 100.0)  # a plain image stays plain: corners are mirrored, not filled with 0
    assert torch.allclose(rotate_batch(flat, torch.tensor([30.0])), flat)
    wide = torch.rand(2, 3, 6, 10)  # non-square: a 180-degree turn is a flip of both axes
    assert torch.allclose(rotate_batch(wide, torch.full((2,), 180.0)), wide.flip(2, 3), atol=1e-4)


def test_turned_batches_are_seeded_and_differ_from_unturned(tmp_path):
    paths = write_images(tmp_path, n=4)
    plain = next(iter(loader_of(tmp_path, paths)))[0]
    turned = next(iter(loader_of(tmp_path, paths, rotate=20.0)))[0]
    again = next(iter(loader_of(tmp_path, paths, rotate=20.0)))[0]
    assert torch.equal(turned, again) and not torch.allclose(turned, plain)
    # the per-image path's turn: same function, one image, its angle inside the range
    img = torch.rand(3, 16, 16)
    torch.manual_seed(0)
    angle = torch.empty(1).uniform_(-20.0, 20.0)
    torch.manual_seed(0)
    out = RandomTurn(20.0)(img)
    assert out.shape == img.shape and not torch.allclose(out, img)
    assert torch.equal(out, rotate_batch(img[None], angle)[0]) and abs(float(angle)) <= 20


def test_an_undecodable_image_is_dropped_and_counted_once(tmp_path):
    paths = write_images(tmp_path, n=6)
    (tmp_path / "c0" / "broken.png").write_bytes(b"not a png")
    loader = loader_of(tmp_path, [*paths[:2], "c0/broken.png", *paths[2:]])
    batches = list(loader)
    assert [b[3] for b in batches] == [1, 0]
    rows = torch.cat([b[2] for b in batches]).tolist()
    assert sorted(rows) == [0, 1, 3, 4, 5, 6]  # every readable row once, the broken one (row 2) never
    # with drop_last, fewer readable images than a batch still give one batch, not none
    short = loader_of(tmp_path, ["c0/broken.png", *paths[:3]], drop_last=True)
    assert len(short) == 1 and next(iter(short))[0].shape[0] == 3


def test_images_of_different_sizes_stay_on_the_batch_path_each_cropped_inside_itself(tmp_path):
    # a few near copies of another size once sent the whole training to the per-image path (another recipe)
    paths = write_images(tmp_path, n=4) + ["b/" + p for p in write_images(tmp_path / "b", n=3, size=32, seed=1)]
    paths += ["c/" + p for p in write_images(tmp_path / "c", n=2, size=48, seed=2)]
    loader = loader_of(tmp_path, paths, scale=(1.0, 1.0), batch_size=5)
    assert loader is not None and len(loader) == 2
    seen = []
    for images, labels, rows, dropped in loader:
        assert images.shape[1:] == (3, 16, 16) and dropped == 0
        for img, row in zip(images, rows):  # whole-image crops: each image's own area-average resize
            ref = np.asarray(Image.open(tmp_path / paths[int(row)]).convert("RGB").resize((16, 16), Image.BOX), np.float32)
            assert np.abs(img.permute(1, 2, 0).numpy() * 255 - ref).max() <= 1.0, paths[int(row)]
            seen.append(int(row))
    assert sorted(seen) == list(range(len(paths)))
    again = [x[0] for x in loader_of(tmp_path, paths, batch_size=5)]
    assert all(torch.equal(x, y[0]) for x, y in zip(again, loader_of(tmp_path, paths, batch_size=5)))  # seeded


def test_a_crop_of_a_small_image_stays_inside_it(tmp_path):
    # boxes are drawn in each image's own extent: a 24 px image beside 64 px ones never reads padding
    paths = write_images(tmp_path, n=3) + ["s/" + p for p in write_images(tmp_path / "s", n=1, size=24, seed=3)]
    loader = loader_of(tmp_path, paths, scale=(0.3, 0.6), batch_size=4)
    small = np.asarray(Image.open(tmp_path / paths[3]).convert("RGB"), np.float32)
    for _ in range(5):
        images, _, rows, _ = next(iter(loader))
        crop = images[list(rows).index(3)].permute(1, 2, 0).numpy() * 255
        assert small.min() - 1 <= crop.min() and crop.max() <= small.max() + 1
        set_epoch(loader, loader.epoch + 1)


def test_an_empty_or_all_broken_set_gives_no_batches(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    loader = loader_of(tmp_path, ["x.png"])
    assert isinstance(loader, BatchLoader) and list(loader) == [] and loader.dropped == 1


@pytest.mark.parametrize("change, reason", [
    ({"cache_images": False}, "cache_images is off"),
    ({"workers": 2}, "workers > 0"),
    ({"auto_augment": "rand-m7-mstd0.5-inc1"}, "RandAugment"),
    ({"reprob": 0.25}, "erasing"),
    ({"color_jitter": 0.4}, "colour jitter"),
])
def test_recipes_the_fast_path_does_not_cover(change, reason):
    base = TrainConfig(cache_images=True, auto_augment=None, reprob=0.0, color_jitter=0.0)
    assert fast_path_reason(base, world_size=1) is None
    assert reason in fast_path_reason(dataclasses.replace(base, **change), world_size=1)
    assert "distributed" in fast_path_reason(base, world_size=2)
