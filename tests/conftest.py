"""Shared fixtures: everything offline, tiny models built once per session."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_SILENT", "true")
# One thread per test process (and per process a test starts): `make test` runs two workers on a
# 2-core machine, and OpenMP threads that outnumber the cores spin and slow tiny models by tens of
# times. Tests that time nothing lose nothing by it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def world_small():
    from curriculum.world import build_splits

    return build_splits(seed=0, train_size=240, probe_size=40, test_size=54, image_size=32)


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory, world_small):
    """A tiny Qwen2.5-VL checkpoint whose tokenizer knows the world's words."""
    from models import build_tiny_vlm

    corpus = [t for ex in world_small["train"] for t in (ex.question, ex.answer)]
    return build_tiny_vlm(
        tmp_path_factory.mktemp("models") / "tiny-qwen",
        arch="qwen2_5_vl",
        preset="tiny",
        image_size=32,
        corpus=corpus,
        seed=0,
    )


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on one thread (modules ask with ``pytestmark = pytest.mark.usefixtures``): their
    matrices are too small to split, and on the shared 2-core machine a whole short run takes a
    quarter of the time it takes on two threads."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def arch_world():
    """A small world at the tiny models' default image size (64 px: 16 image tokens)."""
    from curriculum.world import build_splits

    return build_splits(seed=0, train_size=64, probe_size=32, test_size=32, image_size=64)


@pytest.fixture(scope="session")
def arch_checkpoints(tmp_path_factory, arch_world) -> dict[str, str]:
    """A tiny checkpoint of every buildable architecture at 64 px, its tokenizer trained on
    ``arch_world``'s words; built once per test process."""
    from models import build_tiny_vlm
    from models.tiny import ARCHS

    texts = [t for ex in arch_world["train"] for t in (ex.question, ex.answer)]
    root = tmp_path_factory.mktemp("archs")
    return {
        arch: str(build_tiny_vlm(root / arch, arch=arch, image_size=64, corpus=texts, seed=0))
        for arch in ARCHS
    }


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Accelerate keeps process-wide singletons; each test starts from a clean one."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def tiny_run_overrides(output_dir, model_path) -> list[str]:
    """Config overrides for a short CPU training run of the tiny model on the small world."""
    return [
        f"run.output_dir={output_dir}",
        f"model.name_or_path={model_path}",
        "data.world.image_size=32",
        "data.world.train_size=240",
        "data.world.probe_size=40",
        "data.world.test_size=54",
        "train.cpu=true",
        "train.batch_size=8",
        "train.lr=3e-3",
        "train.log_every=1",
        "eval.batch_size=27",
        "eval.max_new_tokens=3",
        "train.save_model=false",
    ]
