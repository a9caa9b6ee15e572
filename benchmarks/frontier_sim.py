"""The frontier path against a teacher with known error rates (the simulated frontier).

    python benchmarks/frontier_sim.py --out benchmarks/results/frontier_sim_cpu.json [--quick]

Curriculum rounds of a fixed policy (it answers colour and shape questions, fails the rest; no
training) run against ``curriculum.frontier.sim`` in this process, one round per row (budget 192,
the default generator mix: half to the frontier's proposals), with every candidate's answer
checked against the truth: the world's scene of each failed picture, or the scene the simulated
image model really drew. The teacher writes up to 12 proposals per request (no more than the
request asks for); at teacher error e a
proposal's answer is wrong with probability e (a quarter of those are slips a rationale catches)
and so is each judge's vote. Reported, per part:

- ``perception``: how often the simulator's reading of a world picture changes an answer, by size;
- ``filters``: for each preset (``analyze`` with a 2-of-3 blind panel, ``lrf`` with its analyst as
  scoring judge, ``cads`` with a committee of two and the 2-of-3 panel), teacher error (0, 0.2,
  0.4), judges on or off (off: unverified answers allowed), rationales on or off (at 0.2), and
  data with scenes (the world: a program checks answers about a failed picture) or without (the same pictures with their scenes withheld, as a user's own data): precision of the
  accepted proposals (share with a right answer), recall (share of the right proposals kept),
  where wrong answers were stopped, calls, cost per accepted proposal and per added example;
- ``correlation``, ``lrf_judge``, ``scope`` (at error 0.2): the panel when its judges' mistakes are
  shared; lrf judged by its own analyst or by another model; ``judge_scope`` all or unverified;
- ``offline``: the offline analyzer's round at the same budget (no API): what it adds, how right;
- ``wall``: a round's wall time at concurrency 1, 4 and 16 with 0.5 s calls;
- ``budget``: what a round spends against a 0.05 USD round budget at concurrency 1, 4 and 16;
- ``async``: the share of a short real training run of the tiny model (CPU, 32 px, 240 steps, two
  rounds) spent in rounds, sync and async, with calls of 0.5, 2 and 5 s, the simulator in its own
  process.

Prices: the analyst and committee at gpt-4o's [2.5, 10] USD per million tokens, judges at
gpt-4o-mini's [0.15, 0.6], pictures at 0.042 USD (gpt-image-1, medium).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# One thread per process (the simulator's process included): this machine's cores are shared.
for _name, _value in (("OMP_NUM_THREADS", "1"), ("HF_HUB_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_name, _value)

from benchmarks.frontier_sim_rounds import (  # noqa: E402
    ANALYST,
    IMAGE_PRICE,
    JUDGES,
    KEY_ENV,
    PAINTER,
    PRESETS,
    PRICES,
    PROPOSALS,
    FixedPolicy,
    Truth,
    frontier,
    ratio,
    run_one,
    teacher,
    withheld,
)
from curriculum.engine import Curriculum  # noqa: E402
from curriculum.frontier.sim import SimConfig, SimServer, read_scene  # noqa: E402
from curriculum.types import Example  # noqa: E402
from curriculum.world import Spec, build_splits, generate, skill_names  # noqa: E402
from curriculum.world.questions import answer_from_scene  # noqa: E402
from train.config import CurriculumConfig  # noqa: E402

# ----------------------------------------------------------------------------- parts


def perception(per_skill: dict[int, int]) -> dict[str, Any]:
    """How many answers change when computed on the scene read from the pixels, by picture size."""
    out = {}
    for size, n in per_skill.items():
        wrong: Counter[str] = Counter()
        t0 = time.perf_counter()
        for skill in skill_names():
            for ex in generate(Spec(skill, {}, n), seed=100 + size, image_size=size):
                if answer_from_scene(read_scene(ex.image), ex.question) != answer_from_scene(
                    ex.scene, ex.question
                ):
                    wrong[skill] += 1
        items = n * len(skill_names())
        out[str(size)] = {"items": items, "answers_changed": sum(wrong.values()), "by_skill": dict(wrong),
                          "ms_per_picture": round(1000 * (time.perf_counter() - t0) / items, 1)}  # fmt: skip
    return out


def filters(world: dict[str, list[Example]], errors: list[float], budget: int, tmp: Path, quick: bool,
            with_rationales: tuple[float, ...] = (0.2, 0.4)) -> list[dict[str, Any]]:  # fmt: skip
    """Every preset x teacher error x data x judges on/off (x rationales on/off at the errors of
    ``with_rationales``)."""
    rows = []
    for preset in PRESETS:
        for error in errors:
            for scened in (True, False):
                for panel in (True, False):
                    for rationales in (False, True):
                        if (quick and (rationales or not scened)) or (
                            rationales and error not in with_rationales
                        ):
                            continue
                        config = teacher(error)
                        got = run_one(config, world, tmp, preset, panel=panel, scened=scened, budget=budget,
                                      rationales=rationales)  # fmt: skip
                        row = {"preset": preset, "error": error, "data": "world" if scened else "no_scenes",
                               "judges": panel, "rationales": rationales, **got}  # fmt: skip
                        _show(
                            row,
                            "preset",
                            "error",
                            "data",
                            "judges",
                            "rationales",
                            "precision",
                            "recall",
                            "accepted",
                            "calls",
                        )
                        rows.append(row)
    return rows


def _show(row: dict[str, Any], *keys: str) -> None:
    print(json.dumps({k: row[k] for k in keys}), flush=True)


def panels(world: dict[str, list[Example]], budget: int, tmp: Path) -> dict[str, Any]:
    """At teacher error 0.2: the 2-of-3 panel when its judges' mistakes are shared (data without
    scenes); lrf judged by its own analyst or by an independent judge; ``judge_scope``."""
    out: dict[str, Any] = {"correlation": [], "lrf_judge": [], "scope": []}
    for preset in ("analyze", "cads"):
        for corr in (0.0, 0.5, 1.0):
            config = teacher(0.2, correlation=corr)
            row = {
                "preset": preset,
                "correlation": corr,
                **run_one(config, world, tmp, preset, scened=False, budget=budget),
            }
            _show(row, "preset", "correlation", "precision", "recall", "accepted")
            out["correlation"].append(row)
    for scened in (True, False):
        for judge in ("analyst", "independent"):
            config = teacher(0.2)
            named = None if judge == "analyst" else JUDGES[:1]
            row = {"judge": judge, "data": "world" if scened else "no_scenes",
                   **run_one(config, world, tmp, "lrf", scened=scened, budget=budget, judges=named)}  # fmt: skip
            _show(row, "judge", "data", "precision", "recall", "accepted")
            out["lrf_judge"].append(row)
    for preset in PRESETS:
        for scened in (True, False):
            for scope in ("all", "unverified"):
                config = teacher(0.2)
                row = {"preset": preset, "data": "world" if scened else "no_scenes", "scope": scope,
                       **run_one(config, world, tmp, preset, scened=scened, budget=budget, scope=scope)}  # fmt: skip
                _show(
                    row,
                    "preset",
                    "data",
                    "scope",
                    "calls",
                    "offline_judged",
                    "offline_dropped_by_judge",
                    "recall",
                )
                out["scope"].append(row)
    return out


def offline(world: dict[str, list[Example]], budget: int, tmp: Path) -> list[dict[str, Any]]:
    """The offline analyzer's round at the same budget: what it adds, how right, at no API cost."""
    rows = []
    for scened in (True, False):
        train, probe = (
            (world["train"], world["probe"])
            if scened
            else (withheld(world["train"]), withheld(world["probe"]))
        )
        cfg = CurriculumConfig(enabled=True, every=10, budget=budget, student_check="off")
        cur = Curriculum(cfg, tmp / "offline", train, probe, {"test": world["test"]}, 64, 0)
        result = cur.update(10, FixedPolicy())
        cur.close()
        with SimServer(SimConfig()) as sim:  # only its record of drawn pictures (none) is read
            truth = Truth(sim, world)
            kept = [c for c in result.candidates if c.dropped is None]
            right = sum(truth.right(c) for c in kept)
        rows.append({"data": "world" if scened else "no_scenes", "pool_added": len(kept),
                     "pool_precision": ratio(right, len(kept)), "usd": 0.0,
                     "by_generator": dict(Counter(c.generator for c in kept))})  # fmt: skip
        _show(rows[-1], "data", "pool_added", "pool_precision", "by_generator")
    return rows


def wall(world: dict[str, list[Example]], latency: float, tmp: Path) -> list[dict[str, Any]]:
    """One round's wall time (and where it went) at concurrency 1, 4 and 16, calls of ``latency`` s."""
    rows = []
    for preset in PRESETS:
        for concurrency in (1, 4, 16):
            with SimServer(SimConfig(seed=0, latency=latency, latency_sigma=0.3)) as sim:
                fc = frontier(sim.url, preset, concurrency=concurrency)
                cfg = CurriculumConfig(enabled=True, every=10, budget=32, max_weaknesses=3, analyzer="openai",
                                       frontier=fc, student_check="off")  # fmt: skip
                cur = Curriculum(
                    cfg, tmp / "wall", world["train"], world["probe"], {"test": world["test"]}, 64, 0
                )
                t0 = time.perf_counter()
                result = cur.update(10, FixedPolicy())
                seconds = time.perf_counter() - t0
                cur.close()
                timings = json.loads((tmp / "wall" / "round_00001" / "round.json").read_text())["timings"]
            m = result.metrics
            rows.append({"preset": preset, "concurrency": concurrency, "seconds": round(seconds, 1),
                         "analyse_s": round(timings.get("analyse_s", 0), 1), "generate_s": round(timings.get("generate_s", 0), 1),
                         "filter_s": round(timings.get("filter_s", 0), 1), "calls": int(m.get("curriculum/frontier_calls", 0)),
                         "images": int(m.get("curriculum/frontier_images", 0)), "status": result.status})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def budget_overshoot(world: dict[str, list[Example]], tmp: Path) -> list[dict[str, Any]]:
    """A round budget of 0.05 USD with calls of 0.2 s: what the round spends at each concurrency."""
    rows = []
    for concurrency in (1, 4, 16):
        with SimServer(SimConfig(seed=0, latency=0.2, latency_sigma=0.3)) as sim:
            fc = dataclasses.replace(frontier(sim.url, "analyze", concurrency=concurrency), round_budget=0.05)
            cfg = CurriculumConfig(
                enabled=True, every=10, budget=96, analyzer="openai", frontier=fc, student_check="off"
            )
            cur = Curriculum(
                cfg, tmp / "budget", world["train"], world["probe"], {"test": world["test"]}, 64, 0
            )
            result = cur.update(10, FixedPolicy())
            cur.close()
        spent = result.metrics.get("curriculum/round_cost_usd", cur.frontier.ledger.round_cost)
        rows.append({"concurrency": concurrency, "round_budget_usd": 0.05, "spent_usd": round(spent, 4),
                     "calls": int(result.metrics.get("curriculum/frontier_calls", 0)), "status": result.status})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def training(
    latencies: list[float], steps: int, every: int, staleness: int, tmp: Path
) -> list[dict[str, Any]]:
    """Short real training runs of the tiny model, sync and async, the simulator in its own process."""
    import socket
    import subprocess
    import urllib.request

    from train.config import load_config
    from train.loop import run

    rows = []
    for latency in latencies:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "curriculum.frontier.sim", "--port", str(port), "--latency",
                                   str(latency), "--latency-sigma", "0.3"], stdout=subprocess.DEVNULL)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/v1"
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"{url}/models", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            judge = json.dumps({"model": JUDGES[0], "base_url": url, "api_key_env": KEY_ENV, "timeout": 60})
            painter = json.dumps({"model": PAINTER, "base_url": url, "api_key_env": KEY_ENV, "timeout": 60})
            for mode in ("sync", "async"):
                cfg = load_config(None, [
                    f"run.name={mode}-{latency}", f"run.output_dir={tmp / 'train'}", "run.seed=0",
                    f"model.name_or_path={tmp / 'tiny-32'}", "model.build_tiny=qwen2_5_vl",
                    "data.world.image_size=32", "data.world.train_size=1200", "data.world.probe_size=60",
                    "data.world.test_size=54", f"train.steps={steps}", "train.batch_size=8", "train.cpu=true",
                    "train.log_every=40", "train.save_every=0", "train.save_model=false", "train.resume=never",
                    "eval.at_start=false", "eval.every=0", "eval.batch_size=27", "eval.max_new_tokens=3",
                    "wandb.enabled=false", "curriculum.enabled=true", f"curriculum.mode={mode}",
                    f"curriculum.every={every}", f"curriculum.max_staleness={staleness}", "curriculum.budget=32",
                    "curriculum.max_weaknesses=3", "curriculum.analyzer=openai", f"curriculum.frontier.model={ANALYST}",
                    f"curriculum.frontier.base_url={url}", f"curriculum.frontier.api_key_env={KEY_ENV}",
                    f"curriculum.frontier.judges=[{judge}]", "curriculum.frontier.judge_scope=unverified",
                    f"curriculum.frontier.image_model={painter}", f"curriculum.frontier.image_price={IMAGE_PRICE}",
                    "curriculum.frontier.images_per_setting=2", "curriculum.frontier.image_size=256x256",
                    "curriculum.frontier.cache=null", "curriculum.frontier.concurrency=4",
                    f"curriculum.frontier.prices={json.dumps(PRICES)}",
                ])  # fmt: skip
                summary = run(cfg)
                c = summary["curriculum"]
                rows.append({"latency_s": latency, "mode": mode, "steps": steps, "rounds": len(c["rounds"]),
                             "rounds_ok": sum(r["status"] == "ok" for r in c["rounds"]),
                             "loop_seconds": c["loop_seconds"], "round_seconds": c["round_seconds"],
                             "round_share": c["round_share"]})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return rows


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--quick", action="store_true", help="a few configurations of each part (a smoke test)"
    )
    parser.add_argument("--parts", default="perception,filters,panels,offline,wall,budget,async")
    parser.add_argument("--errors", default="0,0.2,0.4")
    parser.add_argument("--rationale-errors", default="0.2", help="errors also run with rationales")
    parser.add_argument("--budget", type=int, default=192, help="candidates per round in the filter parts")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per call in the wall-time part")
    parser.add_argument("--train-latencies", default="0.5,2,5")
    parser.add_argument("--train-steps", type=int, default=240)
    parser.add_argument("--update", action="store_true", help="keep the other parts of an existing --out")
    args = parser.parse_args(argv)
    os.environ.setdefault(KEY_ENV, "sim")
    parts = set(args.parts.split(","))
    quick = args.quick
    errors = [float(e) for e in args.errors.split(",")]
    world = build_splits(seed=0, train_size=240, probe_size=120, test_size=54, image_size=64)
    result: dict[str, Any] = {
        "args": vars(args),
        "environment": {
            "machine": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"),
        },  # fmt: skip
        "setup": {
            "policy": "answers colour and shape right, every other skill wrong (no training)",
            "world": "seed 0, 64 px, 120 probe items; one round per row (its failures: the probe items of the seven skills the policy fails, at most 64)",
            "proposals_per_request": PROPOSALS,
            "prices": PRICES,
            "image_price": IMAGE_PRICE,
            "teacher_error": "proposal_error = judge_error = the row's error; correlation 0 unless said",
            "slip_share": SimConfig().slip_share,
        },  # fmt: skip
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if "perception" in parts:
            result["perception"] = perception({32: 2, 64: 3} if quick else {32: 50, 64: 300, 128: 60})
        if "filters" in parts:
            with_rationales = tuple(float(e) for e in args.rationale_errors.split(",") if e)
            result["filters"] = filters(
                world, errors, 32 if quick else args.budget, tmp, quick, with_rationales
            )
        if "panels" in parts and not quick:
            result.update(panels(world, args.budget, tmp))
        if "offline" in parts:
            result["offline"] = offline(world, args.budget, tmp)
        if "wall" in parts:
            result["wall"] = wall(world, 0.05 if quick else args.latency, tmp)
        if "budget" in parts:
            result["budget"] = budget_overshoot(world, tmp)
        if "async" in parts:
            latencies = [0.05] if quick else [float(x) for x in args.train_latencies.split(",")]
            result["async"] = training(latencies, 8 if quick else args.train_steps, 4 if quick else 80,
                                       2 if quick else 60, tmp)  # fmt: skip
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.update and Path(args.out).exists():
        # The parts run now replace their earlier rows; each part's settings and date go with it.
        old = json.loads(Path(args.out).read_text())
        ran = sorted(k for k in result if k not in ("args", "environment", "setup", "seconds"))
        runs = old.pop("runs", [{"parts": [k for k in old if k not in ("args", "environment", "setup", "seconds")],
                                 "args": old.get("args"), "environment": old.get("environment"),
                                 "seconds": old.get("seconds")}])  # fmt: skip
        runs.append({"parts": ran, "args": result["args"], "environment": result["environment"],
                     "seconds": result["seconds"]})  # fmt: skip
        result = {**old, **result, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
