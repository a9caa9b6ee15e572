from curriculum.scoring import is_correct, is_exact, normalise, score, summarise


def test_normalise_and_match():
    assert normalise("  The Red. ") == "red"
    assert normalise("Three!") == "3"
    assert is_correct("three", "3") and is_correct("3.0", "3") and is_correct("A red", "red")
    assert not is_correct("4", "3") and not is_correct("blue", "red") and not is_correct("", "red")
    assert is_exact(" red ", "red") and not is_exact("Red", "red")


def test_summarise_per_skill():
    scores = score(
        ["a", "b", "c", "d"],
        ["colour", "colour", "count", None],
        ["red", "blue", "2", "x"],
        ["red", "red", "two", "y"],
    )
    m = summarise(scores)
    assert m["accuracy"] == 0.5 and m["exact"] == 0.25
    assert m["skill/colour"] == 0.5 and m["skill/count"] == 1.0 and m["n"] == 4
