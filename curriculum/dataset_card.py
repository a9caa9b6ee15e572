"""The dataset card of an exported pool: ``README.md`` beside the data, as the hub renders it.

Written with ``huggingface_hub``'s ``DatasetCard`` and ``DatasetCardData``: the metadata block
(licence, task, size category, features) is the library's, the body says how the pool was made
(from the run's ``config.yaml``), what each round did (``round_<k>/round.json``), what the pool
holds by skill, generator and answer check, and how the run ended (``summary.json``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from curriculum.filters import NEAR_IMAGE_BITS
from curriculum.run_records import RunRecords
from curriculum.types import PHASH_BITS

COLUMNS = {
    "id": "the example's id (`r<round>-w<weakness>-<generator>-<n>`)",
    "image": "the picture, PNG (a conversation's first)",
    "more_images": "a conversation's further pictures, PNG, in the order its turns show them (empty otherwise)",
    "messages": "a conversation up to its last user turn, JSON in the `messages` form TRL writes (null: one "
    "question about `image`)",
    "question": "the question asked about the picture",
    "answer": "the reference answer",
    "skill": "the world skill the question tests (null for external data)",
    "source": "`synthetic` (made by a generator) or `real` (a replayed training item)",
    "split": "the split the item came from, when it has one",
    "round": "the curriculum round that committed it",
    "weakness": "the id of the diagnosed weakness it targets",
    "generator": "the generator that made it (`world`, `same_image`, `replay`, `proposals`, ...)",
    "answer_checked_by": "how its answer was checked: `program` (recomputed from the scene), `judges` (a judge "
    "panel reached it), `data` (a real, labelled item), `none` (unverified, kept because the run allowed it); "
    "null in pools written before it was recorded",
    "live": "still in the pool at the end of the export (false: retired, mastered or evicted by the cap)",
    "retired_round": "the round that retired it (null while live)",
    "weight": "its sampling weight in the pool (the weakness's failure rate)",
    "verdicts": "JSON: each filter's verdict (`ok` or why it would drop)",
    "params": "JSON: the world parameters the item was rendered with",
    "scene": "JSON: the scene description (objects, bars), null for external data",
    "meta": "JSON: the full provenance (failures answered, spec, seed, student answer, ...)",
}


_IMAGE_INFO = {"image": {"dtype": "image"}, "more_images": {"sequence": "image"}}  # the hub's card keys


def features() -> Any:
    """The export's ``datasets.Features``: the image as ``Image()``, the rest typed values."""
    from datasets import Features, Sequence, Value
    from datasets import Image as ImageFeature

    types = {"round": "int32", "retired_round": "int32", "live": "bool", "weight": "float64"}
    special = {"image": ImageFeature(), "more_images": Sequence(ImageFeature())}
    return Features({name: special.get(name) or Value(types.get(name, "string")) for name in COLUMNS})


def _size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return name
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f} %" if isinstance(x, (int, float)) else "n/a"


def _cell(value: Any) -> str:
    """A markdown table cell: no pipes or newlines from the data can break the table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def card_data(run: RunRecords, frontier: bool, external: str | None) -> DatasetCardData:
    """The card's metadata, the YAML block the hub reads (licence, task, size, features)."""
    n = len(run.examples)
    return DatasetCardData(
        pretty_name=f"lessonloop curriculum pool of run {run.name}",
        license="other" if frontier or external else "apache-2.0",
        language=["en"],
        task_categories=["visual-question-answering"],
        task_ids=["visual-question-answering"],
        size_categories=[_size_category(n)],
        annotations_creators=["machine-generated"],
        source_datasets=[external] if external else ["original"],
        tags=["synthetic", "curriculum-learning", "lessonloop"],
        dataset_info={
            "features": [
                {"name": name, **_IMAGE_INFO.get(name, {"dtype": getattr(feature, "dtype", None)})}
                for name, feature in features().items()
            ],
            "splits": [{"name": "train", "num_examples": n}],
        },
    )


def _how_made(run: RunRecords) -> list[str]:
    cfg, cc = run.config, run.curriculum_config()
    if not cfg:
        return [
            "## How the pool was made",
            "",
            "The run folder has no `config.yaml`, so the settings are unknown: the round records below "
            "are all there is (the training loop writes the config at its start; the engine alone does not).",
        ]
    data, model, train = cfg.get("data") or {}, cfg.get("model") or {}, cfg.get("train") or {}
    fr = cc.get("frontier") or {}
    world = data.get("world") or {}
    if data.get("source", "world") == "world":
        data_text = (
            f"the built-in synthetic world (seed {world.get('seed', '?')}, {world.get('image_size', '?')} px "
            f"images, {world.get('train_size', '?')} train / {world.get('probe_size', '?')} probe / "
            f"{world.get('test_size', '?')} test items)"
        )
    else:
        data_text = f"the Hugging Face data set `{(data.get('hf') or {}).get('path')}`"
    lines = [
        "## How the pool was made",
        "",
        f"The run fine-tuned `{model.get('name_or_path', '?')}` ({train.get('mode', 'sft')}, "
        f"{train.get('steps', '?')} steps) on {data_text}. Every {cc.get('every', '?')} steps a curriculum "
        f"round ({cc.get('mode', 'sync')} mode) built new training examples from the model's own failures:",
        "",
    ]
    probe = "the whole probe split" if not cc.get("probe_max") else f"{cc['probe_max']} probe items"
    samples = f", {cc['probe_samples']} sampled answers each" if cc.get("probe_samples") else ""
    lines.append(
        f"1. **Probe.** The model answered {probe}{samples}; wrong answers are the round's failures."
    )
    source = cc.get("source", "diagnosed")
    if source == "diagnosed":
        analyzer = cc.get("analyzer", "offline")
        who = (
            "the offline analyzer (groups failures by skill, parameter slice and confusion)"
            if analyzer == "offline"
            else f"the frontier model `{fr.get('model', '?')}` (`{fr.get('preset', 'analyze')}` preset) "
            "on top of the offline grouping"
        )
        lines.append(
            f"2. **Analyse.** Up to {cc.get('max_failures', '?')} failures (new ones first) went to {who}, "
            f"which kept the {cc.get('max_weaknesses', '?')} strongest weaknesses."
        )
        shares = ", ".join(f"`{g}` {float(s):.3g}" for g, s in (cc.get("generators") or {}).items())
        lines.append(
            f"3. **Generate.** {cc.get('budget', '?')} candidates per round, split among the weaknesses by "
            f"failure rate, then among the generators by share ({shares}; a generator that cannot serve a "
            "weakness passes its share on)."
        )
    else:
        lines.append(f"2. **Baseline.** No failure analysis: the `{source}` baseline made the candidates.")
        lines.append(f"3. **Generate.** {cc.get('budget', '?')} candidates per round.")
    filters = [
        "answer check (the answer recomputed by program from the scene; items without one pass unverified)",
        "dedup (the same picture, by pixels or perceptual hash (pHash of R, G and B, at most "
        f"{NEAR_IMAGE_BITS} of {PHASH_BITS} bits apart: resized or re-encoded copies), with the same or a "
        f"near-identical question, word-bigram Jaccard >= {cc.get('near_duplicate', '?')}, against the "
        "pool and the round)",
        "decontamination (no test image nor a resized or re-encoded copy of one, no identifying test "
        "question, no probe item itself"
        + (f", nothing matching {', '.join(map(str, cc['eval_sets']))}" if cc.get("eval_sets") else "")
        + ")",
    ]
    if cc.get("analyzer") == "openai" and (fr.get("judges") or fr.get("preset", "analyze") != "analyze"):
        names = [str(j.get("model") if isinstance(j, dict) else j) for j in fr.get("judges") or []]
        filters.append(f"a frontier judge panel ({', '.join(names) or fr.get('model', '?')})")
    if cc.get("analyzer") == "openai" and fr.get("rationales"):
        filters.append("a rationale check (a kept rationale must end in the verified answer)")
    if train.get("mode") == "grpo":
        filters.append(
            "verified answers only (GRPO: real items, or answers a program or the judges verified)"
        )
    lines.append(f"4. **Filter.** {'; '.join(filters)}.")
    check = cc.get("student_check", "fails")
    student = {
        "fails": "kept only the candidates the current model still answers wrongly",
        "band": f"kept candidates whose pass rate over {cc.get('band_samples', '?')} samples lies in "
        f"{cc.get('band', '?')}",
        "off": "was off (every surviving candidate kept)",
    }.get(check, f"was `{check}`")
    quota = " A per-round quota then capped what was kept." if cc.get("quota") else ""
    lines.append(f"5. **Student check.** The student check {student}.{quota}")
    lines.append(
        f"6. **Pool.** Kept examples were committed to the pool (cap {cc.get('pool_cap', '?')} live examples, "
        f"oldest evicted first); each round re-asked the oldest {cc.get('retire_check', '?')} live examples "
        "and retired those the model now answered right. Training mixed the live pool into its batches."
    )
    return lines


def _round_rows(run: RunRecords) -> list[list[Any]]:
    rows = []
    for r in run.rounds:
        m = r.metrics
        dropped = r.summary.get("dropped_by_filter") or {}
        rows.append(
            [
                r.round,
                r.step if r.step is not None else "?",
                r.status,
                f"{m['curriculum/probe_accuracy']:.3f}" if "curriculum/probe_accuracy" in m else "",
                m.get("curriculum/failures", len(r.failures) if r.folder else ""),
                m.get("curriculum/weaknesses", len(r.weaknesses) if r.folder else ""),
                m.get("curriculum/candidates", len(r.candidates) if r.folder else ""),
                r.added if r.committed else m.get("curriculum/kept", ""),
                ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())) or "none",
                len(r.retired) if r.committed else "",
            ]
        )
    return rows


def dataset_card(run: RunRecords) -> DatasetCard:
    """The export's README.md as a ``huggingface_hub.DatasetCard``: its metadata (``card_data``),
    then how the pool was made and what it holds."""
    cc, fr = run.curriculum_config(), run.curriculum_config().get("frontier") or {}
    n = len(run.examples)
    live = sum(c.live for c in run.examples)
    generators = Counter(str(c.example.meta.get("generator", "?")) for c in run.examples)
    frontier = cc.get("analyzer") == "openai" or "proposals" in generators
    data = run.config.get("data") or {}
    external = (data.get("hf") or {}).get("path") if data.get("source") == "hf" else None
    committed = [r for r in run.rounds if r.committed]
    parts = [f"# lessonloop curriculum pool: {run.name}", ""]
    if n:
        parts.append(
            f"The examples that the online curriculum of the lessonloop run `{run.name}` committed to its "
            f"training pool: **{n} examples** over **{len(committed)} committed rounds** "
            f"({len(run.rounds)} rounds recorded). {live} were still live when exported, {n - live} had been "
            "retired; all are here, the `live` column says which. Each was made to target a weakness "
            "diagnosed from the model's own failures on a probe split, and kept only if it passed the filters "
            "and the student check below."
        )
    else:
        parts.append(
            f"**This export is empty**: the run `{run.name}` committed no examples to its curriculum pool "
            f"({len(committed)} committed rounds, {len(run.rounds)} rounds recorded). The rounds below say why "
            "(a failed round commits nothing; a round whose candidates all fail a filter keeps none)."
        )
    licence = []
    if frontier:
        licence.append(
            f"parts were written by a frontier model (`{fr.get('model', '?')}`): its provider's terms apply"
        )
    if external:
        licence.append(f"replayed items come from `{external}`: its licence applies")
    if licence:
        parts += ["", "Licence: " + "; ".join(licence) + "; the rest is rendered by lessonloop (Apache-2.0)."]
    parts += ["", *_how_made(run), "", "## Rounds", ""]
    header = [
        "round", "step", "status", "probe accuracy", "failures", "weaknesses", "candidates", "kept",
        "dropped by filter", "retired",
    ]  # fmt: skip
    parts.append(_table(header, _round_rows(run)) if run.rounds else "No round ran.")
    failed = [r for r in run.rounds if r.status == "failed"]
    if failed:
        parts += ["", "Failed rounds (they add nothing; training went on):", ""]
        for r in failed:
            text = str(r.summary.get("error") or "error").strip().splitlines() or ["error"]
            parts.append(f"- round {r.round}: `{_cell(text[-1])}`")
    for title, key in (
        ("skill", lambda c: c.example.skill),
        ("generator", lambda c: c.example.meta.get("generator")),
        ("answer check", lambda c: c.example.meta.get("answer_checked_by", "unrecorded")),
    ):
        counts, alive = Counter(), Counter()
        for c in run.examples:
            counts[str(key(c))] += 1
            alive[str(key(c))] += c.live
        parts += ["", f"## Examples by {title}", ""]
        if title == "answer check":
            parts += [
                "How each answer was checked (the `answer_checked_by` column): `program` recomputed it from "
                "the scene, `judges` means a judge panel reached it, `data` a real labelled item, `none` "
                "an unverified answer the run allowed.",
                "",
            ]
        rows = [[name, counts[name], alive[name]] for name in sorted(counts)]
        parts.append(_table([title, "examples", "live"], rows) if rows else "None.")
    parts += ["", "## Results of the run", ""]
    end, start = run.summary.get("end") or {}, run.summary.get("start") or {}
    if "accuracy" in end:
        prior = run.summary.get("prior_baseline") or {}
        line = f"Final test accuracy after {run.summary.get('steps', '?')} steps: **{_pct(end['accuracy'])}**"
        if "accuracy" in start:
            line += f" (at step 0: {_pct(start['accuracy'])})"
        if "accuracy" in prior:
            line += (
                f"; a blind prior (each skill's most common train answer) scores {_pct(prior['accuracy'])}"
            )
        parts.append(line + ".")
        skills = sorted(k.removeprefix("skill/") for k in end if k.startswith("skill/"))
        if skills:
            rows = [[s, _pct(start.get(f"skill/{s}")), _pct(end[f"skill/{s}"])] for s in skills]
            parts += ["", _table(["skill", "start", "end"], rows)]
    else:
        parts.append(
            "The run has no final test accuracy yet (no `summary.json`: it is unfinished or crashed)."
        )
    parts += [
        "",
        "## Columns",
        "",
        _table(["column", "meaning"], [[f"`{k}`", v] for k, v in COLUMNS.items()]),
    ]
    parts += [
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_from_disk",
        "",
        'pool = load_from_disk("path/to/this/folder")',
        'live = pool.filter(lambda row: row["live"])',
        "```",
        "",
    ]
    return DatasetCard(f"---\n{card_data(run, frontier, external).to_yaml()}\n---\n" + "\n".join(parts))
