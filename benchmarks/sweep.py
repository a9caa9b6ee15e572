"""Run variants of one config side by side and collect their learning curves in one JSON.

    python benchmarks/sweep.py --config configs/grpo_demo.yaml --out benchmarks/results/x.json \
        --variant lr1e-4 train.lr=1e-4 --variant lr3e-4 train.lr=3e-4 -- train.steps=400

Each ``--variant NAME OVERRIDE...`` is one run (``run.name`` becomes ``sweep-NAME``); overrides
after ``--`` apply to every variant. Runs go in parallel (``--parallel``), each with
``--threads`` CPU threads, and each is stopped after ``--timeout`` seconds: a run cut short still
reports the evaluations it reached. For every run the JSON holds the test accuracy at each
evaluation (overall and per skill), the windowed training metrics (reward, loss, ...), the wall
time and whether it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_KEYS = ("train/loss", "train/reward_mean", "train/pass_rate", "train/zero_spread_fraction")


def parse_variants(argv: list[str]) -> tuple[list[str], list[tuple[str, list[str]]], list[str]]:
    """Split ``argv`` into the script's own flags, the variants and the shared overrides."""
    shared: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, shared = argv[:cut], argv[cut + 1 :]
    own, variants, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--variant":
            if i + 1 >= len(argv):
                raise SystemExit("--variant needs a name")
            name, j = argv[i + 1], i + 2
            while j < len(argv) and not argv[j].startswith("--"):
                j += 1
            variants.append((name, argv[i + 2 : j]))
            i = j
        else:
            own.append(argv[i])
            i += 1
    return own, variants, shared


def curves(run_dir: Path) -> dict:
    """Evaluations and training windows read back from a run's ``metrics.jsonl``."""
    evals, train = [], []
    path = run_dir / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        row = json.loads(line)
        if "eval/accuracy" in row:
            skills = {k[len("eval/skill/") :]: v for k, v in row.items() if k.startswith("eval/skill/")}
            point = {"step": row["step"], "accuracy": row["eval/accuracy"], "skills": skills}
            if "eval/sampled" in row:  # eval.samples > 0: the sampled pass rate and pass@k beside greedy
                point.update(sampled=row["eval/sampled"], pass_at_k=row["eval/pass_at_k"])
            evals.append(point)
        if any(k in row for k in TRAIN_KEYS):
            # Each reward function's mean over every completion drawn (reward_mean and pass_rate
            # cover the groups trained on, which dynamic sampling filters).
            keys = [k for k in row if k in TRAIN_KEYS or k.startswith("train/reward/")]
            train.append({"step": row["step"], **{k[6:]: row[k] for k in keys}})
    return {"evals": evals, "train": train}


def main(argv: list[str] | None = None) -> int:
    own, variants, shared = parse_variants(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=540.0)
    parser.add_argument("--logs", help="folder for each run's log (default: next to --out)")
    args = parser.parse_args(own)
    if not variants:
        parser.error("name at least one --variant")
    logs = Path(args.logs or Path(args.out).parent)
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    queue, running, results = list(variants), {}, {}
    t0 = time.perf_counter()
    while queue or running:
        while queue and len(running) < args.parallel:
            name, overrides = queue.pop(0)
            cmd = [sys.executable, "-m", "train", "--config", args.config, *shared, *overrides,
                   f"run.name=sweep-{name}", "train.resume=never"]  # fmt: skip
            log = open(logs / f"sweep-{name}.log", "w")  # noqa: SIM115 (closed when the run ends)
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            running[name] = (proc, log, time.perf_counter(), overrides)
        time.sleep(2)
        for name, (proc, log, started, overrides) in list(running.items()):
            overdue = time.perf_counter() - started > args.timeout
            if proc.poll() is None and not overdue:
                continue
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
            results[name] = {
                "overrides": shared + overrides,
                "finished": proc.returncode == 0,
                "wall_s": round(time.perf_counter() - started, 1),
                **curves(ROOT / "runs" / f"sweep-{name}"),
            }
            del running[name]
            ev = results[name]["evals"]
            print(f"{name}: rc {proc.returncode}, {len(ev)} evals, accuracy "
                  + " ".join(f"{e['step']}:{e['accuracy']:.3f}" + (f"/{e['sampled']:.3f}" if "sampled" in e else "")
                             for e in ev), flush=True)  # fmt: skip
    out = {"config": args.config, "wall_s": round(time.perf_counter() - t0, 1), "runs": results}
    Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
