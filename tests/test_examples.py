"""The shipped examples load with the config schema and run as a federation on loopback."""
import queue
import re
import shutil
import threading
from pathlib import Path

from securegal.deploy import config as schema
from securegal.deploy.networked import FederationConfig, train_federation
from securegal.deploy.party_process import PartyConfig, serve_party
from securegal.transport.certs import init_federation

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "federation"
PARTIES = ("clinic", "insurer")


def test_the_config_reference_is_generated_from_the_schema():
    docs = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert docs.read_text(encoding="utf-8") == schema.reference() + "\n", \
        "docs/config.md drifted: python -m securegal.deploy.config > docs/config.md"


def test_three_organization_example_runs(tmp_path):
    work = tmp_path / "example"
    shutil.copytree(EXAMPLE, work)
    init_federation(work / "certs", ["hospital", *PARTIES])
    threads, stops, addresses = [], [], {}
    try:
        for name in PARTIES:
            path = work / f"{name}.toml"
            path.write_text(re.sub(r'listen = "127.0.0.1:\d+"', 'listen = "127.0.0.1:0"', path.read_text()))
            ready, stop = queue.Queue(), threading.Event()
            thread = threading.Thread(target=serve_party, args=(PartyConfig.load(path),),
                                      kwargs={"stop": stop, "on_ready": ready.put}, daemon=True)
            thread.start()
            threads.append(thread), stops.append(stop)
            addresses[name] = f"127.0.0.1:{ready.get(timeout=60)}"
        fed = work / "federation.toml"
        text = fed.read_text().replace("127.0.0.1:50061", addresses["clinic"]).replace("127.0.0.1:50062",
                                                                                         addresses["insurer"])
        fed.write_text(text.replace("rounds = 10 ", "rounds = 3 "))
        metrics = train_federation(FederationConfig.load(fed))
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(30)
    assert metrics["party_names"] == ["hospital", *PARTIES] and metrics["rounds"] == 3
    assert metrics["gal"]["test"] > 90 and (work / "runs" / "example" / "metrics.json").is_file()
    assert (work / "transcripts" / "clinic").is_dir()
