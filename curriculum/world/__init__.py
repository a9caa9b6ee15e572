"""The built-in procedural visual-reasoning world: scenes, skills, a generator and splits.

``generate(Spec(...), seed)`` makes labelled synthetic examples for one skill with chosen
parameter ranges; ``build_splits(seed, ...)`` makes the skewed "real" train split and the
balanced probe/test splits; ``render`` draws a scene dict; ``describe_skills`` tells a spec
writer what can be asked for; ``world_corpus`` feeds a tokenizer.
"""

from .generate import Spec, describe_skills, generate, get_skill, skill_names, world_corpus
from .scene import render
from .splits import NATURAL_SKILL_WEIGHTS, build_splits, natural_examples, world_skills

__all__ = [
    "NATURAL_SKILL_WEIGHTS",
    "Spec",
    "build_splits",
    "describe_skills",
    "generate",
    "natural_examples",
    "get_skill",
    "render",
    "skill_names",
    "world_corpus",
    "world_skills",
]
