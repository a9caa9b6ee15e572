import pytest

from curriculum.stream import DataStream


def test_epochs_are_permutations_and_deterministic():
    s = DataStream(10, seed=3)
    first = s.next_indices(5) + s.next_indices(5)
    assert sorted(first) == list(range(10))
    assert first == DataStream(10, seed=3).next_indices(10)
    assert first != DataStream(10, seed=4).next_indices(10)
    second = s.next_indices(10)
    assert sorted(second) == list(range(10)) and second != first


def test_ranks_draw_disjoint_items_and_resume_exactly():
    ranks = [DataStream(12, seed=0, rank=r, world_size=3) for r in range(3)]
    batch = [r.next_indices(4) for r in ranks]
    assert sorted(sum(batch, [])) == list(range(12))
    state = ranks[1].state_dict()
    ahead = ranks[1].next_indices(4)
    fresh = DataStream(12, seed=0, rank=1, world_size=3)
    fresh.load_state_dict(state)
    assert fresh.next_indices(4) == ahead


def test_changed_data_is_refused():
    s = DataStream(5, seed=0)
    with pytest.raises(ValueError, match="the data changed"):
        s.load_state_dict(DataStream(6, seed=0).state_dict())
