"""Hostile label owner against real ``securegal party serve`` processes (loopback, no TLS).

Starts a plain party, a DP party (``privacy = {"epsilon": 1.0}``) and, unless ``--no-ckks``, a
CKKS party, then throws at them byte-level garbage (raw gRPC frames, hand-built protobuf) and
well-formed envelopes with hostile values. For every case it records the reply (gRPC status or
ErrorReply code + message), whether the process is alive and still answers, and its RSS. Flags:
an ``internal`` code, a gRPC UNKNOWN (an exception escaped the handler), traceback text, a path
or a table value in a reply, a hang, a crash, an accepted message that should be refused, RSS
over the tests' bound (8 x max_message_bytes + 96 MiB over the start).

    cd /work/main && flock /tmp/heavy.lock env PYTHONPATH=. .venv/bin/python benchmarks/wire_fuzz.py

Results: /tmp/fuzz/results.json (every case) and a summary on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from securegal import messages as m
from securegal.align import LabelOwnerPsi
from securegal.deploy.localnet import party_config
from securegal.deploy.ready import ready_port
from securegal.transport.frames import FrameLimits, new_message_id, split
from securegal.transport.grpc_server import METHOD_PATH
from securegal.wire import securegal_pb2 as pb
from securegal.wire import transport_pb2 as tpb
from securegal.wire.codec import Limits, decode, encode

WORK = Path("/tmp/fuzz")
ROWS = 569
MAXMSG = 4 << 20            # plain / DP party limits.max_message_bytes
CKKS_MAXMSG = 64 << 20      # the CKKS party's (ciphertexts are large)
DATA = {"dataset": "breast_cancer", "parties": 2, "block": 1}
PATH_RE = re.compile(r"(/tmp/|/work/|/home/|\.toml|\.json|\.parquet|\.csv|\.npy|site-packages)")
TRACE_RE = re.compile(r"(Traceback|File \"|line \d+, in )")
GEN = Limits(max_message_bytes=1 << 31, max_elements=1 << 31)


def varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def tag(field: int, wt: int) -> bytes:
    return varint((field << 3) | wt)


def ld(field: int, payload: bytes) -> bytes:
    return tag(field, 2) + varint(len(payload)) + payload


def rss(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0])
    except FileNotFoundError:
        pass
    return out


class Party:
    def __init__(self, kind: str):
        self.kind = kind
        self.dir = WORK / kind
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        privacy = {"epsilon": 1.0, "session_epsilon": 0.05} if kind == "dp" else None
        self.maxmsg = CKKS_MAXMSG if kind == "ckks" else MAXMSG
        text = party_config("party1", data=DATA, learner_seed=1, certs=None, transcripts=None, privacy=privacy,
                            limits={"max_message_bytes": self.maxmsg},
                            residuals="ckks" if kind == "ckks" else "plain")
        self.toml = self.dir / "p.toml"
        self.toml.write_text(text)
        self.out = open(self.dir / "stdout.log", "w+")
        self.err = open(self.dir / "stderr.log", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "securegal.cli", "party", "serve", "--config",
                                      str(self.toml)], stdout=self.out, stderr=self.err, cwd=self.dir)
        deadline = time.time() + 120
        while time.time() < deadline:
            self.out.seek(0)
            line = self.out.read()
            port = ready_port(line.splitlines()[0], "party party1") if line.strip() else None
            if port is not None:
                self.port = port
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"{kind} party did not start: {self.err_text()[-2000:]}")
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{kind} party did not start in time")
        time.sleep(0.3)
        self.start = rss(self.proc.pid)
        self.peak_seen = dict(self.start)
        self.bound_kib = (8 * self.maxmsg + 96 * 2 ** 20) // 1024

    def err_text(self) -> str:
        self.err.flush()
        return Path(self.dir / "stderr.log").read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_over(self) -> int:
        """KiB of peak RSS over the start."""
        r = rss(self.proc.pid)
        if r:
            self.peak_seen = r
        return self.peak_seen.get("VmHWM", 0) - self.start.get("VmRSS", 0)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Client:
    """A label owner that speaks raw bytes to one party."""

    def __init__(self, party: Party):
        self.party = party
        opts = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
        self.channel = grpc.insecure_channel(f"127.0.0.1:{party.port}", options=opts)
        self.stub = self.channel.stream_stream(METHOD_PATH)
        self.seq = 0
        self.handles: dict[str, np.ndarray] = {}
        self.ckks = None

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def raw(self, frames: list[bytes], timeout: float = 60.0):
        """('OK', reply bytes) or (grpc status name, details)."""
        try:
            out = list(self.stub(iter(frames), timeout=timeout))
            return "OK", b"".join(tpb.Frame.FromString(f).data for f in out)
        except grpc.RpcError as e:
            return e.code().name, e.details() or ""

    def send_bytes(self, data: bytes, timeout: float = 120.0):
        frames = [f.SerializeToString() for f in split(new_message_id(), data, FrameLimits(max_message_bytes=1 << 40))]
        return self.raw(frames, timeout)

    def env(self, session, body, round=0, seq=None, sender="alice", receiver="party1") -> bytes:
        return encode(m.Envelope(session, round, sender, receiver, self.next_seq() if seq is None else seq, body))

    def send(self, session, body, **kw):
        return _decoded(self.send_bytes(self.env(session, body, **kw)))

    # --- normal protocol steps -------------------------------------------------------------
    def psi(self, session: str):
        psi = LabelOwnerPsi(list(range(ROWS)), session)
        st, reply = self.send(session, psi.request())
        if st != "OK" or not isinstance(reply, m.PsiReply):
            return st, reply
        self.handles[session] = psi.finish(reply).handles
        return "OK", reply

    def open(self, session: str, select=True):
        st, reply = self.psi(session)
        if st != "OK" or not isinstance(reply, m.PsiReply):
            raise RuntimeError(f"PSI failed: {st} {reply}")
        if select:
            st, ack = self.send(session, m.PsiSelection(np.sort(self.handles[session])))
            if not isinstance(ack, m.PsiSelectionAck):
                raise RuntimeError(f"selection failed: {st} {ack}")
        return self.handles[session]

    def setup(self, session, rows, K=2, rounds=3, task="classification", **kw):
        h = self.handles[session]
        fields = {}
        if self.party.kind == "ckks":
            fields = dict(self.ckks.setup_fields("party1"))
        fields.update(kw)
        return self.send(session, m.Setup(h[rows], K, rounds, task, **fields))

    def residuals(self, r, round):
        if self.party.kind == "ckks":
            return self.ckks.seal(np.asarray(r, dtype=np.float64), round, "party1")
        return r

    def finish(self, session):
        return self.send(session, m.Finish())


# --- case bookkeeping -------------------------------------------------------------------------

RESULTS: list[dict] = []
TABLE_VALUES: set[str] = set()


def table_values() -> None:
    from securegal.data.datasets import load_dataset
    from securegal.data.split import party_tables, vertical_split

    ds = load_dataset("breast_cancer")
    X = party_tables(ds, vertical_split(ds, 2))[1].X
    for v in np.asarray(X, dtype=float).ravel():
        s = repr(float(v))
        if len(s.replace("-", "").replace(".", "")) >= 7:  # only distinctive numbers
            TABLE_VALUES.add(s)


def summarize(status, reply) -> tuple[str, str]:
    if status != "OK":
        return f"grpc:{status}", str(reply)
    if isinstance(reply, m.ErrorReply):
        return f"error:{reply.code}", reply.message
    return f"ok:{type(reply).__name__}", ""


def record(client: Client, name: str, status, reply, expect: str = "refuse", note: str = "", probe=True) -> dict:
    """``expect``: 'refuse' (a clean refusal), 'accept', or 'any'."""
    party = client.party
    outcome, message = summarize(status, reply)
    flags = []
    if outcome == "error:internal":
        flags.append("INTERNAL")
    if outcome == "grpc:UNKNOWN":
        flags.append("UNCAUGHT_EXCEPTION")
    if outcome in ("grpc:DEADLINE_EXCEEDED",):
        flags.append("HANG")
    if outcome == "grpc:UNAVAILABLE" or not party.alive():
        flags.append("CRASH" if not party.alive() else "UNAVAILABLE")
    if outcome == "UNDECODABLE_REPLY" or outcome == "grpc:UNDECODABLE_REPLY":
        flags.append("BAD_REPLY")
    if TRACE_RE.search(message):
        flags.append("TRACEBACK_TEXT")
    if PATH_RE.search(message):
        flags.append("PATH_LEAK")
    leaked = [v for v in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", message) if v in TABLE_VALUES]
    if leaked:
        flags.append(f"VALUE_LEAK {leaked[:3]}")
    if expect == "refuse" and outcome.startswith("ok:"):
        flags.append("ACCEPTED")
    if expect == "accept" and not outcome.startswith("ok:"):
        flags.append("REFUSED_VALID")
    if probe and party.alive():
        st, rep = client.send("probe-session", m.Finish())  # cheap: must be a clean protocol refusal
        if not (st == "OK" and isinstance(rep, m.ErrorReply) and rep.code == "protocol"):
            flags.append(f"PROBE_FAILED {summarize(st, rep)}")
    over = party.rss_over()
    if over * 1024 > 8 * party.maxmsg + 96 * 2 ** 20:
        flags.append(f"RSS_OVER_BOUND {over // 1024} MiB")
    row = {"party": party.kind, "case": name, "outcome": outcome, "message": message[:400],
           "flags": flags, "note": note, "rss_over_kib": over, "reply_len": len(message)}
    RESULTS.append(row)
    mark = "FLAG " + ",".join(flags) if flags else "ok"
    print(f"[{party.kind:4}] {name:58.58} {outcome:28.28} {mark}  {message[:110]!r}", flush=True)
    return row


def health(client: Client, tag_: str) -> None:
    """A full normal session: PSI, selection, setup, 1 fit, predict, finish."""
    s = f"health-{tag_}-{client.next_seq()}"
    try:
        h = client.open(s)
        st, ack = client.setup(s, np.arange(300), K=2, rounds=1)
        if st == "OK" and isinstance(ack, m.ErrorReply) and ack.code == "budget_exceeded":
            client.finish(s)
            return record(client, f"HEALTH {tag_} (budget exhausted: clean)", st, ack, expect="any", probe=False)
        if not isinstance(ack, m.SetupAck):
            client.finish(s)
            return record(client, f"HEALTH {tag_} setup", st, ack, expect="accept", probe=False)
        r = np.random.default_rng(0).normal(size=(300, 2)) * 0.1
        st, fit = client.send(s, m.FitRequest(client.residuals(r, 1)), round=1)
        if not isinstance(fit, m.FitReply):
            client.finish(s)
            return record(client, f"HEALTH {tag_} fit", st, fit, expect="accept", probe=False)
        st, pred = client.send(s, m.PredictRequest(h[np.arange(300, 350)], 1))
        if not isinstance(pred, m.PredictReply):
            client.finish(s)
            return record(client, f"HEALTH {tag_} predict", st, pred, expect="accept", probe=False)
        st, fin = client.finish(s)
        return record(client, f"HEALTH {tag_}", st, fin, expect="accept", probe=False)
    except Exception as exc:  # noqa: BLE001
        RESULTS.append({"party": client.party.kind, "case": f"HEALTH {tag_}", "outcome": "exception",
                        "message": repr(exc)[:400], "flags": ["HEALTH_FAILED"], "note": "", "rss_over_kib": 0})
        print(f"[{client.party.kind}] HEALTH {tag_} FAILED {exc!r}", flush=True)


# --- raw protobuf builders --------------------------------------------------------------------

def tensor_bytes(dtype: str | bytes, shape, data: bytes, shape_packed=True) -> bytes:
    d = dtype.encode() if isinstance(dtype, str) else dtype
    out = ld(1, d)
    if shape:
        if shape_packed:
            out += ld(2, b"".join(varint(s & (2 ** 64 - 1)) for s in shape))
        else:
            out += b"".join(tag(2, 0) + varint(s & (2 ** 64 - 1)) for s in shape)
    return out + ld(3, data)


def envelope_bytes(session: str | bytes, body_field: int | None, body: bytes, seq: int, round: int = 0,
                   version: int = 1, sender=b"alice", receiver=b"party1") -> bytes:
    s = session.encode() if isinstance(session, str) else session
    out = tag(1, 0) + varint(version) + ld(2, s) + tag(3, 0) + varint(round) + ld(4, sender) + ld(5, receiver)
    out += tag(6, 0) + varint(seq)
    if body_field is not None:
        out += ld(body_field, body)
    return out


def fit_raw(tensor: bytes) -> bytes:
    """FitRequest { residuals: Payload { plain: tensor } }."""
    return ld(1, ld(1, tensor))


def f64(a) -> bytes:
    return np.ascontiguousarray(a, dtype="<f8").tobytes()


# --- the cases --------------------------------------------------------------------------------

def byte_level(c: Client) -> None:
    rng = np.random.default_rng(1)
    good_setup = c.env("s-bytes", m.Setup(np.arange(30), 2, 3, "classification"))
    cases = [
        ("empty message (0 bytes)", b""),
        ("one zero byte", b"\x00"),
        ("random 64 bytes", rng.bytes(64)),
        ("random 4 KiB", rng.bytes(4096)),
        ("random 1 MiB", rng.bytes(1 << 20)),
        ("valid setup truncated to 7 bytes", good_setup[:7]),
        ("valid setup truncated by 1 byte", good_setup[:-1]),
        ("valid setup + trailing garbage", good_setup + b"\xff\xff\xff"),
        ("field 1 (version) as length-delimited", ld(1, b"abc") + good_setup[2:]),
        ("field 2 (session) as varint", tag(2, 0) + varint(5) + good_setup),
        ("body field 10 as varint", envelope_bytes("s", None, b"", 1) + tag(10, 0) + varint(7)),
        ("setup body as fixed64", envelope_bytes("s", None, b"", 1) + tag(10, 1) + b"\x00" * 8),
        ("nested unknown groups 3000 deep", envelope_bytes("s", None, b"", 1) + tag(99, 3) * 3000 + tag(99, 4) * 3000),
        ("nested unknown groups 90 deep", envelope_bytes("s", None, b"", 1) + tag(99, 3) * 90 + tag(99, 4) * 90),
        ("unbalanced end-group tag", envelope_bytes("s", None, b"", 1) + tag(99, 4)),
        ("wire type 6 (invalid)", envelope_bytes("s", None, b"", 1) + tag(7, 6)),
        ("field number 0", b"\x00\x01" + good_setup),
        ("max field number unknown", good_setup + tag(536870911, 0) + varint(1)),
        ("length prefix 2^40 past end", envelope_bytes("s", None, b"", 1) + tag(10, 2) + varint(1 << 40)),
        ("10-byte overlong varint", tag(1, 0) + b"\xff" * 10 + b"\x01"),
        ("version 0", envelope_bytes("s", 16, b"", 1, version=0)),
        ("version 2", envelope_bytes("s", 16, b"", 1, version=2)),
        ("version 2^32-1", envelope_bytes("s", 16, b"", 1, version=2 ** 32 - 1)),
        ("version as 2^64-1 varint (uint32 field)", tag(1, 0) + varint(2 ** 64 - 1) + envelope_bytes("s", 16, b"", 1)[2:]),
        ("no session", envelope_bytes(b"", 16, b"", 1)),
        ("no sender", envelope_bytes("s", 16, b"", 1, sender=b"")),
        ("invalid UTF-8 session", envelope_bytes(b"\xff\xfe\xc0", 16, b"", 1)),
        ("invalid UTF-8 sender", envelope_bytes("s", 16, b"", 1, sender=b"\xc3\x28")),
        ("NUL in session", envelope_bytes("a\x00b", 16, b"", 1)),
        ("no body", envelope_bytes("s", None, b"", 1)),
        ("unknown body field 30", envelope_bytes("s", 30, b"", 1)),
        ("two bodies (setup+finish)", envelope_bytes("s", 10, b"", 1) + ld(16, b"")),
        ("100k repeated finish bodies", envelope_bytes("s", None, b"", 1) + ld(16, b"") * 100_000),
        ("100k repeated session fields", envelope_bytes("s", 16, b"", 1) + ld(2, b"x") * 100_000),
        ("ErrorReply body from client", envelope_bytes("s", 18, ld(1, b"internal") + ld(2, b"boom"), 1)),
    ]
    for name, data in cases:
        record(c, "bytes: " + name, *_decoded(c.send_bytes(data)))


def _decoded(outcome: tuple[str, object]) -> tuple[str, object]:
    """(status, reply) with an OK reply decoded to its body, or flagged if it does not decode."""
    st, rep = outcome
    if st == "OK":
        try:
            rep = decode(rep, GEN).body
        except Exception as exc:  # noqa: BLE001 - any failure to decode a reply is the finding
            st, rep = "UNDECODABLE_REPLY", repr(exc)
    return st, rep


def frame_level(c: Client) -> None:
    F = lambda **kw: tpb.Frame(**kw).SerializeToString()  # noqa: E731
    env = c.env("s-frames", m.Finish())
    mid = "ab"
    cases = [
        ("no frames at all", []),
        ("garbage frame bytes", [b"\xff\x00\x13garbage"]),
        ("message id empty", [F(message_id="", index=0, count=1, total_size=len(env), data=env)]),
        ("message id 65 hex", [F(message_id="a" * 65, index=0, count=1, total_size=len(env), data=env)]),
        ("message id upper-case", [F(message_id="AB", index=0, count=1, total_size=len(env), data=env)]),
        ("message id 1 MiB", [F(message_id="a" * (1 << 20), index=0, count=1, total_size=len(env), data=env)]),
        ("count 0", [F(message_id=mid, index=0, count=0, total_size=len(env), data=env)]),
        ("count 2^32-1, one frame", [F(message_id=mid, index=0, count=2 ** 32 - 1, total_size=2 ** 40, data=env)]),
        ("index >= count", [F(message_id=mid, index=1, count=1, total_size=len(env), data=env)]),
        ("total_size = limit + 1", [F(message_id=mid, index=0, count=1, total_size=MAXMSG + 1, data=env)]),
        ("total_size 2^64-1", [F(message_id=mid, index=0, count=1, total_size=2 ** 64 - 1, data=env)]),
        ("total_size smaller than data", [F(message_id=mid, index=0, count=1, total_size=3, data=env)]),
        ("total_size larger than data", [F(message_id=mid, index=0, count=1, total_size=len(env) + 10, data=env)]),
        ("empty data, total_size > 0", [F(message_id=mid, index=0, count=1, total_size=5, data=b"")]),
        ("frames out of order", [F(message_id=mid, index=1, count=2, total_size=len(env), data=env[5:]),
                                  F(message_id=mid, index=0, count=2, total_size=len(env), data=env[:5])]),
        ("second frame other id", [F(message_id=mid, index=0, count=2, total_size=len(env), data=env[:5]),
                                   F(message_id="cd", index=1, count=2, total_size=len(env), data=env[5:])]),
        ("extra frame after complete", [F(message_id=mid, index=0, count=1, total_size=len(env), data=env),
                                        F(message_id=mid, index=0, count=1, total_size=len(env), data=env)]),
        ("stream ends early (1 of 2)", [F(message_id=mid, index=0, count=2, total_size=len(env), data=env[:5])]),
        ("frame data = chunk + 1", [F(message_id=mid, index=0, count=1, total_size=(1 << 20) + 1,
                                      data=b"\x00" * ((1 << 20) + 1))]),
        ("frame over gRPC limit (2 MiB)", [F(message_id=mid, index=0, count=1, total_size=2 << 20,
                                             data=b"\x00" * (2 << 20))]),
        ("100k one-byte frames", [F(message_id=mid, index=i, count=100_000, total_size=100_000, data=b"\x08")
                                  for i in range(100_000)]),
        ("message = limit + 1 in 5 frames", [F(message_id=mid, index=i, count=5, total_size=MAXMSG + 1,
                                               data=b"\x00" * ((MAXMSG + 1) // 5 + (1 if i < (MAXMSG + 1) % 5 else 0)))
                                             for i in range(5)]),
    ]
    for name, frames in cases:
        record(c, "frames: " + name, *_decoded(c.raw(frames, timeout=60)))
    # a message at the limit exactly (garbage body): must be refused by the codec, not the transport
    st, rep = c.send_bytes(b"\x08\x01" + ld(99, b"\x00" * (MAXMSG - 2 - 3 - 4)))
    if st == "OK":
        rep = decode(rep, GEN).body
    record(c, "frames: message of ~limit bytes (unknown field)", st, rep)


def stalled(c: Client, n: int, hold: float = 45.0) -> None:
    """``n`` calls send frame 0 of 2 and stall for ``hold`` s; a probe then waits up to 40 s: the
    server cancels a call whose frames stop for 30 s (PartyServer idle_timeout), so with four
    stalls (its four workers) the probe is answered after about 30 s, with three at once."""
    env = c.env("stall", m.Finish())
    first = tpb.Frame(message_id="ee", index=0, count=2, total_size=len(env), data=env[:3]).SerializeToString()
    release = threading.Event()

    def gen():
        yield first
        release.wait(hold)

    out = []
    threads = [threading.Thread(target=lambda: out.append(_call_gen(c, gen(), hold + 30))) for _ in range(n)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    t0 = time.time()
    st, rep = c.send_bytes(c.env("probe-session", m.Finish()), 40.0)
    waited = time.time() - t0
    if st == "OK":
        rep = decode(rep, GEN).body
    release.set()
    for t in threads:
        t.join()
    record(c, f"{n} stalled streams, probe", st, rep, expect="any",
           note=f"probe answered after {waited:.2f}s; stalled calls ended with {sorted({o[0] for o in out})}")


def _call_gen(c: Client, gen, timeout):
    try:
        return "OK", list(c.stub(gen, timeout=timeout))
    except grpc.RpcError as e:
        return e.code().name, e.details()


def before_setup(c: Client) -> None:
    s = "nosession"
    h = np.arange(40)
    for name, body in [("FitRequest", m.FitRequest(np.zeros((30, 2)))), ("PredictRequest", m.PredictRequest(h, 1)),
                       ("Finish", m.Finish()), ("PsiSelection", m.PsiSelection(h)),
                       ("Setup without PSI", m.Setup(h, 2, 3, "classification")),
                       ("SetupAck", m.SetupAck({"a": "b"})), ("FitReply", m.FitReply(np.zeros((2, 2)))),
                       ("PredictReply", m.PredictReply(np.zeros((1, 2, 2)))), ("FinishAck", m.FinishAck()),
                       ("ErrorReply", m.ErrorReply("internal", "x")),
                       ("PsiReply", m.PsiReply(b"\x09" * 32, b"\x09" * 32, np.array([1]))),
                       ("PsiSelectionAck", m.PsiSelectionAck(3))]:
        st, rep = c.send(s, body)
        record(c, f"pre-setup: {name}", st, rep)
    st, rep = c.send(s, m.Finish(), receiver="party2")
    record(c, "wrong receiver", st, rep)
    st, rep = c.send(s, m.Finish(), sender="mallory")
    record(c, "wrong sender", st, rep)
    for L in (1 << 16, 1 << 20, MAXMSG - 200):
        st, rep = c.send("S" * L, m.Finish())
        record(c, f"session id of {L} chars (echoed in reply?)", st, rep,
               note=f"reply bytes {len(rep.message) if isinstance(rep, m.ErrorReply) else len(str(rep))}")
    st, rep = c.send("s", m.Finish(), sender="A" * (MAXMSG - 200))
    record(c, f"sender of {MAXMSG - 200} chars", st, rep)


def psi_cases(c: Client) -> None:
    from securegal.align.psi import LabelOwnerPsi as _L  # noqa: F401

    good = LabelOwnerPsi(list(range(ROWS)), "x").request().points
    p = 2 ** 255 - 19
    small_order = [0, 1, p - 1, 325606250916557431795983626356110631294008115727848805560023387167927233504,
                   39382357235489614581723060781553021112529911719440698176882885853963445705823]
    n = 0

    def fresh(points=None, session=None, id_kind="int", body_session=None):
        nonlocal n
        n += 1
        s = session or f"psi-{n}"
        return s, c.send(s, m.PsiRequest(body_session or s, id_kind, good if points is None else points))

    for name, kw in [("33-byte points", dict(points=good[:33])),
                     ("no points (empty)", dict(points=b"")),
                     ("all-0xff points (u >= p)", dict(points=b"\xff" * 32 * 10)),
                     ("u = p (non-canonical zero)", dict(points=p.to_bytes(32, "little") * 3)),
                     ("id kind 'float'", dict(id_kind="float")),
                     ("id kind 'str' vs int table", dict(id_kind="str")),
                     ("inner session != envelope session", dict(body_session="other")),
                     ("session 257 chars", dict(session="s" * 257)),
                     ("session 256 chars", dict(session="t" * 256))]:
        s, (st, rep) = fresh(**kw)
        record(c, f"psi: {name}", st, rep, expect="any" if name.startswith("session 256") else "refuse")
        c.finish(s)
    for u in small_order:
        s, (st, rep) = fresh(points=(u % 2 ** 256).to_bytes(32, "little") + good[32:64])
        record(c, f"psi: small-order point u={str(u)[:12]}", st, rep)
        c.finish(s)
    s, (st, rep) = fresh(points=good * 50)
    record(c, "psi: 28k points (same IDs x50)", st, rep, expect="any")
    c.finish(s)
    # hostile selections
    for name, handles in [("empty", np.zeros(0, np.int64)), ("duplicates", None), ("unknown handles", np.arange(30)),
                          ("negative", -np.arange(1, 31)), ("float64", "f"), ("2-D", "2d"),
                          ("one row", "one"), ("int64 max", np.full(1, 2 ** 63 - 1))]:
        s = f"sel-{name}"
        c.psi(s)
        h = np.sort(c.handles[s])
        if isinstance(handles, str):
            if handles == "f":
                st, rep = c.send_bytes(envelope_bytes(s, 21, ld(1, tensor_bytes("float64", [30], f64(h[:30]))), c.next_seq()))
                rep = decode(rep, GEN).body if st == "OK" else rep
            elif handles == "2d":
                st, rep = c.send_bytes(envelope_bytes(s, 21, ld(1, tensor_bytes("int64", [15, 2], h[:30].astype("<i8").tobytes())),
                                                      c.next_seq()))
                rep = decode(rep, GEN).body if st == "OK" else rep
            else:
                st, rep = c.send(s, m.PsiSelection(h[:1]))
        else:
            if handles is None:
                handles = np.r_[h[:30], h[:1]]
            st, rep = c.send(s, m.PsiSelection(handles))
        record(c, f"psi selection: {name}", st, rep, expect="any" if name == "one row" else "refuse")
        c.finish(s)
    s = "psi-then-finish"
    c.open(s)
    st, rep = c.finish(s)
    record(c, "finish after PSI + selection, before setup", st, rep, expect="any")
    s = "psi-only-finish"
    c.psi(s)
    st, rep = c.finish(s)
    record(c, "finish after PSI only, before setup", st, rep, expect="any")
    s = "sel-twice"
    c.open(s)
    st, rep = c.send(s, m.PsiSelection(np.sort(c.handles[s])))
    record(c, "psi selection: second selection", st, rep)
    c.finish(s)
    s = "psi-open"
    open_session(c, s)
    st, rep = c.send(s, m.PsiRequest(s, "int", good))
    record(c, "psi: PsiRequest in a set-up, open session", st, rep)
    st, rep = c.send("psi-new", m.PsiRequest("psi-new", "int", good))
    record(c, "psi: PsiRequest for a new session while one is open", st, rep)
    c.finish(s)


def setup_cases(c: Client) -> None:
    rows = np.arange(300)
    k = 0
    for name, kw, expect in [
            ("n_outputs 0", dict(K=0), "refuse"),
            ("rounds 0", dict(rounds=0), "refuse"),
            ("task 'bogus'", dict(task="bogus"), "refuse"),
            ("residuals 'ckks' + garbage he_context", dict(residuals="ckks", he_context=b"\x00" * 100), "refuse"),
            ("residuals 'plain' + 1 MiB he_context", dict(residuals="plain", he_context=b"\x01" * (1 << 20)), "any"),
            ("options local_loss 'bogus'", dict(options={"local_loss": "bogus"}), "refuse"),
            ("options local_loss 'cross_entropy'", dict(options={"local_loss": "cross_entropy"}), "any"),
            ("options membership 'other'", dict(options={"membership": "other"}), "refuse"),
            ("options membership 'hidden' (subset)", dict(options={"membership": "hidden"}), "refuse"),
            ("options builtin_dataset 'iris'", dict(options={"builtin_dataset": "iris"}), "refuse"),
            ("options 50k entries", dict(options={f"k{i}": "v" for i in range(50_000)}), "any"),
            ("options value 3 MiB", dict(options={"x": "v" * (3 << 20)}), "any"),
            ("n_outputs 2^32-1", dict(K=2 ** 32 - 1), "any"),
            ("rounds 2^32-1", dict(rounds=2 ** 32 - 1), "any"),
            ("n_outputs 10^6 rounds 10^6", dict(K=10 ** 6, rounds=10 ** 6), "any")]:
        k += 1
        s = f"setup-{k}"
        c.open(s)
        K = kw.pop("K", 2)
        rounds = kw.pop("rounds", 3)
        task = kw.pop("task", "classification")
        t0 = time.time()
        st, rep = c.setup(s, rows, K=K, rounds=rounds, task=task, **kw)
        record(c, f"setup: {name}", st, rep, expect=expect, note=f"{time.time() - t0:.2f}s")
        c.finish(s)
    # train_ids variants (raw tensors)
    for name, tens in [("train_ids float64", lambda h: tensor_bytes("float64", [300], f64(h[rows]))),
                       ("train_ids 2-D", lambda h: tensor_bytes("int64", [150, 2], h[rows].astype("<i8").tobytes())),
                       ("train_ids empty", lambda h: tensor_bytes("int64", [0], b"")),
                       ("train_ids shape (0, 2^62)", lambda h: tensor_bytes("int64", [0, 2 ** 62], b"")),
                       ("train_ids shape [300] but 299 values", lambda h: tensor_bytes("int64", [300], h[:299].astype("<i8").tobytes())),
                       ("train_ids dtype 'int32'", lambda h: tensor_bytes("int32", [300], h[rows].astype("<i4").tobytes())),
                       ("train_ids dtype '<i8'", lambda h: tensor_bytes("<i8", [300], h[rows].astype("<i8").tobytes())),
                       ("train_ids shape negative", lambda h: tensor_bytes("int64", [-300], h[rows].astype("<i8").tobytes())),
                       ("train_ids shape unpacked repeated", lambda h: tensor_bytes("int64", [300], h[rows].astype("<i8").tobytes(), shape_packed=False)),
                       ("train_ids 1 row", lambda h: tensor_bytes("int64", [1], h[:1].astype("<i8").tobytes())),
                       ("train_ids duplicate row", lambda h: tensor_bytes("int64", [300], np.r_[h[:299], h[:1]].astype("<i8").tobytes())),
                       ("train_ids not selected (raw row numbers)", lambda h: tensor_bytes("int64", [300], np.arange(300, dtype="<i8").tobytes())),
                       ("train_ids 19 rows (< min_rows)", lambda h: tensor_bytes("int64", [19], h[:19].astype("<i8").tobytes()))]:
        k += 1
        s = f"setup-{k}"
        h = c.open(s)
        body = ld(1, tens(h)) + tag(2, 0) + varint(2) + tag(3, 0) + varint(3) + ld(4, b"classification") + ld(5, b"plain")
        if c.party.kind == "ckks":
            body = body[:-len(ld(5, b"plain"))] + ld(5, b"ckks") + ld(6, c.ckks.setup_fields("party1")["he_context"])
        st, rep = c.send_bytes(envelope_bytes(s, 10, body, c.next_seq()))
        if st == "OK":
            rep = decode(rep, GEN).body
        record(c, f"setup: {name}", st, rep, expect="accept" if "unpacked" in name else "refuse")
        c.finish(s)
    # ordering
    s = "setup-twice"
    c.open(s)
    c.setup(s, rows)
    st, rep = c.setup(s, rows)
    record(c, "setup twice in one session", st, rep)
    c.finish(s)
    st, rep = c.send(s, m.FitRequest(c.residuals(np.zeros((300, 2)), 1)), round=1)
    record(c, "fit after finish", st, rep)
    st, rep = c.finish(s)
    record(c, "finish twice", st, rep)


def open_session(c: Client, s: str, n=300, K=2, rounds=3):
    c.open(s)
    st, ack = c.setup(s, np.arange(n), K=K, rounds=rounds)
    if not isinstance(ack, m.SetupAck):
        raise RuntimeError(f"setup refused: {st} {ack}")


def fit_cases(c: Client) -> None:
    n, K = 300, 2
    s = "fit-main"
    open_session(c, s, n, K, rounds=1000)
    seq_round = [0]

    def fit_raw_case(name, tensor: bytes, expect="refuse"):
        seq_round[0] += 1
        st, rep = _decoded(c.send_bytes(envelope_bytes(s, 12, fit_raw(tensor), c.next_seq(), round=seq_round[0])))
        return record(c, f"fit: {name}", st, rep, expect=expect)

    good = np.random.default_rng(2).normal(size=(n, K))
    for name, arr in [("NaN", np.where(np.arange(n * K).reshape(n, K) == 7, np.nan, good)),
                      ("+inf", np.full((n, K), np.inf)), ("-inf one cell", np.where(good > 2.5, -np.inf, good)),
                      ("signalling NaN bits", np.frombuffer(np.full(n * K, 0x7FF0000000000001, "<u8").tobytes(), "<f8").reshape(n, K))]:
        fit_raw_case(name, tensor_bytes("float64", [n, K], f64(arr)))
    fit_raw_case("float32 NaN", tensor_bytes("float32", [n, K], np.full((n, K), np.nan, "<f4").tobytes()))
    fit_raw_case("float32 residuals (valid)", tensor_bytes("float32", [n, K], good.astype("<f4").tobytes()), "any")
    fit_raw_case("int64 residuals", tensor_bytes("int64", [n, K], np.ones((n, K), "<i8").tobytes()))
    fit_raw_case("denormals 5e-324", tensor_bytes("float64", [n, K], f64(np.full((n, K), 5e-324))), "any")
    fit_raw_case("-0.0 everywhere", tensor_bytes("float64", [n, K], f64(np.full((n, K), -0.0))), "any")
    big = fit_raw_case("1e308 everywhere", tensor_bytes("float64", [n, K], f64(np.full((n, K), 1e308))), "any")
    fit_raw_case("+-1.79e308 alternating", tensor_bytes("float64", [n, K], f64(np.where(good > 0, 1.79e308, -1.79e308))), "any")
    fit_raw_case("1e200 (square overflows)", tensor_bytes("float64", [n, K], f64(np.full((n, K), 1e200))), "any")
    for name, shape, data in [("shape (300,3)", [n, 3], f64(np.zeros((n, 3)))),
                              ("shape (301,2)", [n + 1, K], f64(np.zeros((n + 1, K)))),
                              ("shape (600,)", [n * K], f64(good)),
                              ("shape (300,2,1)", [n, K, 1], f64(good)),
                              ("shape (2,300) transposed", [K, n], f64(good.T)),
                              ("shape (0,2) empty", [0, K], b""),
                              ("shape (300,0) empty", [n, 0], b""),
                              ("rank 0 scalar", [], f64(1.0)),
                              ("rank 5", [n, K, 1, 1, 1], f64(good)),
                              ("shape says (300,2) but 4799 bytes", [n, K], f64(good)[:-1]),
                              ("shape says (300,2) but 8 extra bytes", [n, K], f64(good) + b"\x00" * 8),
                              ("shape [0, 2^63-1]", [0, 2 ** 63 - 1], b""),
                              ("shape [0, 2^62, 2^62]", [0, 2 ** 62, 2 ** 62], b""),
                              ("shape [2^62, 2^62]", [2 ** 62, 2 ** 62], b""),
                              ("shape [-1, -600]", [-1, -n * K], f64(good)),
                              ("shape [2^64-1 as varint]", [2 ** 64 - 1], b"")]:
        fit_raw_case(name, tensor_bytes("float64", shape, data))
    for name, dt in [("dtype float16", "float16"), ("dtype '<f8'", "<f8"), ("dtype 'object'", "object"),
                     ("dtype empty", ""), ("dtype 'float64 '", "float64 "), ("dtype 'FLOAT64'", "FLOAT64"),
                     ("dtype 1 MiB string", "f" * (1 << 20))]:
        fit_raw_case(name, tensor_bytes(dt, [n, K], f64(good)))
    fit_raw_case("shape as 100k repeated entries", tensor_bytes("float64", [1] * 100_000, f64(good)))
    # payload-level
    seq_round[0] += 1
    for name, payload_bytes in [("empty payload (no oneof)", b""),
                                ("encrypted, no scheme", ld(2, b"")),
                                ("encrypted scheme 'rot13'", ld(2, ld(1, b"rot13") + ld(2, varint(n) + varint(K)))),
                                ("encrypted 'ckks' garbage blob", ld(2, ld(1, b"ckks") + ld(2, varint(n) + varint(K)) + ld(3, b"\x00" * 64))),
                                ("encrypted 'ckks' 65536 empty blobs", ld(2, ld(1, b"ckks") + ld(2, varint(n) + varint(K)) + ld(3, b"") * 65536)),
                                ("encrypted 'ckks' 65537 empty blobs", ld(2, ld(1, b"ckks") + ld(3, b"") * 65537)),
                                ("encrypted 200k meta entries", ld(2, ld(1, b"ckks") + ld(4, ld(1, b"k") + ld(2, b"v")) * 200_000)),
                                ("encrypted shape [-1]", ld(2, ld(1, b"ckks") + ld(2, varint(2 ** 64 - 1))))]:
        seq_round[0] += 1
        st, rep = c.send_bytes(envelope_bytes(s, 12, ld(1, payload_bytes), c.next_seq(), round=seq_round[0]))
        if st == "OK":
            rep = decode(rep, GEN).body
        record(c, f"fit: {name}", st, rep)
    # ordering and sequence
    seq_round[0] += 1
    r = seq_round[0]
    accepted_seq = c.next_seq()
    st, rep = c.send(s, m.FitRequest(c.residuals(good * 0.1, r)), round=r, seq=accepted_seq)
    record(c, f"fit: valid round {r}", st, rep, expect="accept")
    st, rep = c.send(s, m.FitRequest(c.residuals(good * 0.1, r)), round=r)
    record(c, "fit: same round again", st, rep)
    st, rep = c.send(s, m.FitRequest(c.residuals(good * 0.1, r - 1)), round=r - 1)
    record(c, "fit: earlier round", st, rep)
    st, rep = c.send(s, m.FitRequest(c.residuals(good * 0.1, r + 1)), round=r + 1, seq=accepted_seq)
    record(c, "fit: replayed seq (of the last accepted message)", st, rep)
    st, rep = c.send(s, m.FitRequest(c.residuals(good * 0.1, r + 1)), round=r + 1, seq=0)
    record(c, "fit: seq 0", st, rep)
    st, rep = c.send("fit-other", m.FitRequest(c.residuals(good * 0.1, r + 1)), round=r + 1)
    record(c, "fit: other session id", st, rep)
    st, rep = c.send(s, m.FitRequest(c.residuals(good * 0.1, r)), round=r, seq=(c.seq + 1) + (1 << 32))
    c.seq += 1 << 32
    record(c, "fit: same round from a 'resumed' epoch (by design: kept reply)", st, rep, expect="any")
    # predict
    h = c.handles[s]
    other = h[np.arange(300, 569)]
    for name, body in [("empty sample_ids", m.PredictRequest(np.zeros(0, np.int64), 1)),
                       ("training rows", m.PredictRequest(h[:5], 1)),
                       ("unknown handles", m.PredictRequest(np.arange(5), 1)),
                       ("negative handle", m.PredictRequest(np.array([-1]), 1)),
                       ("rounds 0", m.PredictRequest(other[:5], 0)),
                       ("rounds 2^32-1", m.PredictRequest(other[:5], 2 ** 32 - 1)),
                       ("rounds > fitted", m.PredictRequest(other[:5], 10 ** 6)),
                       ("1 row repeated 100k times", m.PredictRequest(np.repeat(other[:1], 100_000), 1)),
                       ("valid", m.PredictRequest(other[:5], 1))]:
        st, rep = c.send(s, body)
        record(c, f"predict: {name}", st, rep,
               expect="accept" if name == "valid" else ("any" if "repeated" in name or "empty" in name else "refuse"),
               note=(f"reply shape {np.shape(rep.predictions)}" if isinstance(rep, m.PredictReply)
                     and not isinstance(rep.predictions, m.EncryptedPayload) else ""))
    st, rep = c.send_bytes(envelope_bytes(s, 14, ld(1, tensor_bytes("int64", [0, 2 ** 62], b"")) + tag(2, 0) + varint(1),
                                          c.next_seq()))
    rep = decode(rep, GEN).body if st == "OK" else rep
    record(c, "predict: sample_ids shape (0, 2^62)", st, rep)
    st, rep = c.send_bytes(envelope_bytes(s, 14, ld(1, tensor_bytes("float64", [5], f64(other[:5]))) + tag(2, 0) + varint(1),
                                          c.next_seq()))
    rep = decode(rep, GEN).body if st == "OK" else rep
    record(c, "predict: float64 sample_ids", st, rep)
    c.finish(s)
    return big


def rounds_beyond_plan(c: Client) -> None:
    """Setup plans 2 rounds; send round 3, 4, 100."""
    s = "beyond"
    open_session(c, s, 300, 2, rounds=2)
    r = np.random.default_rng(3).normal(size=(300, 2)) * 0.1
    for t in (1, 2, 3, 4, 100, 2 ** 32 - 1):
        st, rep = c.send(s, m.FitRequest(c.residuals(r, t)), round=t)
        record(c, f"plan 2 rounds: fit round {t}", st, rep, expect="accept" if t <= 2 else "refuse")
    c.finish(s)


def memory_growth(c: Client, rounds: int = 60) -> None:
    """Plain party: n = 20 rows, K so that residuals nearly fill max_message_bytes, many rounds.
    Since 2026-12-04 the party refuses this setup (its round models would pass 4 x
    max_message_bytes): the expected outcome is that refusal."""
    n = 20
    K = (MAXMSG - 4096) // (n * 8)
    s = "memgrow"
    c.open(s)
    st, ack = c.setup(s, np.arange(n), K=K, rounds=rounds)
    if not isinstance(ack, m.SetupAck):
        record(c, "memory: setup", st, ack, expect="refuse")
        return
    r = np.random.default_rng(4).normal(size=(n, K)) * 0.1
    raw = None
    t0 = time.time()
    start = c.party.rss_over()
    last = None
    for t in range(1, rounds + 1):
        raw = c.env(s, m.FitRequest(r), round=t)
        st, rep = c.send_bytes(raw)
        if st != "OK":
            last = (st, rep)
            break
        last = ("OK", decode(rep, GEN).body)
        if not isinstance(last[1], m.FitReply):
            break
    now = rss(c.party.proc.pid)
    record(c, f"memory: {t} rounds of ({n}, {K}) residuals ({len(raw) / 2**20:.1f} MiB each)", *last, expect="any",
           note=f"RSS over start {c.party.rss_over() // 1024} MiB (was {start // 1024} before), VmRSS now "
                f"{now.get('VmRSS', 0) // 1024} MiB, {time.time() - t0:.1f}s")
    c.finish(s)


def echo_cache(c: Client, n: int = 10) -> None:
    """Requests whose session id nearly fills max_message_bytes: the refusal echoes it twice, the
    reply is over the limit (RESOURCE_EXHAUSTED) but kept in the server's reply cache first."""
    before = rss(c.party.proc.pid)
    for i in range(n):
        st, rep = c.send(("E%d" % i) * ((c.party.maxmsg - 300) // len("E%d" % i)), m.Finish())
    after = rss(c.party.proc.pid)
    record(c, f"{n} max-length session ids (echoed, cached)", st, rep, expect="any",
           note=f"VmRSS {before.get('VmRSS', 0) // 1024} -> {after.get('VmRSS', 0) // 1024} MiB, "
                f"VmHWM {after.get('VmHWM', 0) // 1024} MiB")


def hypothesis_fuzz(c: Client, examples: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st_

    s = "hyp"
    open_session(c, s, 300, 2, rounds=20_000)  # a fresh round per example; within the round-model bound
    base = c.env(s, m.FitRequest(np.zeros((300, 2))), round=1)
    counts = {"n": 0}
    stats: dict[str, int] = {}

    def check(st, rep, name):
        counts["n"] += 1
        outcome, msg = summarize(st, rep)
        stats[outcome] = stats.get(outcome, 0) + 1
        bad = outcome in ("error:internal", "grpc:UNKNOWN", "grpc:DEADLINE_EXCEEDED", "grpc:UNAVAILABLE") \
            or TRACE_RE.search(msg) or PATH_RE.search(msg) or not c.party.alive()
        if bad:
            record(c, f"hypothesis: {name}", st, rep, expect="any")

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st_.lists(st_.tuples(st_.integers(0, len(base) - 1), st_.integers(0, 255)), min_size=1, max_size=8),
           st_.integers(0, 40), st_.booleans())
    def mutate(edits, cut, insert):
        data = bytearray(base)
        for pos, val in edits:
            if insert:
                data.insert(pos, val)
            else:
                data[pos] = val
        data = bytes(data[:len(data) - cut]) if cut else bytes(data)
        st, rep = _decoded(c.send_bytes(data, 30))
        check(st, rep, f"mutated FitRequest {edits[:3]} cut={cut}")

    dtypes = st_.sampled_from(["float64", "float32", "int64", "float16", "", "<f8", "uint8"])
    dims = st_.lists(st_.one_of(st_.integers(-3, 700), st_.sampled_from([0, 2 ** 31, 2 ** 62, 2 ** 63 - 1])), max_size=5)

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(dtypes, dims, st_.integers(0, 6000), st_.sampled_from(["zeros", "nan", "big", "random"]),
           st_.sampled_from([12, 14, 10]))
    def tensors(dtype, shape, nbytes, fill, body):
        nbytes -= nbytes % 8
        if fill == "zeros":
            data = b"\x00" * nbytes
        elif fill == "nan":
            data = np.full(nbytes // 8, np.nan).tobytes()
        elif fill == "big":
            data = np.full(nbytes // 8, 1.7e308).tobytes()
        else:
            data = np.random.default_rng(nbytes).bytes(nbytes)
        t = tensor_bytes(dtype, shape, data)
        if body == 12:
            b = fit_raw(t)
            rnd = c.next_seq()
        elif body == 14:
            b = ld(1, t) + tag(2, 0) + varint(1)
            rnd = 0
        else:
            b = ld(1, t) + tag(2, 0) + varint(2) + tag(3, 0) + varint(3) + ld(4, b"regression") + ld(5, b"plain")
            rnd = 0
        st, rep = _decoded(c.send_bytes(envelope_bytes(s, body, b, c.next_seq(), round=rnd), 30))
        check(st, rep, f"tensor body={body} dtype={dtype!r} shape={shape} bytes={nbytes} {fill}")

    mutate()
    tensors()
    c.seq = max(c.seq, 1 << 60)  # a mutated seq the party accepted may lie above ours
    c.finish(s)
    RESULTS.append({"party": c.party.kind, "case": "hypothesis summary", "outcome": json.dumps(stats),
                    "message": "", "flags": [], "note": f"{counts['n']} examples", "rss_over_kib": c.party.rss_over()})
    print(f"[{c.party.kind}] hypothesis: {counts['n']} examples, outcomes {stats}", flush=True)


def ckks_client(c: Client) -> None:
    """The label owner's residual channel of the registered ``ckks`` layer (the party runs plain CKKS)."""
    from securegal.privacy.registry import layer

    c.ckks = layer("ckks").plan().channel()


def ckks_cases(c: Client) -> None:
    """Hostile HE contexts and ciphertexts to the CKKS party."""
    from securegal.privacy.he.keys import SecretContext, CkksParams

    rows = np.arange(300)
    good_ctx = c.ckks.setup_fields("party1")["he_context"]
    variants = [("he_context empty", b""), ("he_context garbage 1 KiB", os.urandom(1024)),
                ("he_context truncated by half", good_ctx[:len(good_ctx) // 2]),
                ("he_context last byte flipped", good_ctx[:-1] + bytes([good_ctx[-1] ^ 0xFF])),
                ("he_context byte 40 flipped", good_ctx[:40] + bytes([good_ctx[40] ^ 0xFF]) + good_ctx[41:]),
                ("he_context of default CkksParams (other chain)", SecretContext(CkksParams()).public_bytes())]
    for i, (name, ctx) in enumerate(variants):
        s = f"ckks-ctx-{i}"
        c.open(s)
        st, rep = c.setup(s, rows, he_context=ctx)
        record(c, f"ckks setup: {name}", st, rep, expect="any" if "default" in name else "refuse")
        c.finish(s)
    for name, K in [("n_outputs 1000", 1000), ("n_outputs 2^32-1", 2 ** 32 - 1)]:
        s = f"ckks-K-{K}"
        c.open(s)
        t0 = time.time()
        st, rep = c.setup(s, rows, K=K)
        record(c, f"ckks setup: {name}", st, rep, expect="any", note=f"{time.time() - t0:.1f}s")
        c.finish(s)
    s = "ckks-fit"
    open_session(c, s, 300, 2, rounds=100)
    r = np.random.default_rng(5).normal(size=(300, 2)) * 0.1
    payload = c.ckks.seal(r, 1, "party1")
    blobs = list(payload.blobs)
    cases = [("blob garbage", m.EncryptedPayload(payload.scheme, payload.shape, tuple(os.urandom(len(b)) for b in blobs), payload.meta)),
             ("blob truncated", m.EncryptedPayload(payload.scheme, payload.shape, tuple(b[:len(b) // 2] for b in blobs), payload.meta)),
             ("one blob missing", m.EncryptedPayload(payload.scheme, payload.shape, tuple(blobs[:-1]), payload.meta)),
             ("one blob extra", m.EncryptedPayload(payload.scheme, payload.shape, tuple(blobs + blobs[:1]), payload.meta)),
             ("shape (301, 2)", m.EncryptedPayload(payload.scheme, (301, 2), payload.blobs, payload.meta)),
             ("shape ()", m.EncryptedPayload(payload.scheme, (), payload.blobs, payload.meta)),
             ("meta empty", m.EncryptedPayload(payload.scheme, payload.shape, payload.blobs, {})),
             ("meta values garbage", m.EncryptedPayload(payload.scheme, payload.shape, payload.blobs,
                                                        {k: "x" * 1000 for k in payload.meta})),
             ("plain residuals to ckks party", np.zeros((300, 2)))]
    t = 0
    for name, p in cases:
        t += 1
        st, rep = c.send(s, m.FitRequest(p), round=t)
        record(c, f"ckks fit: {name}", st, rep, note=f"meta keys {sorted(payload.meta)}")
    t += 1
    # a ciphertext of the right round replayed under another round's number (bound digest?)
    st, rep = c.send(s, m.FitRequest(payload), round=t)
    record(c, f"ckks fit: round-1 ciphertexts sent as round {t}", st, rep)
    t += 1
    st, rep = c.send(s, m.FitRequest(c.ckks.seal(r, t, "party1")), round=t)
    record(c, f"ckks fit: valid round {t}", st, rep, expect="accept")
    c.finish(s)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-ckks", action="store_true")
    ap.add_argument("--examples", type=int, default=250, help="hypothesis examples per strategy and party")
    ap.add_argument("--parties", default="plain,dp,ckks")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    table_values()
    kinds = [k for k in args.parties.split(",") if not (k == "ckks" and args.no_ckks)]
    started = time.time()
    summary = {}
    for kind in kinds:
        party = Party(kind)
        c = Client(party)
        print(f"== {kind} party pid {party.proc.pid} port {party.port}, start RSS {party.start}, "
              f"bound +{party.bound_kib // 1024} MiB", flush=True)
        try:
            if kind == "ckks":
                ckks_client(c)
            if kind != "ckks":
                before_setup(c)  # a fresh party: no session yet
            health(c, "start")
            if kind != "ckks":
                byte_level(c)
                frame_level(c)
                health(c, "after-bytes")
                psi_cases(c)
                health(c, "after-psi")
            setup_cases(c)
            health(c, "after-setup")
            if kind == "ckks":
                ckks_cases(c)
            else:
                fit_cases(c)
                rounds_beyond_plan(c)
                health(c, "after-fit")
                hypothesis_fuzz(c, args.examples)
                stalled(c, 3)
                stalled(c, 4)
                if kind == "plain":
                    echo_cache(c)
                    memory_growth(c)
            health(c, "end")
        except Exception as exc:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            RESULTS.append({"party": kind, "case": "driver aborted", "outcome": "exception", "message": repr(exc)[:400],
                            "flags": ["DRIVER_ABORT"], "note": "", "rss_over_kib": 0})
        finally:
            final = rss(party.proc.pid)
            alive = party.alive()
            party.stop()
            err = party.err_text()
            summary[kind] = {"alive_at_end": alive, "start": party.start, "final": final,
                             "peak_over_start_MiB": (final.get("VmHWM", 0) - party.start.get("VmRSS", 0)) / 1024,
                             "bound_MiB": party.bound_kib / 1024,
                             "tracebacks_in_log": err.count("Traceback"),
                             "exception_lines": sorted({l.strip()[:160] for l in err.splitlines()
                                                        if re.match(r"^\w+(\.\w+)*(Error|Exception):", l.strip())})[:20]}
            print(f"== {kind}: {json.dumps(summary[kind])}", flush=True)
    flagged = [r for r in RESULTS if r["flags"]]
    (WORK / "results.json").write_text(json.dumps({"summary": summary, "results": RESULTS}, indent=1))
    print(f"\n{len(RESULTS)} cases recorded in {time.time() - started:.0f}s; {len(flagged)} flagged:")
    for r in flagged:
        print(f"  [{r['party']}] {r['case']}: {r['outcome']} {r['flags']} {r['message'][:150]!r} {r['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
