"""The checked-in generated module must match protocol/securegal.proto."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_generated_code_matches_the_schema(tmp_path):
    pytest.importorskip("grpc_tools")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protocol'}", f"--python_out={tmp_path}",
                    "securegal.proto"], check=True, cwd=ROOT)
    fresh = (tmp_path / "securegal_pb2.py").read_text()
    checked_in = (ROOT / "securegal" / "wire" / "securegal_pb2.py").read_text()
    assert fresh == checked_in, "regenerate: python -m grpc_tools.protoc -Iprotocol --python_out=securegal/wire securegal.proto"
