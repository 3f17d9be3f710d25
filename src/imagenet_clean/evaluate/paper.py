"""The paper's own ImageNet figures (tables 1-3), shown beside ours in the report.

Transcribed from the seed paper (``seed/000_84f8ba9badad147f.txt``): accuracies
are top-1/top-5 in percent; ``None`` marks a cell the paper leaves empty ("-").
They are reference values for real ImageNet, not targets for the embedded data.
"""
from __future__ import annotations

PAPER_TABLE1_CAPTION = (
    "Paper table 1: label errors found by confident learning (N'_m) and pretrained model "
    "accuracies on the original ImageNet validation set (V) and the cleaned version (V_c). "
    "The last four models were not used in the clean-up."
)

PAPER_TABLE1: tuple[tuple[str, int | None, tuple[float, float], tuple[float, float]], ...] = (
    # model, label errors, top-1/top-5 on V, top-1/top-5 on V_c
    ("SqueezeNet", 13716, (56.15, 79.38), (63.78, 85.66)),
    ("MobileNet", 8550, (68.88, 88.60), (78.14, 94.45)),
    ("MobileNet V2", 7341, (69.70, 89.35), (79.26, 95.09)),
    ("NASNet", 7489, (71.83, 90.49), (81.64, 95.88)),
    ("ENet-B0", 5422, (76.22, 92.96), (86.61, 98.00)),
    ("ENet-B0 (NS)", 5597, (76.82, 93.65), (87.09, 98.40)),
    ("ENet-B1", 5224, (77.81, 93.86), (87.98, 98.53)),
    ("ENet-B1 (NS)", 4926, (80.20, 95.33), (89.91, 99.15)),
    ("ENet-B2", 4921, (79.06, 94.54), (89.26, 98.89)),
    ("ENet-B2 (NS)", 4658, (81.41, 95.94), (90.73, 99.37)),
    ("ENet-B5 (NS)", None, (86.07, 97.75), (90.23, 99.19)),
    ("ENet-B7", None, (84.93, 97.20), (90.11, 99.10)),
    ("IG-ResNeXt101", None, (85.42, 97.88), (89.06, 98.86)),
    ("ENet-L2 (NS)", None, (88.35, 98.65), (90.87, 99.25)),
)

PAPER_TABLE2_CAPTION = (
    "Paper table 2: top-1/top-5 of models trained on T or T_c and evaluated on V, V_c, V2, V2_c. "
    "The first three were trained by the author (90 epochs, section 5); the last four are pretrained on T, "
    "so their T_c/T columns are T."
)

PAPER_TABLE2_COLUMNS = ("T, V", "T, V_c", "T_c, V_c", "T_c/T, V2", "T_c/T, V2_c")

PAPER_TABLE2: tuple[tuple[str, tuple[tuple[float, float] | None, ...]], ...] = (
    ("SqueezeNet 1.1", ((55.07, 78.19), (60.99, 83.98), (63.15, 84.71), (42.69, 65.15), (47.72, 71.38))),
    ("ShuffleNet V2", ((70.39, 89.25), (77.94, 94.56), (78.31, 94.50), (56.64, 77.81), (63.07, 84.32))),
    ("ENet-B0", ((73.06, 91.40), (80.74, 96.24), (83.11, 96.78), (61.53, 82.23), (68.58, 88.87))),
    ("ENet-B5 (NS)", ((86.07, 97.75), (90.23, 99.19), None, (76.70, 93.51), (81.73, 96.58))),
    ("ENet-B7", ((84.93, 97.20), (90.11, 99.10), None, (74.45, 92.12), (79.49, 95.73))),
    ("IG-ResNeXt101", ((85.42, 97.88), (89.06, 98.86), None, (76.77, 93.42), (80.68, 96.04))),
    ("ENet-L2 (NS)", ((88.35, 98.65), (90.87, 99.25), None, (80.10, 95.86), (84.12, 97.81))),
)

PAPER_TABLE3_CAPTION = (
    "Paper table 3: models trained on T_c at non-square input sizes (width x height), evaluated on V_c, "
    "as top-1/top-5 differences to the square 224x224 model; 320x180 and 180x320 have about the square "
    "pixel count, 384x216 and 216x384 about 1.65x."
)

PAPER_TABLE3_MODELS = ("SqueezeNet", "ENet-B0")

PAPER_TABLE3: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = (
    # resolution (width x height, L/P), (d top-1, d top-5) per model of PAPER_TABLE3_MODELS
    ("320x180 (L)", ((-0.56, -0.05), (+0.26, +0.09))),
    ("384x216 (L)", ((+0.93, +0.89), (+1.36, +0.75))),
    ("180x320 (P)", ((-1.03, -0.30), (+0.25, +0.33))),
    ("216x384 (P)", ((+0.29, +0.48), (+1.30, +0.55))),
)

PAPER_VAL_CHANGES = {"fixes": 3565, "removals": 2471, "fixes_pct": 7.13, "removals_pct": 4.9}
"""Paper section 4.1: changes to the ILSVRC12 validation set (50 000 images)."""

PAPER_TRAIN_CHANGES = {"fixes": 110839, "removals": 48581, "fixes_pct": 8.6, "removals_pct": 3.7}
"""Paper section 4.2: changes to the ILSVRC12 training set."""

PAPER_V2_CHANGES = {"fixes": 292, "removals": 524, "fixes_pct": 2.9, "removals_pct": 5.2}
"""Paper section 4.3: changes to ImageNetV2 matched frequency."""

PAPER_CHANGES = {"val": PAPER_VAL_CHANGES, "train": PAPER_TRAIN_CHANGES, "v2": PAPER_V2_CHANGES}
"""The paper's fix and removal counts per cleaned split (it gives no per-split merge counts: the merged
categories hold about 0.04 % of the dataset, section 3.3)."""
