"""Replay as hard-example mining: the train items nearest a weakness's failures in image and text,
its slice first, spread over the failures, never offered twice in a round nor while the pool holds
them, and different items from round to round until the candidates are spent."""

import random

from PIL import Image

from curriculum.generators import ReplayGenerator
from curriculum.mining import Neighbours, colour_histogram, hard_examples
from curriculum.types import Example, Failure, Weakness

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "grey": (128, 128, 128)}
TEMPLATE = "Which quadrant of this crop is brightest?"


def picture(colour: str, seed: int) -> Image.Image:
    """A noisy patch of one colour with a bright corner somewhere (seeded)."""
    rng = random.Random(seed)
    base = COLOURS[colour]
    img = Image.new("RGB", (16, 16), base)
    px = img.load()
    for x in range(16):
        for y in range(16):
            px[x, y] = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in base)
    corner = rng.choice([(0, 0), (8, 0), (0, 8), (8, 8)])
    for x in range(corner[0], corner[0] + 8):
        for y in range(corner[1], corner[1] + 8):
            px[x, y] = tuple(min(255, c + 30) for c in px[x, y])
    return img


def train_items(n: int = 80) -> list[Example]:
    """Templated questions (one text for all) about pictures of four colours, answers cycling."""
    answers = ["top left", "top right", "bottom left", "bottom right"]
    colours = list(COLOURS)
    return [
        Example(f"t{i}", picture(colours[(i // 4) % 4], i), TEMPLATE, answers[i % 4], skill="brightest")
        for i in range(n)
    ]


def failure(colour: str, answer: str, seed: int, new: bool = True, round: int = 1) -> Failure:
    ex = Example(f"p-{colour}-{seed}", picture(colour, 1000 + seed), TEMPLATE, answer, skill="brightest")
    return Failure(ex, "bottom right", round, new=new)


def weakness(wid: str = "brightest", slice_: dict | None = None) -> Weakness:
    return Weakness(wid, "brightest", slice_ or {}, 1.0, 0.8, 10, 10, [], "fails")


def test_neighbours_are_chosen_by_image_and_answer_not_by_the_templates_order():
    train = train_items()
    gen = ReplayGenerator(train)
    made = gen.generate(
        weakness(), [failure("green", "top right", 0), failure("green", "top right", 1)], 8, 5, "r"
    )
    picked = [int(ex.meta["replay_of"][1:]) for ex in made]
    looks = [(list(COLOURS)[(i // 4) % 4] == "green", train[i].answer == "top right") for i in picked]
    assert looks[:5] == [(True, True)] * 5  # the five green pictures answered "top right" first
    assert all(colour or answer for colour, answer in looks)  # then those alike in one of the two
    assert sorted(picked) != list(range(8))  # not the first items of the template
    blue = gen.generate(weakness("other"), [failure("blue", "top left", 2)], 6, 5, "r2")
    looks = [
        (list(COLOURS)[(int(ex.meta["replay_of"][1:]) // 4) % 4] == "blue", ex.answer == "top left")
        for ex in blue
    ]
    assert looks[:5] == [(True, True)] * 5 and all(a or b for a, b in looks)


def test_a_slice_of_one_answer_gets_half_its_picks_from_the_other_answers():
    train = train_items()
    made = ReplayGenerator(train).generate(
        weakness("brightest/answer=bottom left", {"answer": "bottom left"}),
        [failure("red", "top left", 0)],
        24,
        1,
        "r",
    )
    answers = [ex.answer for ex in made]
    assert answers[:12] == ["bottom left"] * 12  # half from the slice
    assert "bottom left" not in answers[12:] and len(answers) == 24  # half of the other answers
    assert answers[12:].count("top left") >= 5  # nearest the failure (answered "top left") first
    assert [bool(ex.meta.get("contrast")) for ex in made] == [False] * 12 + [
        True
    ] * 12  # the student check keeps these


def test_nothing_is_offered_twice_in_a_round_nor_while_the_pool_holds_it():
    train = train_items()
    held: set[str] = set()
    gen = ReplayGenerator(train, held=lambda: held)
    fails = [failure("grey", "top left", s) for s in range(3)]
    seen: list[str] = []
    for k in (1, 2, 3, 4):
        this_round = []
        for w in ("a", "b"):  # two weaknesses of one round never share an item
            made = gen.generate(
                weakness(w), [Failure(f.example, f.prediction, k) for f in fails], 10, 100 * k, f"r{k}{w}"
            )
            this_round += [ex.meta["replay_of"] for ex in made]
        assert len(this_round) == len(set(this_round)) == 20
        assert not set(this_round) & held  # the pool's items are left for later
        seen += this_round
        held |= set(this_round)  # kept: the live pool now holds them
    assert len(seen) == len(set(seen)) == 80  # every candidate once before any comes back
    assert gen.generate(weakness(), fails, 10, 9, "r5") == []  # spent: the budget passes on
    held.clear()  # retired from the pool: they may come back
    assert (
        len(gen.generate(weakness(), [Failure(f.example, f.prediction, 6) for f in fails], 10, 9, "r6")) == 10
    )


def test_picks_spread_over_the_failures_and_stubborn_ones_weigh_double():
    train = train_items()
    index = Neighbours(train)
    red, blue = failure("red", "top left", 0, new=True), failure("blue", "top left", 1, new=False)
    rows = hard_examples(index, list(range(len(train))), set(), [red, blue], 9, 0, set())
    colours = [list(COLOURS)[(r // 4) % 4] for r in rows]
    assert colours.count("blue") == 6 and colours.count("red") == 3  # blue failed before: two per turn
    again = hard_examples(index, list(range(len(train))), set(), [red, blue], 9, 0, set())
    assert rows == again  # deterministic for a seed


def test_ties_are_broken_by_the_seed_so_rounds_start_elsewhere():
    """Items alike in every respect (same picture, question and answer) rank by the seed's noise."""
    image = picture("grey", 0)
    train = [Example(f"t{i}", image, TEMPLATE, "top left", skill="brightest") for i in range(40)]
    index = Neighbours(train)
    f = [Failure(Example("p", image, TEMPLATE, "top left", skill="brightest"), "no", 1)]
    picks = {tuple(hard_examples(index, list(range(40)), set(), f, 5, seed, set())) for seed in range(6)}
    assert len(picks) == 6 and all(p != (0, 1, 2, 3, 4) for p in picks)


def test_colour_histograms_sum_to_one_and_tell_colours_apart():
    red, green = colour_histogram(picture("red", 0)), colour_histogram(picture("green", 0))
    assert abs(float(red.sum()) - 1) < 1e-6 and float((red * green).sum()) == 0.0


def test_rounds_on_external_data_keep_their_budget_when_replay_knows_what_the_pool_holds(
    tmp_path, world_small
):
    """The engine's contract (``taken()``: the real items the live pool holds a copy of) met here
    by hand: round after round every replay is an item the pool does not hold (dedup drops none),
    each round offers its whole budget until the weak skills' few train items run out, and the
    pool grows (the only drops are decontamination: external questions that copy a test item's)."""
    from curriculum.engine import Curriculum
    from tests.test_frontier_external import Policy, external
    from train.config import CurriculumConfig

    data = external(world_small)
    box = []
    held = lambda: {ex.meta.get("replay_of") for ex in box[0].pool.examples}  # noqa: E731
    cfg = CurriculumConfig(enabled=True, every=10, budget=24, generators={"replay": 1.0}, retire_check=0)
    cur = Curriculum(cfg, tmp_path / "cur", data["train"], data["probe"], {"test": data["test"]}, 32, 0,
                     generators=[ReplayGenerator(data["train"], held)])  # fmt: skip
    box.append(cur)
    made, sizes = [], []
    for k in (1, 2, 3):
        result = cur.update(10 * k, Policy())
        assert result.status == "ok"
        assert {c.dropped for c in result.candidates} <= {None, "decontaminate"}
        made.append(len(result.candidates))
        sizes.append(len(cur.pool))
    cur.close()
    assert made[:2] == [24, 24] and 0 < made[2] <= 24 and sizes[0] < sizes[1] < sizes[2]
    replayed = [ex.meta["replay_of"] for ex in cur.pool.examples]
    assert len(set(replayed)) == len(replayed) and all(
        ex.skill not in ("colour", "shape") for ex in cur.pool.examples
    )
