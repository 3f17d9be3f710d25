"""A tiny embedded project's params and seeded untrained full checkpoints, for stage tests that need real images
and real models but no training (the duplicates and windows stages)."""
from __future__ import annotations

from importlib import resources

import yaml

from imagenet_clean.workspace import Workspace


def embedded_params(**dup) -> dict:
    p = yaml.safe_load(resources.files("imagenet_clean.resources").joinpath("params_embedded.yaml").read_text())
    p["generate"].update(n_train=60, n_val=30, n_v2=30)
    p["generate"]["noise"].update(exact_copies=0.1, near_copies=0.1)
    p["models"] = {"vgg": {"arch": "digits_vgg", "weights": "train"}}
    p["ingest"]["workers"] = 1
    p["duplicates"].update(dup)
    return p


def full_checkpoint(params, ws: Workspace, seed: int = 0) -> None:
    """A seeded, untrained full checkpoint of each model, where ``fit`` writes it (features need no training to differ)."""
    import torch

    from imagenet_clean.models.factory import build_model, config_digest, save_checkpoint, trained_checkpoint_path

    for name, cfg in params.models.items():
        torch.manual_seed(seed)
        model, _ = build_model(cfg, num_classes=11)
        save_checkpoint(model, trained_checkpoint_path(name, models_dir=ws.models), metadata={"model_config": config_digest(cfg)})
