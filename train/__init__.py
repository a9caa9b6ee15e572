"""The training side of lessonloop: config, loop, SFT and GRPO steps, data, tracking, CLI.

Python puts the working folder first on ``sys.path`` for ``python -m train``, so a user's folder
that holds its own ``models/`` or ``curriculum/`` directory would hide the packages of that name
that ship beside this one, and fail later with an unrelated ImportError. Importing ``train``
checks that first and says what to do.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_HOME = Path(__file__).resolve().parent.parent
_SIBLINGS = ("models", "curriculum")


def _shadowing_folders() -> list[str]:
    """The sibling packages that resolve somewhere else than beside ``train`` (outermost first)."""
    out = []
    for name in _SIBLINGS:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        places = list(spec.submodule_search_locations or []) or ([spec.origin] if spec.origin else [])
        if places and all(Path(p).resolve() != _HOME / name for p in places):
            out.append(str(Path(places[0]).resolve()))
    return out


if _shadows := _shadowing_folders():
    raise ImportError(
        f"the folder {_shadows[0]} hides lessonloop's package of that name (in {_HOME}): `python -m` puts "
        "the working folder first on sys.path; run from another folder, or use the `lessonloop` command"
    )
