"""The README documents every config key, and every key has a description."""

from pathlib import Path

from train.config import reference

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_config_key_is_described_and_in_the_readme():
    rows = reference()
    assert len(rows) > 40
    for key, _type, _default, doc in rows:
        assert doc, f"config key {key} has no docstring"
        assert f"`{key}`" in README, f"README lacks config key {key} (paste `lessonloop config`)"
