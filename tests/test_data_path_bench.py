"""benchmarks/data_path.py measures the collator three ways and the padding at toy sizes."""

import json

from tests.helpers import benchmark


def test_the_data_path_benchmark_writes_collator_times_and_padding(tmp_path):
    out = tmp_path / "data_path.json"
    argv = ["--items", "16", "--batch-size", "8", "--passes", "2", "--runs", "0", "--out", str(out)]
    assert benchmark("data_path").main(argv) == 0
    result = json.loads(out.read_text())
    times = result["collator_ms_per_batch"]
    assert set(times) == {"encode_again", "encode_once", "encode_once_image_cache"}
    assert all(len(v) == 2 and all(t > 0 for t in v) for v in times.values())
    assert 0.0 < result["padding_fraction"] < 1.0 and "runs" not in result
