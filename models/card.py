"""The model card of a trained model: ``README.md`` in its folder, as the Hugging Face hub renders it.

``write_model_card`` takes plain values (what the training loop knows at its end) and writes a
``huggingface_hub.ModelCard``: YAML metadata (base model, data sets, library, pipeline tag, tags,
and the final accuracy as ``model-index`` evaluation results) and a body that says how the model
was trained (objective, steps, data), what the online curriculum did (rounds, examples kept, pool
size, frontier cost) and the per-skill test accuracy at the start, at the end and of a blind prior.
A LoRA folder gets ``library_name: peft`` (PEFT's own card, written by ``save_pretrained``, is
replaced: it is a template with nothing filled in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

OBJECTIVES = {
    "sft": "supervised fine-tuning (cross-entropy on the answer tokens only)",
    "grpo": "GRPO (group-relative policy optimisation on sampled answers, rewarded for correct ones)",
}
ACCURACY_COLUMNS = ("start", "end", "prior")
"""The accuracy columns of the card's table, in this order, when given: the test accuracy before
training, after it, and of a prior blind to the image (each skill's most common train answer)."""


def is_hub_id(name: str | None) -> bool:
    """Whether ``name`` is a hub repository id (``org/name``), not a local folder: only those go
    into the card's metadata, which the hub links."""
    if not name or Path(name).expanduser().exists() or name.startswith(("/", ".", "~")):
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _cell(value: Any) -> str:
    """A markdown table cell: no pipe or newline from the data can break the table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _acc(metrics: Mapping[str, float] | None, key: str) -> str:
    value = (metrics or {}).get(key)
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def accuracy_table(
    accuracy: Mapping[str, Mapping[str, float] | None], skill_counts: Mapping[str, int]
) -> str:
    """Per-skill accuracy (``skill/<name>`` keys of each metrics dict) and the overall
    ``accuracy``, one column per entry of ``ACCURACY_COLUMNS`` that ``accuracy`` holds."""
    labels = [label for label in ACCURACY_COLUMNS if accuracy.get(label) is not None]
    skills = sorted(
        {k.removeprefix("skill/") for m in accuracy.values() if m for k in m if k.startswith("skill/")}
    )
    rows = [
        [s, skill_counts.get(s, ""), *(_acc(accuracy[lab], f"skill/{s}") for lab in labels)] for s in skills
    ]
    rows.append(
        [
            "**overall**",
            sum(skill_counts.values()) or "",
            *(_acc(accuracy[lab], "accuracy") for lab in labels),
        ]
    )
    return _table(["skill", "test items", *labels], rows)


def _data_text(dataset: str | None, sizes: Mapping[str, int] | None) -> str:
    what = f"the data set `{dataset}`" if dataset else "lessonloop's built-in visual-reasoning world"
    if sizes:
        what += " (" + ", ".join(f"{n} {split}" for split, n in sizes.items()) + " items)"
    if not dataset:
        what += ": procedurally rendered scenes and charts, every answer computed by program"
    return what


def _curriculum_lines(
    rounds: Sequence[Mapping[str, Any]], pool_size: int | None, cost_usd: float | None
) -> list[str]:
    status = [str(r.get("status", "?")) for r in rounds]
    kept = sum(int(r.get("kept") or 0) for r in rounds)
    lines = [
        "## Curriculum",
        "",
        "During training, lessonloop probed the model at each round, diagnosed its failures and wrote new "
        "training examples aimed at them; the examples that passed its filters joined a pool mixed into "
        "the training batches.",
        "",
        f"- **Rounds:** {len(rounds)} ({status.count('ok')} ok, {status.count('failed')} failed"
        + (f", {status.count('restored')} restored on resume" if "restored" in status else "")
        + ")",
        f"- **Examples kept:** {kept}",
        f"- **Pool size at the end:** {pool_size if pool_size is not None else 'unknown'} live examples",
        "- **Frontier cost:** "
        + (f"${cost_usd:.4f}" if cost_usd is not None else "none (no API was called: offline analyzer)"),
    ]
    if rounds:
        rows = [
            [r.get("round", "?"), r.get("step", "?"), r.get("status", "?"), r.get("kept", "")] for r in rounds
        ]
        lines += ["", _table(["round", "step", "status", "kept"], rows)]
    return lines


def _eval_results(end: Mapping[str, float], dataset: str | None) -> list[EvalResult]:
    """The final test accuracy, overall and per skill, as ``model-index`` results."""
    keys = ["accuracy", *sorted(k for k in end if k.startswith("skill/"))]
    return [
        EvalResult(
            task_type="visual-question-answering",
            dataset_type=dataset if dataset and is_hub_id(dataset) else "lessonloop-world",
            dataset_name=f"{dataset or 'lessonloop world'} (held-out test split)",
            dataset_split="test",
            metric_type="accuracy",
            metric_name="accuracy" if key == "accuracy" else f"accuracy ({key.removeprefix('skill/')})",
            metric_value=round(float(end[key]), 4),
        )
        for key in keys
        if key in end
    ]


def write_model_card(
    model_dir: str | Path,
    *,
    base_model: str,
    objective: str,
    steps: int,
    accuracy: Mapping[str, Mapping[str, float] | None],
    skill_counts: Mapping[str, int] | None = None,
    dataset: str | None = None,
    data_sizes: Mapping[str, int] | None = None,
    rounds: Sequence[Mapping[str, Any]] | None = None,
    pool_size: int | None = None,
    cost_usd: float | None = None,
    run_name: str | None = None,
) -> ModelCard:
    """Write the card of a model trained by lessonloop as ``README.md`` in ``model_dir`` (a folder
    written by ``models.save_model``; whether it holds a LoRA adapter is read from it) and return it.

    Args:
        model_dir: the model folder.
        base_model: the checkpoint training started from (hub id or local folder; only a hub id
            goes into the metadata).
        objective: ``"sft"`` or ``"grpo"``.
        steps: optimizer steps taken.
        accuracy: test metrics by column, ``start``, ``end`` and ``prior`` (each a dict with
            ``accuracy`` and ``skill/<name>`` keys, as ``summary.json`` holds them; None or absent
            for a column not measured).
        skill_counts: test items per skill.
        dataset: the training data set (hub id or path); None for the built-in world.
        data_sizes: items per split (``{"train": 2000, "probe": 200, "test": 300}``).
        rounds: the curriculum's rounds (dicts with ``round``, ``step``, ``status``, ``kept``);
            None when the run had no curriculum.
        pool_size: live pool examples at the end.
        cost_usd: what the frontier cost over the run (None: no API was called).
        run_name: the run's name, the card's title.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"no model folder at {folder}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    adapter = (folder / "adapter_config.json").is_file()
    name = run_name or "lessonloop model"
    eval_results = _eval_results(accuracy.get("end") or {}, dataset)
    data = ModelCardData(
        base_model=base_model if is_hub_id(base_model) else None,
        datasets=[dataset] if dataset and is_hub_id(dataset) else None,
        library_name="peft" if adapter else "transformers",
        pipeline_tag="image-text-to-text",
        tags=[
            "lessonloop",
            "vision-language",
            "curriculum-learning",
            objective,
            *(["lora"] if adapter else []),
        ],
        model_name=name if eval_results else None,
        eval_results=eval_results or None,
    )
    weights = "a LoRA adapter (PEFT) for it" if adapter else "full weights"
    lines = [
        f"# {name}",
        "",
        f"Fine-tuned from `{base_model}` by lessonloop with {OBJECTIVES[objective]}, {steps} steps; this "
        f"folder holds {weights}.",
        "",
        "## Training",
        "",
        f"- **Base model:** `{base_model}`",
        f"- **Objective:** {objective.upper()}",
        f"- **Steps:** {steps}",
        f"- **Data:** {_data_text(dataset, data_sizes)}",
        "",
    ]
    if rounds is not None:
        lines += [*_curriculum_lines(rounds, pool_size, cost_usd), ""]
    lines += ["## Results", ""]
    if any(accuracy.get(label) for label in ACCURACY_COLUMNS):
        lines += [
            "Test accuracy by skill (normalised exact match of the greedy answer). `prior` gives each "
            "skill's most common train answer without looking at the image: a model reads images only "
            "where it beats it.",
            "",
            accuracy_table(accuracy, skill_counts or {}),
        ]
    else:
        lines.append("No test accuracy was measured.")
    if adapter:
        loader = "PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), path)"
    else:
        loader = "AutoModelForImageTextToText.from_pretrained(path)"
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from models import load_model  # lessonloop: full checkpoints and adapters alike",
        "",
        'model, processor = load_model("path/to/this/folder")',
        "```",
        "",
        f"Without lessonloop: `{loader}` and `AutoProcessor.from_pretrained(path)`.",
        "",
    ]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n" + "\n".join(lines))
    card.save(folder / "README.md")
    return card
