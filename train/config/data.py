"""Config section ``data``: the built-in world or a dataset loaded through ``datasets``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from train.config.fields import Section, require


@dataclass
class WorldConfig(Section):
    SECTION = "data.world"

    seed: int = 0
    """Seed of the built-in world's splits."""
    image_size: int = 64
    """Rendered image side in pixels."""
    train_size: int = 5000
    """Items in the train split (the skewed "real data" unless ``train_mix`` says otherwise)."""
    probe_size: int = 500
    """Items in the probe split (skill-balanced; the curriculum mines failures here)."""
    test_size: int = 500
    """Items in the held-out test split (skill-balanced; reporting only)."""
    skills: list[str] = field(default_factory=list)
    """Train, probe and test on these skills only (and let the curriculum make only these); the
    train split keeps their natural proportions. Empty: all nine."""
    train_mix: Literal["natural", "uniform"] = "natural"
    """How the train split is drawn. ``natural``: the skewed "real data" (easy cases and common
    skills dominate). ``uniform``: balanced over its skills with parameters uniform over their full
    ranges, as probe and test are, from a stream of its own: data for building a base model that
    already perceives, not for the curriculum's experiments."""
    train_skills: list[str] = field(default_factory=list)
    """Train on these skills only, while probe and test keep all of ``skills`` (so a base taught to
    perceive is still measured on every skill). Empty: the same as ``skills``."""

    def check(self) -> None:
        require(self.image_size >= 32, "image_size", "must be at least 32 (scenes are drawn on a grid)")
        require(self.train_size > 0, "train_size", "must be positive")
        require(self.probe_size >= 0, "probe_size", "must be >= 0")
        require(self.test_size > 0, "test_size", "must be positive")
        if self.skills:
            from curriculum.world import world_skills

            try:
                world_skills(self.skills)
            except ValueError as err:
                require(False, "skills", f": {err}")
        if self.train_skills:
            from curriculum.world import world_skills

            try:
                trained = world_skills(self.train_skills)
            except ValueError as err:
                require(False, "train_skills", f": {err}")
            outside = sorted(set(trained) - set(world_skills(self.skills)))
            require(not outside, "train_skills", f"{outside} must be among data.world.skills")


@dataclass
class HFDataConfig(Section):
    SECTION = "data.hf"

    path: str | None = None
    """``datasets.load_dataset`` path: a hub name, a builder (``json``, ``parquet``, ``imagefolder``)
    or a local folder."""
    name: str | None = None
    """Dataset configuration name."""
    data_files: dict[str, str] | None = None
    """Split name to file(s) for builders such as ``json`` or ``parquet``."""
    train_split: str = "train"
    """Split used for training."""
    eval_split: str | None = "test"
    """Split used for evaluation (the test split); null: hold out ``eval_holdout`` train items."""
    probe_split: str | None = None
    """Split the curriculum mines for failures; null: carve ``eval_holdout`` items from train."""
    eval_holdout: int = 200
    """Items carved out of train for a missing eval or probe split."""
    image_column: str = "image"
    """Column with the image: a decoded image, a path, or bytes."""
    question_column: str = "question"
    """Column with the question text."""
    answer_column: str = "answer"
    """Column with the reference answer."""
    messages_column: str | None = None
    """Column with a conversation, as TRL and ``datasets`` write it: a list of user and assistant
    turns whose content lists ``{"type": "image"}`` placeholders and ``{"type": "text"}`` parts
    (several turns, several images; the last turn is the answer that is evaluated, every assistant
    turn trains). Set, it replaces the image, question and answer columns. Null: those columns."""
    images_column: str = "images"
    """With ``messages_column``: the column listing each conversation's images in the order of
    their placeholders (paths, relative ones as ``image_column``'s, or images)."""
    skill_column: str | None = None
    """Optional column naming the skill (per-skill accuracy uses it)."""
    id_column: str | None = None
    """Optional column with a stable item id; row numbers otherwise."""
    slice_columns: list[str] = field(default_factory=list)
    """Metadata columns the curriculum's analyzer slices failures by, beside the skill column and
    the answer (e.g. ``[source, difficulty]``): a weakness can then be "items with source 'scan'".
    Their values become the items' ``params``; a numeric column with more than 8 distinct values in
    the train split is cut at its train split's thirds (``"12-40"``), so a slice means the same
    items in every round and every run."""
    image_root: str | None = None
    """Folder that relative image paths are resolved against (null: the folder of each split's
    own data file, or ``path`` when it is a folder)."""
    max_examples: int = 0
    """Keep at most this many train items (0: all)."""
    reserve: int = 0
    """Train items held back from training (a fixed random sample, taken after the eval and probe
    holdouts), for the baselines that add fresh real data: ``curriculum.source`` ``real``,
    ``uniform`` and ``rebalanced`` draw from it (0: none). ``lessonloop compare`` sets it, for
    every arm alike, when an arm needs it."""

    def check(self) -> None:
        require(self.path is None or bool(self.path.strip()), "path", "must not be empty")
        require(self.reserve >= 0, "reserve", "must be >= 0 (0: none)")
        require(self.eval_holdout >= 0, "eval_holdout", "must be >= 0")
        require(self.max_examples >= 0, "max_examples", "must be >= 0 (0: all)")
        require(bool(self.train_split), "train_split", "must name a split")
        require(self.messages_column is None or bool(self.messages_column.strip()), "messages_column",
                "must name a column (null: the image, question and answer columns)")  # fmt: skip
        if self.messages_column:
            columns = [self.messages_column, self.images_column]
            require(bool(self.images_column) and len(set(columns)) == 2, "images_column",
                    "must name a column other than data.hf.messages_column")  # fmt: skip
        else:
            columns = [self.image_column, self.question_column, self.answer_column]
            require(all(columns), "image_column", "and the question and answer columns must be named")
            require(len(set(columns)) == 3, "answer_column",
                    "must differ from the image and question columns")  # fmt: skip
        require(len(set(self.slice_columns)) == len(self.slice_columns) and all(self.slice_columns),
                "slice_columns", "must name distinct columns")  # fmt: skip
        named = {*columns, self.skill_column, self.id_column} - {None}
        clash = [c for c in self.slice_columns if c in named]
        require(not clash, "slice_columns", f"{clash} already fill an item's image, question, answer, "
                "skill, id or conversation (the answer and the skill are always sliced)")  # fmt: skip


@dataclass
class DataConfig(Section):
    SECTION = "data"

    source: Literal["world", "hf"] = "world"
    """``world``: the built-in procedural world; ``hf``: a dataset loaded through ``datasets``."""
    world: WorldConfig = field(default_factory=WorldConfig)
    hf: HFDataConfig = field(default_factory=HFDataConfig)
    max_image_pixels: int = 40_000_000
    """Images with more pixels than this are skipped as absurdly large (and counted)."""
    min_image_side: int = 4
    """Images with a side shorter than this are skipped (and counted)."""
    question_first: bool = False
    """Put the question before the image in the user turn. Image first is the order pretrained
    VLMs saw; question first lets a causal model read the image already knowing the question,
    which a model trained from scratch learns several times faster."""
    question_suffix: str = ""
    """Text appended to every question the model reads (training, evaluation, rollouts), e.g.
    an instruction to reason and end with ``Answer: <answer>``; scoring reads the last
    ``Answer:`` of a reply when there is one."""
    image_cache_mib: int = 0
    """Keep processed pictures (resized, normalised pixel tensors) up to this many MiB per
    collator and reuse them when the same picture comes again (later epochs, every evaluation);
    keyed by the pixels, so a changed picture is processed again. 0: off. Processors that pad a
    batch's pictures together (Idefics3, SmolVLM) are refused."""

    def check(self) -> None:
        require(self.source != "hf" or bool(self.hf.path), "hf.path", "is required when data.source is 'hf'")
        require(self.image_cache_mib >= 0, "image_cache_mib", "must be >= 0 (0: off)")
        require(self.max_image_pixels > 0, "max_image_pixels", "must be positive")
        require(self.min_image_side >= 1, "min_image_side", "must be >= 1")
        require(self.min_image_side**2 <= self.max_image_pixels, "min_image_side",
                "squared must not exceed data.max_image_pixels")  # fmt: skip
