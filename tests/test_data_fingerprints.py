"""Every data path gives, bit for bit, the items and finished batches recorded before the
modality specs replaced the per-kind branches (tests/data_fingerprints.py says how)."""
import json

import pytest

from data_fingerprints import RECORD, fingerprints, versions


def test_items_and_batches_are_bit_identical_to_the_record(tmp_path):
    record = json.loads(RECORD.read_text())
    if record["versions"] != versions():
        pytest.skip(f"recorded with {record['versions']}, running {versions()}: decoders may differ")
    now = fingerprints(tmp_path)
    differing = sorted(name for name in record["paths"] if now.get(name) != record["paths"][name])
    assert not differing, f"data paths whose items or batches changed: {differing}"
    assert set(now) == set(record["paths"])
