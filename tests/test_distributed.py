"""Distributed runs on CPU (two gloo ranks) and the launch configs of launch/.

The GPU side (DeepSpeed ZeRO-2/3, FSDP through these same configs) is tests/test_gpu_launch.py.
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import tiny_run_overrides
from train.distributed import backward_pass, fill_deepspeed_config, zero_stage

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = sorted((ROOT / "launch" / "accelerate").glob("*.yaml"))
CURRICULUM = [
    "curriculum.enabled=true",
    "curriculum.budget=24",
    "curriculum.mix.ratio=0.5",
    "eval.at_start=false",
]


# ----------------------------------------------------------------------------- launch/


def test_every_strategy_has_a_config_that_accelerate_reads():
    from accelerate.commands.config.config_args import load_config_from_file

    names = {p.stem for p in ACCELERATE_CONFIGS}
    assert names == {"1gpu", "ddp", "zero2", "zero3", "zero3_offload", "fsdp"}
    for path in ACCELERATE_CONFIGS:
        first = path.read_text().splitlines()[:4]
        assert first[0].startswith("# ") and any("accelerate launch" in line for line in first), path.name
        cfg = load_config_from_file(str(path))
        assert cfg.num_machines == 1 and not cfg.use_cpu
        if path.stem.startswith("zero"):
            ds_file = ROOT / cfg.deepspeed_config["deepspeed_config_file"]
            ds = json.loads(ds_file.read_text())
            assert ds_file.stem == path.stem and ds["zero_optimization"]["stage"] == int(path.stem[4])
            offload = ds["zero_optimization"].get("offload_optimizer", {}).get("device")
            assert (offload == "cpu") == path.stem.endswith("offload")
            assert cfg.deepspeed_config["zero3_init_flag"] == (ds["zero_optimization"]["stage"] == 3)
    assert load_config_from_file(str(ROOT / "launch/accelerate/fsdp.yaml")).fsdp_config["fsdp_version"] == 2


@pytest.mark.parametrize("script", ["multinode.sh", "slurm.sbatch"])
def test_the_multi_node_scripts_parse_and_say_how_to_use_them(script):
    path = ROOT / "launch" / script
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    assert "NUM_MACHINES" in path.read_text() and path.read_text().splitlines()[1].startswith("# ")


def test_multinode_names_the_missing_setting():
    env = {k: v for k, v in os.environ.items() if k not in ("MAIN_ADDR", "NUM_MACHINES", "MACHINE_RANK")}
    proc = subprocess.run(["bash", str(ROOT / "launch/multinode.sh"), "configs/demo.yaml"], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode != 0 and "MAIN_ADDR" in proc.stderr


def _accelerator(ds_config):
    plugin = SimpleNamespace(deepspeed_config=ds_config) if ds_config is not None else None
    dist = SimpleNamespace(name="DEEPSPEED" if plugin else "NO")
    return SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin), distributed_type=dist,
                           gradient_accumulation_steps=2, num_processes=4)  # fmt: skip


def test_deepspeed_auto_fields_are_filled_from_the_run_config():
    ds = json.loads((ROOT / "launch/deepspeed/zero3.json").read_text())
    acc = _accelerator(ds)
    fill_deepspeed_config(acc, batch_size=8, max_grad_norm=0.5)
    assert ds["train_micro_batch_size_per_gpu"] == 8 and ds["gradient_clipping"] == 0.5
    assert ds["train_batch_size"] == 8 * 2 * 4 and zero_stage(acc) == 3
    fixed = {"train_micro_batch_size_per_gpu": 2, "gradient_clipping": 2.0, "zero_optimization": {"stage": 2}}
    fill_deepspeed_config(_accelerator(fixed), batch_size=8, max_grad_norm=0.5)
    assert fixed["train_micro_batch_size_per_gpu"] == 2 and fixed["gradient_clipping"] == 2.0
    assert zero_stage(_accelerator(None)) == 0


def test_only_the_last_backward_pass_of_a_step_synchronises():
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    seen = []
    for last in (False, False, True):
        with backward_pass(acc, None, last):
            seen.append(acc.sync_gradients)
    assert seen == [False, False, True] and acc.sync_gradients


# ----------------------------------------------------------------------------- two gloo ranks


def _two_ranks(tmp_path, model, *overrides, env=None):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "train",
           *tiny_run_overrides(tmp_path, model), *CURRICULUM, "train.batch_size=4", *overrides]  # fmt: skip
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, capture_output=True,
                          text=True, timeout=400)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_async_rounds_agree_across_ranks_and_resume(tmp_path, tiny_qwen):
    """Async on two ranks: rank 0's worker prepares each round, both ranks inject it at the same
    step and end with the same pool (checked after every commit; a mismatch fails the round);
    a resumed run continues with the pool and rounds it had."""
    args = ["run.name=a", "curriculum.mode=async", "curriculum.every=3", "curriculum.max_staleness=1",
            "train.save_every=4"]  # fmt: skip
    _two_ranks(tmp_path, tiny_qwen, *args, "train.steps=8")
    first = json.loads((tmp_path / "a" / "summary.json").read_text())
    rounds = first["curriculum"]["rounds"]
    assert [(r["round"], r["status"]) for r in rounds] == [(1, "ok"), (2, "ok")]
    records = [json.loads((tmp_path / "a" / "curriculum" / f"round_{k:05d}" / "round.json").read_text())
               for k in (1, 2)]  # fmt: skip
    assert [r["inject_step"] for r in records] == [4, 7]
    out = _two_ranks(tmp_path, tiny_qwen, *args, "train.steps=11", "train.resume=auto")
    assert "resumed from" in out
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    rounds = summary["curriculum"]["rounds"]
    assert [(r["round"], r["status"]) for r in rounds] == [(1, "ok"), (2, "ok"), (3, "ok")]
    assert summary["curriculum"]["pool_size"] >= first["curriculum"]["pool_size"] > 0


@pytest.mark.slow
def test_an_outage_on_the_main_rank_fails_the_round_everywhere_and_training_goes_on(tmp_path, tiny_qwen):
    """Only rank 0 calls the analyzer; when its endpoint is down the round is recorded as failed
    on both ranks (neither waits for the other) and the run finishes."""
    with socket.socket() as s:  # a port nothing listens on: every call is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _two_ranks(tmp_path, tiny_qwen, "run.name=down", "curriculum.every=3", "train.steps=7",
               "curriculum.analyzer=openai", f"curriculum.frontier.base_url=http://127.0.0.1:{port}/v1",
               "curriculum.frontier.max_retries=0", "curriculum.frontier.timeout=5",
               "curriculum.frontier.cache=null", env={"OPENAI_API_KEY": "sk-test"})  # fmt: skip
    summary = json.loads((tmp_path / "down" / "summary.json").read_text())
    assert summary["steps"] == 7
    rounds = summary["curriculum"]["rounds"]
    assert [r["status"] for r in rounds] == ["failed", "failed"]
    assert all("endpoint unreachable" in r["error"] for r in rounds), rounds
    assert summary["curriculum"]["pool_size"] == 0


# Curriculum rounds on two gloo ranks (no model: a scripted policy), with faults on one rank only:
# round 1's commit raises on rank 0 (its empty commit too), round 2 raises on rank 1 before the
# commit, round 3 goes well, rank 1 cannot read round 4 back once rank 0 committed it.
_FAULTY_ROUNDS = """
import json, os, sys
import torch.distributed
from accelerate import Accelerator
from curriculum.engine import Curriculum, RanksDisagree
from curriculum.pool import Pool
from curriculum.world import build_splits
from tests.test_curriculum import ScriptedPolicy
from train.config import CurriculumConfig

acc = Accelerator(cpu=True)
rank = acc.process_index


def fault(fn, when, error):
    def wrapped(self, k, *args, **kwargs):
        if when(k):
            raise error
        return fn(self, k, *args, **kwargs)
    return wrapped


if rank == 0:
    Pool.commit_round = fault(Pool.commit_round, lambda k: k == 1, OSError("disk full (rank 0)"))
if rank == 1:
    Curriculum._quota = fault(Curriculum._quota, lambda k: k == 2, RuntimeError("quota broke"))
    Pool.apply_round = fault(Pool.apply_round, lambda k: k == 4, OSError("unreadable round (rank 1)"))
world = build_splits(seed=0, train_size=120, probe_size=40, test_size=20, image_size=32)
cfg = CurriculumConfig(enabled=True, every=10, budget=24, max_failures=12, mode=sys.argv[2], max_staleness=1)
cur = Curriculum(cfg, sys.argv[1], world["train"], world["probe"], {"test": world["test"]}, 32, 0, accelerator=acc)
out = {"rank": rank, "results": [], "pools": []}
try:
    for k in (1, 2, 3, 4):
        result = cur.update(10 * k, ScriptedPolicy()) or cur.poll(10 * k + 1, ScriptedPolicy())
        out["results"].append([result.status, result.error])
        out["pools"].append([cur.pool.version, cur.pool.ids()])
except RanksDisagree as err:
    out["stopped"] = str(err)
out["history"] = cur.history
cur.close()
# A file per rank: two ranks printing to the launcher's one stdout can run their lines together.
result = os.path.join(os.path.dirname(sys.argv[1]), f"result_{rank}.json")
with open(result + ".tmp", "w") as f:
    f.write(json.dumps(out))
os.replace(result + ".tmp", result)
torch.distributed.destroy_process_group()
os._exit(0)  # no interpreter teardown: gloo's threads may abort it
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_ranks_agree_on_a_round_that_fails_on_one_rank(tmp_path, mode):
    """No rank waits forever for another that failed: a round that raises on one rank (rank 0's
    commit, rank 1's own part of the round) fails on both, the pools stay identical and the next
    round runs; a committed round that one rank cannot load stops both with the reason."""
    script = tmp_path / "rounds.py"
    script.write_text(_FAULTY_ROUNDS)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script),
           str(tmp_path / "curriculum"), mode]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # Its own process group: if the ranks hang, the test ends them all, not only the launcher.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the ranks did not finish: one waits for another at a collective")
    assert proc.returncode == 0, stderr[-3000:]
    outs = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("result_*.json"))]
    assert [o["rank"] for o in outs] == [0, 1]
    first, second = outs
    assert first["results"] == second["results"] and first["pools"] == second["pools"]
    assert first["history"] == second["history"]
    (s1, e1), (s2, e2), (s3, _) = first["results"]
    assert s1 == "failed" and "disk full (rank 0)" in e1  # neither the round nor its empty commit
    assert s2 == "failed" and e2 == "rank 1: RuntimeError: quota broke"  # which rank, said on both
    assert s3 == "ok"
    versions = [v for v, _ in first["pools"]]
    assert versions == [-1, 2, 3] and first["pools"][2][1]  # round 2 committed empty, round 3 added
    assert "rank 1 could not load curriculum round 4" in first["stopped"] == second["stopped"]
    assert "unreadable round (rank 1)" in first["stopped"]
    records = {k: json.loads((tmp_path / "curriculum" / f"round_{k:05d}" / "round.json").read_text())
               for k in (1, 2, 3)}  # fmt: skip
    assert [records[k]["status"] for k in (1, 2, 3)] == ["failed", "failed", "ok"]


_SHARED_PROMPT_UPDATE = """
import os, sys
import torch, torch.distributed as dist
from accelerate import Accelerator
from curriculum.world import build_splits
from models import load_model
from train.collate import VLMCollator
from train.grpo import token_logprobs

acc = Accelerator(cpu=True)
model, processor = load_model(sys.argv[1], dtype="float32")
model = acc.prepare(model)
rank = acc.process_index
prompts = build_splits(seed=0, train_size=0, probe_size=8, test_size=0, image_size=32)["probe"]
inputs = VLMCollator(processor, question_first=True).prompts(prompts[2 * rank : 2 * rank + 2])
torch.manual_seed(rank)
ids = torch.randint(10, 200, (8, 3))
(token_logprobs(model, inputs, ids, torch.ones_like(ids), 1.0) * torch.randn(8, 3)).sum().backward()
grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
both = [torch.zeros_like(grads) for _ in range(2)]
dist.all_gather(both, grads)
assert grads.abs().sum() > 0 and torch.equal(both[0], both[1]), "ranks hold different gradients"
print("gradients agree", flush=True)
dist.destroy_process_group()
sys.stdout.flush()
os._exit(0)
"""


@pytest.mark.slow
def test_the_shared_prompt_update_synchronises_gradients_across_ranks(tmp_path, tiny_qwen):
    """Under DDP the update runs two forward passes (the prompts, then the completions against
    their cache) before one backward; every gradient still reaches both ranks reduced."""
    script = tmp_path / "update.py"
    script.write_text(_SHARED_PROMPT_UPDATE)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        str(script),
        str(tiny_qwen),
    ]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("gradients agree") == 2
