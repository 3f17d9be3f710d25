"""`imagenet-clean tune` against a reviewer who knows the truth, on a project's real outputs (the embedded default).

Run in a project where `dvc repro` made the decisions and kept the predictions (a fresh clone after
`dvc repro`), with the generated truth (`data/raw/truth.parquet`):

    python benchmarks/tune_standin.py --project . --split val --audit 100 --seeds 0,1,2,3,4 [--cams]

Per seed: the stand-in reviewer (review/standin.py `standin_verdicts`) judges every change and `--audit`
kept images drawn as the review app draws them; its verdicts are cut in two halves by the seed; tune
proposes thresholds from the tuning half; the proposed and the current (paper's) thresholds are scored on
the held-out half, with Wilson 95 % intervals. Prints one block per seed and a JSON line of all figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, default=Path("."))
    ap.add_argument("--split", default="val")
    ap.add_argument("--audit", type=int, default=100)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--param", default="h1,h2,h3")
    ap.add_argument("--grid", action="append", default=[])
    ap.add_argument("--cams", action="store_true", help="compute the CAMs the settings lack (else: undecided)")
    a = ap.parse_args(argv)

    from imagenet_clean.config import load_params
    from imagenet_clean.review.standin import standin_experiment
    from imagenet_clean.review.tune import load_inputs
    from imagenet_clean.workspace import Workspace

    params = load_params(a.project / "params.yaml")
    ws = Workspace(a.project)
    t0 = time.perf_counter()
    inputs = load_inputs(params, ws, a.split)
    t_load = time.perf_counter() - t0
    results = []
    for seed in (int(s) for s in a.seeds.split(",")):
        t1 = time.perf_counter()
        r = standin_experiment(params, ws, a.split, audit=a.audit, seed=seed, cams=a.cams, param=a.param, grid=a.grid,
                               inputs=inputs)
        r["seconds"] = round(time.perf_counter() - t1, 2)
        results.append(r)
        print(f"--- seed {seed}: {r['reviewed']['all']} verdicts ({r['verdicts']}), tuning {r['reviewed']['tuning']}, "
              f"held out {r['reviewed']['held_out']}; current {r['current']}, proposed {r['proposed']} "
              f"({r['line'] or 'keep the current'}); {r['seconds']} s")
        for half in ("tuning", "held_out"):
            for name in ("current", "proposed"):
                x = r[half][name]
                print(f"  {half:8} {name:8} agreement {x['agreement']:.3f} [{x['low']:.3f}, {x['high']:.3f}] "
                      f"({x['agree']}/{x['reviewed']}; wins {x['wins']}, losses {x['losses']}; fix {x['fix']}, "
                      f"remove {x['remove']}; {x['changed_unreviewed']} unreviewed samples change)")
        b = r["best_raw"]
        x = b["held_out"]
        print(f"  best raw agreement on the tuning half, no sign test: {b['setting']}; held out {x['agreement']:.3f} "
              f"[{x['low']:.3f}, {x['high']:.3f}] ({x['agree']}/{x['reviewed']}; wins {x['wins']}, losses {x['losses']})")
    ok = all(r["held_out"]["proposed"]["agreement"] >= r["held_out"]["current"]["agreement"] for r in results)
    print(f"evidence loaded in {t_load:.1f} s; held-out agreement of the proposed >= the current's on every seed: {ok}")
    print(json.dumps([{k: v for k, v in r.items() if k != "text"} for r in results]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
