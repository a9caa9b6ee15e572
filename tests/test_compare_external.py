"""``lessonloop compare`` on external data (``data.source: hf``): the arms that add fresh real data
draw it from a reserve of the train split that no arm trains on; ``untargeted`` draws it evenly
over the skill column's skills, ``rebalanced`` in the targeted arm's skill mix; under-served
skills come from the skill column's counts; an arm that cannot run is refused before training."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from train.compare import kept_by_skill, kept_per_round
from train.config import load_config
from train.data import load_splits

ROOT = Path(__file__).resolve().parents[1]
SKILLS = ["colour", "count", "shape", "spatial"]  # natural shares 24, 20, 22 and 6 %: spatial is rare
LESSONLOOP = f"import sys; sys.path[0] = {str(ROOT)!r}; from train.cli import main; sys.exit(main())"


def write_dataset(root: Path) -> list[str]:
    """The world's pictures as a user's JSON Lines dataset (no scenes: external data), with a
    skill column; the overrides that load it."""
    from curriculum.types import as_pil
    from curriculum.world import build_splits

    parts = build_splits(seed=3, train_size=240, probe_size=40, test_size=48, image_size=32, skills=SKILLS)
    (root / "img").mkdir(parents=True)
    for split, items in parts.items():
        with open(root / f"{split}.jsonl", "w") as f:
            for ex in items:
                as_pil(ex.image).save(root / "img" / f"{ex.id}.png")
                row = {"image": f"img/{ex.id}.png", "question": ex.question, "answer": ex.answer,
                       "kind": ex.skill, "uid": ex.id}  # fmt: skip
                f.write(json.dumps(row) + "\n")
    files = ", ".join(f"{s}: {root}/{s}.jsonl" for s in parts)
    return [
        "data.source=hf", "data.hf.path=json", f"data.hf.data_files={{{files}}}", "data.hf.probe_split=probe",
        "data.hf.skill_column=kind", "data.hf.id_column=uid", "data.world.image_size=32",
    ]  # fmt: skip


def overrides(out: Path) -> list[str]:
    return [
        f"run.output_dir={out}", "run.name=c", "model.build_tiny=qwen2_5_vl", "model.tiny_preset=tiny",
        "train.cpu=true", "train.batch_size=8", "train.lr=3e-3", "train.log_every=2", "train.warmup_steps=0",
        "train.steps=6", "train.save_model=false", "eval.batch_size=24", "eval.max_new_tokens=3",
        "eval.every=0", "curriculum.every=2", "curriculum.budget=16", "compare.seeds=[0]", "compare.parallel=2",
    ]  # fmt: skip


def compare(out: Path, data: list[str], *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", LESSONLOOP, "compare", *overrides(out), *data, *extra]
    return subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=600)


def pool_rows(run_dir: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted((run_dir / "curriculum" / "pool").glob("round_*.jsonl"))
        for line in path.read_text().splitlines()[1:]
    ]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare_hf")
    data = write_dataset(out / "data")
    proc = compare(out, data, "compare.arms=[targeted,real,untargeted,rebalanced]")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cfg = load_config(None, [*data, "data.hf.reserve=32"])  # what compare set: budget 16 x 2 rounds
    return out / "c", load_splits(cfg.data)


@pytest.mark.slow
def test_every_arm_runs_on_external_data_and_trains_on_the_same_items(compared):
    root, splits = compared
    result = json.loads((root / "compare.json").read_text())
    assert sorted(result["runs"]) == ["real-s0", "rebalanced-s0", "targeted-s0", "untargeted-s0"]
    assert result["under_served_skills"] == ["spatial"]  # from the skill column's counts
    assert set(result["paired"]) == {"real", "untargeted", "rebalanced"}
    for name in result["runs"]:
        summary = json.loads((root / name / "summary.json").read_text())
        assert summary["data"] == {"train": 208, "probe": 40, "test": 48, "reserve": 32}, name
    assert len(splits.reserve) == 32 and not {ex.id for ex in splits.reserve} & {ex.id for ex in splits.train}


@pytest.mark.slow
def test_the_matched_arms_add_at_most_what_targeted_kept_and_only_reserve_items(compared):
    """What each round draws is tested in the engine (tests/test_baselines_engine.py); here, that the
    arms run with their quota and the reserve compare gave them."""
    root, splits = compared
    reserve = {ex.id for ex in splits.reserve}
    target = kept_per_round(root / "targeted-s0")
    for arm in ("real", "untargeted", "rebalanced"):
        cfg = load_config(root / f"{arm}-s0" / "config.yaml")
        assert cfg.data.hf.reserve == 32 and cfg.curriculum.quota == (target or [0]), arm
        kept = kept_per_round(root / f"{arm}-s0")
        assert all(k <= t for k, t in zip(kept, target, strict=False)), arm
        assert all(r["meta"]["reserve_of"] in reserve for r in pool_rows(root / f"{arm}-s0")), arm
    assert load_config(root / "rebalanced-s0" / "config.yaml").curriculum.skill_quota == (
        kept_by_skill(root / "targeted-s0") or [{}]
    )


def test_an_arm_is_refused_before_training_when_the_data_cannot_serve_it(tmp_path, capsys):
    from train.cli import main

    data = write_dataset(tmp_path / "data")
    no_skills = [d for d in data if not d.startswith("data.hf.skill_column")]
    assert main(["compare", *overrides(tmp_path), *no_skills, "compare.arms=[targeted,rebalanced]"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: compare.arms: arm rebalanced cannot run: curriculum.source 'rebalanced' draws the reserve "
        "by skill: it needs data.hf.skill_column"
    )
    assert (
        main(
            ["compare", *overrides(tmp_path), *data, "compare.arms=[targeted,real]", "curriculum.budget=150"]
        )
        == 2
    )
    assert capsys.readouterr().err.strip().splitlines()[-1] == (  # after the data set's progress bars
        "error: data: data.hf.reserve: cannot hold back 300 of 240 train items (at least one must train)"
    )
    assert not (tmp_path / "c").exists()  # nothing trained, nothing written
