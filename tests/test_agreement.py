"""Ranks agree on failure: an error on one rank of a collective call fails it on every rank."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from accelerate import Accelerator
    from train.evaluate import ModelPolicy

    class Collator:
        media_token_ids = []
        class tokenizer:
            eos_token_id = pad_token_id = 0
        def prompts(self, examples):
            return {"input_ids": torch.ones(len(examples), 3, dtype=torch.long)}
        def decode(self, ids):
            return ["x"] * len(ids)

    class Model(torch.nn.Module):
        def __init__(self, rank):
            super().__init__()
            self.rank = rank
            self.w = torch.nn.Parameter(torch.zeros(1))
        def generate(self, input_ids, **kwargs):
            if self.rank == int(sys.argv[1]):
                raise RuntimeError("out of memory on this rank")
            return torch.cat([input_ids, torch.ones(len(input_ids), 2, dtype=torch.long)], dim=1)

    acc = Accelerator(cpu=True)
    policy = ModelPolicy(Model(acc.process_index), Collator(), acc, batch_size=2, max_new_tokens=2)
    try:
        policy.answer(list(range(6)))
        print(f"rank {acc.process_index}: answered", flush=True)
    except RuntimeError as err:
        print(f"rank {acc.process_index}: raised: {err}", flush=True)
    import os
    import torch.distributed as dist
    dist.destroy_process_group()  # then leave at once: gloo workers may abort in interpreter teardown
    sys.stdout.flush()
    os._exit(0)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_generation_error_on_one_rank_fails_it_on_every_rank(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), str(script), "1"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rank 1: raised: generation failed on rank 1: out of memory on this rank" in out
    assert "rank 0: raised: generation failed on 1 other rank(s)" in out
    assert "answered" not in out
