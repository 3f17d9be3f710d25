"""dvc.yaml lists, for every stage, exactly the package code its command runs (so `dvc repro` reruns what a change touches)."""
from pathlib import Path

import pytest
import yaml

from code_deps import command_callbacks, command_of, covered, relpath, stage_code_deps, stage_modules

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _cmd(stage: dict) -> str:
    return (stage.get("do") or stage)["cmd"]


def _src_deps(stage: dict) -> list[str]:
    return [d for d in (stage.get("do") or stage).get("deps", []) if isinstance(d, str) and d.startswith("src/")]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_module_a_stage_runs_is_a_dependency_and_every_code_dependency_is_run(name):
    stage = STAGES[name]
    module, function = command_callbacks()[command_of(_cmd(stage))]
    files = sorted(relpath(m) for m in stage_modules(module, function))
    deps = _src_deps(stage)
    missing = [f for f in files if not covered(f, deps)]
    assert not missing, (f"stage {name}: its command runs {missing} but dvc.yaml does not list them "
                         "(run `python tests/code_deps.py` to rewrite the code deps)")
    unused = [d for d in deps if not any(covered(f, [d]) for f in files)]
    assert not unused, f"stage {name}: dvc.yaml lists {unused}, which its command never imports"
    assert deps == stage_code_deps(_cmd(stage))  # the canonical form `python tests/code_deps.py` writes


def test_the_import_reader_sees_lazy_imports_and_the_command_body_only():
    module, function = command_callbacks()["score"]
    mods = stage_modules(module, function)
    assert "imagenet_clean.stages.score" in mods and "imagenet_clean.evaluate.score" in mods  # a lazy import inside run()
    assert "imagenet_clean.cleanup.ensemble" not in mods  # the clean command's code is not the score command's


def test_every_stage_has_a_stage_module():
    from imagenet_clean import stages

    for name, stage in STAGES.items():
        assert name in stages.STAGES, f"dvc.yaml stage {name} has no module in imagenet_clean.stages"
        module, function = command_callbacks()[command_of(_cmd(stage))]
        assert f"imagenet_clean.stages.{stages.STAGES[name]}" in stage_modules(module, function)
