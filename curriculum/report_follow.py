"""What a run report reads across rounds: each weakness followed from round to round, and the
warnings a reader should see before the details.

A weakness's id is made of its slice (``count/num_objects=7-9``, ``brightest/answer=top left``),
so the same id in two rounds is the same probe items, and its failure rate then and later says
whether the examples made for it helped. Ids of clusters (``cluster/<k>``: data without labels,
clustered afresh each round) name different items in each round, so they are not followed.

A weakness's rate after its round is known where a later round diagnosed it again, or where a
round's ``round.json`` carries ``followed`` (``{id: [failures, n]}``: the rate on that round's
probe of every weakness diagnosed before). Otherwise the report says it was not among the later
round's weaknesses and gives its skill's probe failure rate, labelled as such.

Warnings: a round whose filters dropped most of its candidates, a pool that shrank, examples filed
under a weakness of another skill (off target), failed rounds, rounds that kept nothing.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from curriculum.report_html import Raw, badge, e, pct, table
from curriculum.run_records import RoundRecord

DROPPED_MOST = 0.5  # a round that dropped more than this share of its candidates is warned about
_OVERALL_RATE = re.compile(r"\(probe overall (\d+) %\)")


def diagnosis_text(text: Any) -> str:
    """An analyzer's diagnosis as the page shows it. Runs analysed before the analyzer said
    "(the whole probe: 74 % wrong)" wrote "(probe overall 74 %)", a failure rate that reads as an
    accuracy: the page says it the new way."""
    return _OVERALL_RATE.sub(r"(the whole probe: \1 % wrong)", "" if text is None else str(text))


def stable(weakness_id: str) -> bool:
    """Whether an id names the same slice in every round (clusters are made afresh each round)."""
    return not weakness_id.startswith("cluster/")


@dataclass
class Seen:
    """A weakness in one round: its failure rate on that round's probe, and what was made for it."""

    round: int
    failures: int | None
    n: int | None
    diagnosed: bool  # by the analyzer this round (else: only measured, through ``followed``)
    kept: int = 0
    candidates: int = 0

    @property
    def rate(self) -> float | None:
        return self.failures / self.n if self.failures is not None and self.n else None


@dataclass
class Followed:
    """One weakness across the rounds (a cluster: within its round only)."""

    id: str
    skill: str | None
    diagnosis: str
    slice: dict[str, Any]
    seen: dict[int, Seen] = field(default_factory=dict)

    @property
    def first(self) -> Seen:
        return self.seen[min(self.seen)]

    @property
    def last(self) -> Seen:
        return self.seen[max(self.seen)]


def _skill_of(record: dict[str, Any]) -> str | None:
    skill = record.get("skill")
    return None if skill in (None, "", "None") else str(skill)


def follow(rounds: list[RoundRecord]) -> list[Followed]:
    """Every weakness any round diagnosed, in the order first found, with each round's rate."""
    out: dict[str, Followed] = {}
    for r in rounds:
        kept = Counter(str(c.get("weakness")) for c in r.candidates if c.get("kept"))
        made = Counter(str(c.get("weakness")) for c in r.candidates)
        for w in r.weaknesses:
            wid = str(w.get("id"))
            key = wid if stable(wid) else f"{wid}@{r.round}"
            f = out.setdefault(key, Followed(wid if stable(wid) else f"{wid} (round {r.round})",
                                             _skill_of(w), diagnosis_text(w.get("diagnosis")), w.get("slice") or {}))  # fmt: skip
            f.seen[r.round] = Seen(r.round, w.get("failures"), w.get("n"), True, kept[wid], made[wid])
        for wid, (failures, n) in (r.summary.get("followed") or {}).items():
            if wid in out and r.round not in out[wid].seen:
                out[wid].seen[r.round] = Seen(r.round, failures, n, False, kept[wid], made[wid])
    return list(out.values())


def _probe_failure(r: RoundRecord, skill: str | None) -> float | None:
    acc = (
        r.metrics.get(f"curriculum/probe_skill/{skill}")
        if skill
        else r.metrics.get("curriculum/probe_accuracy")
    )
    return None if acc is None else 1.0 - acc


def followed_section(rounds: list[RoundRecord]) -> str:
    """The table of weaknesses across rounds: failure rate when found, examples kept for it,
    failure rate in each later round."""
    items = follow(rounds)
    if not items:
        return ""
    ran = [r for r in rounds if r.folder is not None]
    header = ["weakness", "skill", *(f"round {r.round}" for r in ran), "change"]
    rows = []
    for f in items:
        about = f"<code>{e(f.id)}</code><div class='clamp muted small' title='{e(f.diagnosis)}'>{e(f.diagnosis)}</div>"
        row: list[Any] = [Raw(about), f.skill or "–"]
        found = min(f.seen)
        for r in ran:
            s = f.seen.get(r.round)
            if s is not None and s.rate is not None:
                what = "found" if r.round == found else "again" if s.diagnosed else "measured"
                text = f"<b>{e(pct(s.rate, 0))}</b> fail ({s.failures}/{s.n})<br>" + e(what)
                if s.candidates:
                    text += e(f" · kept {s.kept}/{s.candidates}")
                row.append(Raw(text))
            elif r.round > found and stable(f.id):
                skill_fail = _probe_failure(r, f.skill)
                whole = (
                    f"<br>{e(f.skill or 'the probe')}: {e(pct(skill_fail, 0))} fail"
                    if skill_fail is not None
                    else ""
                )
                row.append(Raw(f"<span class='muted'>not diagnosed again{whole}</span>"))
            else:
                row.append("")
        first, last = f.first, f.last
        change = (
            f"{100 * (last.rate - first.rate):+.0f} pts"
            if last.round != first.round and first.rate is not None and last.rate is not None
            else "–"
        )
        row.append(change)
        rows.append(row)
    note = (
        '<p class="muted small">Failure rates on the probe set (share of the slice\'s probe items answered '
        "wrong), never accuracy; kept: the examples made for the weakness that the filters kept, of those made. A weakness's id is its slice, so the same id in two rounds is the same "
        "probe items; a round that did not diagnose it again does not measure it (its skill's probe "
        "failure rate is given instead). Clusters of unlabelled data are made afresh each round and not "
        "followed.</p>"
    )
    return (
        '<section id="weaknesses"><h2>Weaknesses across rounds</h2>'
        + table(header, rows, {len(header) - 1}, what="weaknesses", cls="follow")
        + note
        + "</section>"
    )


# ------------------------------------------------------------------------------------ warnings


@dataclass
class RoundWarning:
    """Something a reader should look at: which round (None: the run), what kind, what it says."""

    round: int | None
    kind: str  # dropped_most | pool_shrank | off_target | failed | nothing_kept
    text: str


def off_target(r: RoundRecord) -> list[dict[str, Any]]:
    """Kept candidates filed under a weakness of another skill than their own."""
    skill_of = {str(w.get("id")): _skill_of(w) for w in r.weaknesses}
    out = []
    for c in r.candidates:
        want = skill_of.get(str(c.get("weakness")))
        have = _skill_of(c)
        if c.get("kept") and want and have and have != want:
            out.append(c)
    return out


def _pool_sizes(rounds: list[RoundRecord]) -> list[tuple[int, int]]:
    """(round, live pool size after it) of every committed round: the round's own metric, else the
    replayed pool (added minus retired, round by round)."""
    out, live = [], 0
    for r in rounds:
        if r.committed:
            live += r.added - len(r.retired)
        size = r.metrics.get("curriculum/pool_size", live if r.committed else None)
        if size is not None and r.status != "failed":
            out.append((r.round, int(size)))
    return out


def warnings(rounds: list[RoundRecord]) -> list[RoundWarning]:
    """Every warning of the run's rounds, in round order."""
    out: list[RoundWarning] = []
    for r in rounds:
        if r.status == "failed":
            error = str(r.summary.get("error") or "no message").strip().splitlines() or ["no message"]
            out.append(RoundWarning(r.round, "failed", f"failed: {error[-1]}"))
            continue
        total = len(r.candidates)
        dropped = Counter(str(c.get("dropped_by")) for c in r.candidates if not c.get("kept"))
        n_dropped = sum(dropped.values())
        if total and n_dropped > DROPPED_MOST * total:
            by = ", ".join(f"{name} {n}" for name, n in dropped.most_common())
            out.append(RoundWarning(r.round, "dropped_most",
                               f"its filters dropped {n_dropped} of {total} candidates ({pct(n_dropped / total, 0)}): {by}"))  # fmt: skip
        if r.folder is not None and r.status == "ok" and total and n_dropped == total:
            out.append(RoundWarning(r.round, "nothing_kept", "kept nothing: the pool did not grow"))
        wrong = off_target(r)
        if wrong:
            pairs = Counter(f"{c.get('skill')} examples for {c.get('weakness')}" for c in wrong)
            eg = "; ".join(f"{n} {what}" for what, n in pairs.most_common(3))
            out.append(RoundWarning(r.round, "off_target",
                               f"{len(wrong)} kept examples are filed under a weakness of another skill ({eg})"))  # fmt: skip
    sizes = _pool_sizes(rounds)
    for (_, before), (k, after) in zip(sizes, sizes[1:], strict=False):
        if after < before:
            out.append(
                RoundWarning(k, "pool_shrank", f"the pool shrank from {before} to {after} live examples")
            )
    return sorted(out, key=lambda w: (w.round or 0, w.kind))


_KIND_LABEL = {"failed": ("failed", "bad"), "dropped_most": ("most dropped", "warn"),
               "pool_shrank": ("pool shrank", "warn"), "off_target": ("off target", "warn"),
               "nothing_kept": ("nothing kept", "bad")}  # fmt: skip


def warning_badges(ws: list[RoundWarning]) -> str:
    """The badges of one round's warnings (for its collapsed summary line)."""
    return " ".join(badge(*_KIND_LABEL[w.kind]) for w in ws)


def warnings_section(ws: list[RoundWarning]) -> str:
    if not ws:
        return (
            '<section id="warnings"><h2>Warnings</h2><p class="ok">None: no round dropped most of its '
            "candidates, the pool never shrank, no example is off target.</p></section>"
        )
    items = "".join(
        f'<li>{badge(*_KIND_LABEL[w.kind])} <a href="#round-{w.round}">round {w.round}</a>: {e(w.text)}.</li>'
        if w.round is not None
        else f"<li>{badge(*_KIND_LABEL[w.kind])} {e(w.text)}.</li>"
        for w in ws
    )
    return f'<section id="warnings"><h2>Warnings ({len(ws)})</h2><ul class="warnings">{items}</ul></section>'
