"""DVC's own cost per stage: ruamel.yaml's C parser against its pure-Python parser, side by side.

Usage::

    python benchmarks/bench_dvc_overhead.py [--rounds 5]

DVC parses ``params.yaml`` once per stage that reads params, ``dvc.yaml`` and
``dvc.lock`` on every status check, and re-parses and rewrites ``dvc.lock``
after every stage it runs. ruamel.yaml 0.19 made its C parser
(``ruamel.yaml.clib``) an optional extra; without it every parse runs in pure
Python. This script clones the project (committed files only) into a temporary
folder and times, alternating between the two parsers in each round:

* ``dvc status`` (every stage's dependencies and params checked);
* ``dvc repro -f -s ingest@imagenet_r`` (one stage that does almost nothing: what
  DVC adds to each stage of a ``dvc repro``; ``generate`` runs once first for
  the classes file it reads);
* ``dvc repro -f -s generate ingest@train ingest@val ingest@v2 ingest@imagenet_r``
  (the pipeline's first five stages, 2,400 images generated and ingested).

The pure parser is forced by hiding ``_ruamel_yaml`` (the C module) from the
process. Prints median seconds and the ratio pure / C; the last line is JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PURE = "import sys; sys.modules['_ruamel_yaml'] = None; from dvc.cli import main; sys.exit(main(sys.argv[1:]))"
C = "import sys; from dvc.cli import main; sys.exit(main(sys.argv[1:]))"
DATA_STAGES = ["generate", "ingest@train", "ingest@val", "ingest@v2", "ingest@imagenet_r"]
COMMANDS = {"status": ["status"], "one_stage": ["repro", "-f", "-s", "ingest@imagenet_r"],
            "data_stages": ["repro", "-f", "-s", *DATA_STAGES]}


def timed(code: str, args: list[str], cwd: Path) -> float:
    """Seconds one ``dvc`` command takes in a fresh interpreter."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    try:
        import _ruamel_yaml  # noqa: F401
    except ImportError:
        sys.exit("ruamel.yaml.clib is not installed: nothing to compare (pip install -e .)")
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        # ingest@imagenet_r depends on the generated classes file
        subprocess.run([sys.executable, "-m", "dvc", "repro", "-q", "-s", "generate"], cwd=repo, check=True)
        times: dict = {name: {"pure": [], "c": []} for name in COMMANDS}
        for r in range(args.rounds):
            for name, cmd in COMMANDS.items():
                for mode, code in (("pure", PURE), ("c", C)) if r % 2 else (("c", C), ("pure", PURE)):
                    times[name][mode].append(timed(code, cmd, repo))
    out = {}
    for name, t in times.items():
        pure, c = statistics.median(t["pure"]), statistics.median(t["c"])
        out[name] = {"pure_s": round(pure, 3), "c_s": round(c, 3), "ratio": round(pure / c, 2), "saved_s": round(pure - c, 3)}
        print(f"{name:10s} pure {pure:6.2f} s   C {c:6.2f} s   pure/C {pure / c:4.2f}x   saved {pure - c:5.2f} s")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
