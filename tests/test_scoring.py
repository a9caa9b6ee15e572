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


def test_a_reasoned_prediction_is_judged_by_its_last_final_answer():
    from curriculum.scoring import final_answer, split_answer, with_rationale
    from curriculum.types import Example

    text = with_rationale("Two red, one blue. Answer: not this one", "3")
    assert (
        split_answer(text) == ("Two red, one blue. Answer: not this one", "3") and final_answer(text) == "3"
    )
    assert is_correct(text, "three") and not is_correct("Answer: 4", "3") and final_answer(" 7 ") == "7"
    ex = Example("e", None, "How many?", "3", meta={"rationale": "I count three."})
    assert ex.target == "I count three.\nAnswer: 3" and Example("f", None, "q", "3").target == "3"
