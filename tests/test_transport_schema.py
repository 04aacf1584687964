"""The checked-in transport module must be exactly what protoc makes of protocol/transport.proto."""
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]


def test_generated_transport_module_matches_proto(tmp_path):
    rc = protoc.main(["protoc", f"-I{ROOT / 'protocol'}", f"--python_out={tmp_path}", str(ROOT / "protocol" / "transport.proto")])
    assert rc == 0
    fresh = (tmp_path / "transport_pb2.py").read_text()
    checked_in = (ROOT / "securegal" / "wire" / "transport_pb2.py").read_text()
    assert fresh == checked_in, "regenerate: python -m grpc_tools.protoc -Iprotocol --python_out=securegal/wire protocol/transport.proto"
