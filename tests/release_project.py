"""A small git + DVC project shaped like the pipeline, for publishing tests (issue 17).

:func:`make_release_project` writes a user's copy of two splits (``val`` and
``v2`` image trees, tests/apply_tree.py's 12-image layout) and a repository
whose ``dvc.yaml`` has the pipeline's shape where publishing looks:

* ``models`` writes ``data/models/m.bin`` (a cached output users do not need);
* ``clean@val`` / ``clean@v2`` write ``data/decisions/<s>.parquet``,
  ``data/clean/<s>.parquet``, ``data/changes/<s>.csv`` (cached) and
  ``metrics/cleanup/<s>.json`` (``cache: false``), from inputs in git and the
  ``h3`` param: with ``h3 >= 3`` the first kept image of each split is removed
  by consensus, so two releases with different ``h3`` differ in one decision;
* a top-level metrics file ``metrics/summary.json`` kept in git.

``dvc repro`` runs it in seconds; the result is committed.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from apply_tree import make_split
from imagenet_clean import io

ENV = {
    **os.environ,
    "DVC_NO_ANALYTICS": "1",
    "IMAGENET_CLEAN_PROGRESS": "0",
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
    "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
}
SPLITS = ("val", "v2")

STAGE_SCRIPT = '''"""Stand-in for `imagenet-clean clean --split S`: decisions, clean manifest, change list, metrics."""
import json, os, sys
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq, yaml

split = sys.argv[1]
h3 = yaml.safe_load(open("params.yaml"))["h3"]
dec = pq.read_table(f"inputs/{split}/decisions.parquet")
clean = pq.read_table(f"inputs/{split}/clean.parquet")
if h3 >= 3:  # a stricter consensus removes the first kept image
    actions = dec.column("action").to_pylist()
    rules = dec.column("rules").to_pylist()
    i = actions.index("keep")
    gone = dec.column("sample_id")[i].as_py()
    actions[i], rules[i] = "remove", ["consensus"]
    dec = dec.set_column(dec.schema.get_field_index("action"), "action", pa.array(actions))
    dec = dec.set_column(dec.schema.get_field_index("rules"), "rules", pa.array(rules, pa.list_(pa.string())))
    clean = clean.filter(pc.not_equal(clean.column("sample_id"), gone))
for d in ("data/decisions", "data/clean", "data/changes", "metrics/cleanup"):
    os.makedirs(d, exist_ok=True)
pq.write_table(dec, f"data/decisions/{split}.parquet", compression="zstd")
pq.write_table(clean, f"data/clean/{split}.parquet", compression="zstd")
with open(f"data/changes/{split}.csv", "w") as f:
    f.write("file,action\\n")
    for s, a in zip(dec.column("sample_id").to_pylist(), dec.column("action").to_pylist()):
        if a != "keep":
            f.write(f"{s},{a}\\n")
counts = {a: dec.column("action").to_pylist().count(a) for a in ("keep", "fix", "remove")}
json.dump({"split": split, **counts, "thresholds": {"h3": h3}, "thresholds_resolved": {"h3": h3},
           "models": ["resnet", "effnet"]}, open(f"metrics/cleanup/{split}.json", "w"), indent=1, sort_keys=True)
'''

DVC_YAML = {
    "metrics": ["metrics/summary.json"],
    "stages": {
        "models": {"cmd": "python -c \"import os; os.makedirs('data/models', exist_ok=True); "
                          "open('data/models/m.bin', 'wb').write(bytes(range(256)) * 64)\"",
                   "outs": ["data/models/m.bin"]},
        "clean": {"foreach": list(SPLITS), "do": {
            "cmd": "python make_outputs.py ${item}",
            "deps": ["make_outputs.py", "inputs/${item}", "data/models/m.bin"],
            "params": ["h3"],
            "outs": ["data/decisions/${item}.parquet", "data/clean/${item}.parquet", "data/changes/${item}.csv"],
            "metrics": [{"metrics/cleanup/${item}.json": {"cache": False}}],
        }},
    },
}


@dataclass
class Project:
    """A release project.

    Attributes:
        repo: The repository.
        roots: The user's copy of each split (what ``apply --root`` reads).
        clean: Each split's clean-manifest rows (release with ``h3 = 2``).
    """

    repo: Path
    roots: dict[str, Path]
    clean: dict[str, pd.DataFrame]


def run(*cmd: str, cwd: Path, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command with :data:`ENV`; with ``check``, fail quoting its output."""
    res = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    if check:
        assert res.returncode == 0, f"{' '.join(cmd)} failed in {cwd}:\n{res.stdout}\n{res.stderr}"
    return res


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """``dvc args`` (this interpreter's DVC)."""
    return run(sys.executable, "-m", "dvc", *args, cwd=cwd, check=check)


def imagenet_clean(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """``imagenet-clean args`` as a user runs it."""
    return run(sys.executable, "-c", "from imagenet_clean.cli import main; main()", *args, cwd=cwd, check=check)


def git(*args: str, cwd: Path) -> str:
    """``git args``; its stdout."""
    return run("git", *args, cwd=cwd).stdout


def md5(path: Path) -> str:
    """md5 of a file, as DVC records it."""
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def lock_outs(repo: Path) -> dict[str, str]:
    """``path -> md5`` of every output in ``repo/dvc.lock``."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for st in lock["stages"].values() for o in st.get("outs", [])}


def _decisions(root: Path, clean: pd.DataFrame) -> pd.DataFrame:
    """The decisions behind a clean manifest of make_split: every image under root, kept, fixed or removed."""
    by_id = {r.sample_id: r for r in clean.itertuples() if r.action != "placeholder"}
    rows = []
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        sid = p.relative_to(root).as_posix()
        r = by_id.get(sid)
        action = "remove" if r is None else ("fix" if r.action in ("fix", "fix+merge") else "keep")
        label = -1 if r is None else int(r.orig_label)
        rows.append({"sample_id": sid, "path": sid, "label": label, "action": action,
                     "new_label": label if r is None or action == "keep" else int(r.label),
                     "rules": ["cl_remove"] if r is None else (["cl_fix"] if action == "fix" else []),
                     "content_hash": io.file_digest(p)})
    return pd.DataFrame(rows)


def make_release_project(tmp: Path, *, extra_stages: dict | None = None) -> Project:
    """The project after ``dvc repro`` and a commit (nothing published yet); see the module docstring.

    ``extra_stages`` are added to ``dvc.yaml`` (e.g. a stage with persisted folder outputs, as ``fit`` has).
    """
    tmp.mkdir(parents=True, exist_ok=True)
    repo = tmp / "repo"
    (repo / "inputs").mkdir(parents=True)
    roots, cleans = {}, {}
    for split in SPLITS:
        root, manifest, df = make_split(tmp / "user", split)
        roots[split], cleans[split] = root, df
        (repo / "inputs" / split).mkdir()
        os.replace(manifest, repo / "inputs" / split / "clean.parquet")
        io.write_table(repo / "inputs" / split / "decisions.parquet", _decisions(root, df))
    (repo / "make_outputs.py").write_text(STAGE_SCRIPT)
    (repo / "dvc.yaml").write_text(yaml.safe_dump({**DVC_YAML, "stages": {**DVC_YAML["stages"], **(extra_stages or {})}},
                                                  sort_keys=False))
    (repo / "params.yaml").write_text("h3: 2\n")
    (repo / "metrics").mkdir()
    (repo / "metrics" / "summary.json").write_text(json.dumps({"released": True}) + "\n")
    (repo / ".gitignore").write_text("/data/\n")
    git("init", "-q", "-b", "main", cwd=repo)
    dvc("init", "-q", cwd=repo)
    dvc("repro", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "pipeline run", cwd=repo)
    return Project(repo, roots, cleans)
