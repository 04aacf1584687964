"""attacks/ reads transcripts only: no securegal internals beyond the transcript reader, the wire
codec, the message vocabulary and the errors (one-way imports, checked on the source)."""
import ast
import pathlib

ATTACKS = pathlib.Path(__file__).resolve().parents[2] / "attacks"
ALLOWED = ("securegal.errors", "securegal.transcript", "securegal.wire", "securegal.messages")


def _imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_attacks_import_only_the_transcript_reader_codec_and_errors():
    bad = {f"{p.name}: {m}" for p in ATTACKS.glob("*.py") for m in _imports(p)
           if m.startswith("securegal") and not m.startswith(ALLOWED)}
    assert not bad, f"attacks/ imports securegal internals: {sorted(bad)}"
