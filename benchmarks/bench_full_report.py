"""Full-size ``report`` and ``tables`` after ``clean`` on the 1,281,167-image training split: time and peak memory.

Usage (after ``bench_full_clean.py``)::

    python benchmarks/bench_full_report.py /work/bench18/proj

Each command runs in a fresh process as DVC would run it (wall and CPU time,
peak RSS). ``tables`` predicts ``tables.extra_models`` first; they are set to
none here, so that the figure is the table's own work on the 1.28M-row
decisions, clean manifest and prediction files (prediction costs are in
``bench_predict.py``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from fullsize import CLI, run_measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", type=Path)
    args = ap.parse_args()
    params = yaml.safe_load((args.project / "params.yaml").read_text())
    params.setdefault("tables", {})["extra_models"] = {}
    (args.project / "params_tables.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    res = {}
    for name, cmd in (("tables", ["tables", "--params", "params_tables.yaml"]), ("report", ["report", "--params", "params_tables.yaml"])):
        r = run_measured(CLI + cmd, cwd=args.project)
        res[name] = {k: r[k] for k in ("wall_s", "cpu_s", "max_rss_mb")}
        print(f"{name}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, peak RSS {r['max_rss_mb']} MB", flush=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
