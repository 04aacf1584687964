import json

import numpy as np
import pytest

from securegal import messages as m
from securegal.errors import ConfigError
from securegal.transcript import TranscriptWriter, check_party_name, read_transcript
from securegal.wire.codec import encode


def write(tmp_path, n=3):
    w = TranscriptWriter(tmp_path / "bob", "bob")
    for i in range(n):
        env = m.Envelope("s", i + 1, "alice", "bob", i, m.FitRequest(np.full((4, 1), float(i))))
        w.record("received", encode(env), env)
    w.close()
    return tmp_path / "bob"


def test_round_trip(tmp_path):
    t = read_transcript(write(tmp_path))
    assert t.party == "bob" and len(t.records) == 3
    arrays = t.arrays("fit_request", "received")
    assert [r for r, _ in arrays] == [1, 2, 3]
    np.testing.assert_array_equal(arrays[2][1], np.full((4, 1), 2.0))
    assert t.bytes_received > 0 and t.bytes_sent == 0


def test_corruption_is_detected(tmp_path):
    d = write(tmp_path)
    data = bytearray((d / "messages.bin").read_bytes())
    data[5] ^= 0xFF
    (d / "messages.bin").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="do not match"):
        read_transcript(d)


def test_malformed_index_and_missing_files(tmp_path):
    d = write(tmp_path)
    (d / "index.jsonl").write_text(json.dumps({"seq": 0}) + "\n")
    with pytest.raises(ConfigError, match="corrupt transcript entry"):
        read_transcript(d)
    with pytest.raises(ConfigError, match="not a transcript"):
        read_transcript(tmp_path / "nothing")


@pytest.mark.parametrize("name", ["", "../x", "a/b", "x" * 65, ".hidden"])
def test_party_names_are_plain(name):
    with pytest.raises(ConfigError):
        check_party_name(name)
