"""The persistent, versioned pool of accepted synthetic examples of the online curriculum.

Each curriculum round adds the examples it accepted and retires some (mastered, or evicted by
the cap). The pool lives on disk so that a resumed run gets back exactly the pool its checkpoint
saw, and so that a ``kill -9`` at any moment loses no accepted example and duplicates none::

    root/
      LOCK                  flock held by a commit in progress; the kernel drops it if that dies
      images/<sha1>.png     each distinct image once, named by its pixel hash (image_hash)
      round_00003.jsonl     one file per committed round: a header line, then one line per example
      .tmp-*                a write in flight (here or in images/); never read; removed on open

A round file is written under a temporary name, fsynced and renamed: the rename is the round's
commit point, so a round is either wholly on disk or absent. Its images are written (each one
atomically too) before it, so a committed round never names a missing image. The header line
``{"round": k, "added": n, "retire": [ids], "outcome": {...}}`` lists every id the round retired,
cap evictions included, so replay never recomputes a policy and gives the same pool whatever
``cap`` says; ``outcome`` (optional) is whatever else the committer needs to take the round back
as it was (``round_outcome``), committed atomically with the examples. What must exist whenever
the round does (the round's record) is written by ``before_commit``, just before the rename.
In memory, images are ``StoredImage`` PNG bytes: the pool costs its compressed size.
"""

from __future__ import annotations

import dataclasses
import fcntl
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from curriculum.types import Example, StoredImage, as_pil, image_to_png_bytes

_ROUND = re.compile(r"^round_(\d+)\.jsonl$")
_TMP = ".tmp-"


def _fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (it lives in the directory, not in the file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes, before_rename: Callable[[], None] | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see either the whole file or none of it.

    ``before_rename`` runs once the data is durable under its temporary name, just before the
    rename: if it raises, ``path`` is left as it was.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _lock(root: Path, wait: bool) -> Iterator[bool]:
    """Hold ``root/LOCK`` (flock) for the block; yields False if ``wait`` is off and it is taken.

    The kernel drops the lock when its holder dies, even by ``kill -9``: no stale locks.
    """
    fd = os.open(root / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


class Pool:
    """The live examples of the curriculum pool after replaying its committed rounds.

    ``upto`` stops the replay after that round (None: all), which is how a resumed run rebuilds
    the pool of its checkpoint; later rounds stay on disk and are loaded with ``apply_round``
    when the run reaches them again. Several processes may open one pool (every rank of a run):
    a commit holds ``root/LOCK`` and refuses to fork the history if another process committed
    first, and opening cleans up the temporary files of interrupted writes only when no commit
    is in flight. The usual split: rank 0 commits, the other ranks ``apply_round`` after it.
    """

    def __init__(self, root: str | Path, cap: int = 0, upto: int | None = None) -> None:
        if cap < 0:
            raise ValueError(f"cap must be >= 0, got {cap}")
        self.root = Path(root)
        self.images = self.root / "images"
        self.cap = cap
        self.version = -1
        self.retired: set[str] = set()
        self.weights: dict[str, float] = {}  # id -> weight, in the order of ``examples``
        self._live: dict[str, Example] = {}
        self.images.mkdir(parents=True, exist_ok=True)
        with _lock(self.root, wait=False) as held:
            if held:  # else a commit is writing: its temporary files are not debris
                for folder in (self.root, self.images):
                    for stale in folder.glob(_TMP + "*"):
                        stale.unlink(missing_ok=True)
        for k in self.committed_rounds():
            if upto is not None and k > upto:
                break
            self._apply(k, *self._read(k))

    @classmethod
    def open(cls, root: str | Path, cap: int = 0, upto: int | None = None) -> Pool:
        """The pool at ``root`` replayed up to round ``upto`` (a checkpoint's ``state_dict()["version"]``)."""
        return cls(root, cap=cap, upto=upto)

    # ------------------------------------------------------------------------------------- views

    @property
    def examples(self) -> list[Example]:
        """Live examples, oldest first."""
        return list(self._live.values())

    def __len__(self) -> int:
        return len(self._live)

    def ids(self) -> list[str]:
        return list(self._live)

    def get(self, example_id: str) -> Example | None:
        return self._live.get(example_id)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint stores to rebuild this pool: ``Pool(root, cap, upto=state["version"])``."""
        return {"version": self.version}

    def committed_rounds(self) -> list[int]:
        """Rounds committed on disk, in order, whether or not they are applied here."""
        if not self.root.is_dir():
            return []
        found = (_ROUND.match(p.name) for p in self.root.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def has_round(self, k: int) -> bool:
        """Whether round ``k`` is committed on disk (even beyond the ``upto`` of the replay)."""
        return self._round_path(k).is_file()

    def round_examples(self, k: int) -> list[Example]:
        """The examples committed round ``k`` added, read from its file (live or retired since)."""
        return self._read(k)[0]

    def round_outcome(self, k: int) -> dict[str, Any] | None:
        """The ``outcome`` committed with round ``k`` (None if it was committed without one)."""
        with open(self._round_path(k)) as f:
            return json.loads(f.readline()).get("outcome")

    def plan_round(self, added: list[Example], retired: Iterable[str] = ()) -> list[str]:
        """Every id that committing ``added`` and ``retired`` now would retire: the given ones,
        then the cap's evictions. Refuses (ValueError) what ``commit_round`` would refuse."""
        retire = list(dict.fromkeys(retired))
        missing = [i for i in retire if i not in self._live]
        if missing:
            raise ValueError(f"cannot retire ids that are not live in the pool: {missing[:5]}")
        new_ids: dict[str, None] = {}  # ordered set
        for ex in added:
            if ex.id in self._live or ex.id in self.retired or ex.id in new_ids:
                raise ValueError(f"example id {ex.id!r} is already in the pool (live, retired or twice here)")
            new_ids[ex.id] = None
        gone = set(retire)
        live_after = [i for i in self._live if i not in gone] + list(new_ids)
        if self.cap and len(live_after) > self.cap:
            retire += live_after[: len(live_after) - self.cap]
        return retire

    # ----------------------------------------------------------------------------------- changes

    def apply_round(self, k: int) -> None:
        """Load the already committed round ``k``: the next one on disk after ``version``.

        Skipping a committed round would build a pool that never existed, so it is refused.
        """
        pending = [r for r in self.committed_rounds() if r > self.version]
        if not pending or pending[0] != k:
            nxt = pending[0] if pending else None
            raise ValueError(f"round {k} is not the next committed round after {self.version} (next: {nxt})")
        self._apply(k, *self._read(k))

    def commit_round(
        self,
        k: int,
        added: list[Example],
        retired: Iterable[str] = (),
        *,
        outcome: dict[str, Any] | None = None,
        before_commit: Callable[[], None] | None = None,
        apply: bool = True,
    ) -> list[str]:
        """Durably add round ``k``'s examples, retire ``retired`` and apply the cap.

        Example weights come from ``meta["weight"]`` (default 1.0). Images are stored as RGB,
        the form every reader decodes them to. Returns all ids retired by the round, the given
        ones first, then the cap's evictions (oldest live first; if one round alone adds more
        than ``cap``, its own oldest go too). Committing an empty round is allowed and useful:
        it records that the round ran, so a resumed run will not redo it differently.

        ``outcome`` (a JSON object) is stored in the round's header, so it exists exactly when
        the round does (``round_outcome``). ``before_commit`` runs, holding the lock, once the
        images and the round file are durable under temporary names, just before the rename
        that commits the round: what it writes is on disk whenever the round is; if it raises,
        nothing is committed. ``apply`` false: on disk only, for ``apply_round`` to load later.
        """
        self._check_unforked(k)
        retire = self.plan_round(added, retired)
        lines: list[str] = []
        pngs: dict[str, bytes] = {}
        for ex in added:
            weight = float(ex.meta.get("weight", 1.0))
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"example {ex.id!r}: weight must be finite and >= 0, got {weight}")
            rgb = [as_pil(im).convert("RGB") for im in ex.images]
            record = dataclasses.replace(
                ex, image=rgb[0], more_images=rgb[1:], meta={**ex.meta, "weight": weight}
            ).to_record()
            record["weight"] = weight
            for sha, im in zip([record["image_sha1"], *record.get("more_image_sha1", [])], rgb, strict=True):
                if sha not in pngs:
                    pngs[sha] = image_to_png_bytes(im)
            lines.append(json.dumps(record, allow_nan=False, separators=(",", ":")))
        head: dict[str, Any] = {"round": k, "added": len(lines), "retire": retire}
        if outcome is not None:
            head["outcome"] = outcome
        header = json.dumps(head, allow_nan=False, separators=(",", ":"))

        with _lock(self.root, wait=True):
            self._check_unforked(k)  # again: another process may have committed meanwhile
            for sha, data in pngs.items():  # images first: a committed round never names a missing one
                path = self.images / f"{sha}.png"
                if not path.exists():
                    _atomic_write(path, data)
            _fsync_dir(self.images)
            data = ("\n".join([header, *lines]) + "\n").encode()
            _atomic_write(self._round_path(k), data, before_commit)  # the rename is the commit point
            _fsync_dir(self.root)
        if apply:
            self._apply(k, self._build([json.loads(line) for line in lines], pngs), retire)  # as replay will
        return retire

    # ---------------------------------------------------------------------------------- internals

    def _round_path(self, k: int) -> Path:
        return self.root / f"round_{k:05d}.jsonl"

    def _check_unforked(self, k: int) -> None:
        """Refuse a commit that would not extend the history on disk (replay would differ)."""
        if k <= self.version:
            raise ValueError(f"round {k} is not after the pool's version {self.version}")
        pending = [r for r in self.committed_rounds() if r > self.version]
        if pending:
            raise ValueError(
                f"rounds {pending} are committed on disk but not applied here: apply_round them "
                f"(or start a fresh pool) before committing round {k}"
            )

    def _read(self, k: int) -> tuple[list[Example], list[str]]:
        """The examples added and the ids retired by committed round ``k``, checking the file is whole."""
        path = self._round_path(k)
        header, *rest = path.read_text().splitlines()
        head = json.loads(header)
        records = [json.loads(line) for line in rest if line]
        if head.get("round") != k or head.get("added") != len(records):
            raise RuntimeError(f"{path} is corrupt: header {head} does not match its {len(records)} examples")
        return self._build(records, {}), list(head["retire"])

    def _build(self, records: list[dict[str, Any]], pngs: dict[str, bytes]) -> list[Example]:
        """Examples from their records, images as PNG bytes (``pngs`` first, else the file)."""
        images: dict[str, StoredImage] = {}
        examples = []
        for rec in records:
            for sha in [rec["image_sha1"], *rec.get("more_image_sha1", [])]:
                if sha not in images:
                    data = pngs.get(sha) or (self.images / f"{sha}.png").read_bytes()
                    with Image.open(io.BytesIO(data)) as img:  # reads the header only
                        images[sha] = StoredImage(data, img.size, "RGB")
            # A record written before a field existed lacks it: the field's default.
            fields = {f.name: rec[f.name] for f in dataclasses.fields(Example) if f.name in rec}
            fields["more_images"] = [images[sha] for sha in rec.get("more_image_sha1", [])]
            ex = Example(**fields, image=images[rec["image_sha1"]])
            ex.meta["weight"] = float(rec["weight"])
            examples.append(ex)
        return examples

    def _apply(self, k: int, added: list[Example], retire: list[str]) -> None:
        """Add the round's examples, then drop its retired ids (evictions may hit new examples)."""
        for ex in added:
            self._live[ex.id] = ex
            self.weights[ex.id] = ex.meta["weight"]
        for i in retire:
            self._live.pop(i, None)
            self.weights.pop(i, None)
            self.retired.add(i)
        self.version = k
