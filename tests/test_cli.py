"""The command line: lazy start, help written for users, --version, -v anywhere, exit codes 1 vs 2."""
import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile

import pytest

from securegal import __version__
from securegal.cli import COMMANDS, EXIT_PIPE, build_parser, main, requested_commands
from securegal.errors import BudgetExceeded, ConfigError, PartyRefused

HEAVY = ("torch", "tenseal", "opacus", "sklearn", "grpc", "matplotlib", "scipy", "pandas")

# Builds the command's parser in a fresh interpreter, prints the help of the command and of each
# of its nested actions, then reports which heavy modules got imported.
HELP_SCRIPT = """
import argparse, contextlib, io, json, sys
from securegal.cli import build_parser, main

def paths(parser, path):
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from paths(sub, path + [name])

top = build_parser([sys.argv[1]])
texts = {}
for path in list(paths(top, []))[1:]:
    if path[0] != sys.argv[1]:
        continue
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(path + ["--help"])
        except SystemExit as exc:
            assert exc.code == 0, (path, exc.code)
    texts[" ".join(path)] = out.getvalue()
print(json.dumps({"heavy": sorted(m for m in HEAVY if m in sys.modules), "help": texts}))
"""


def _help_in_fresh_process(command: str) -> dict:
    script = f"HEAVY = {HEAVY!r}\n" + HELP_SCRIPT
    done = subprocess.run([sys.executable, "-c", script, command], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_help_imports_no_heavy_module(command):
    result = _help_in_fresh_process(command)
    assert result["heavy"] == []
    assert all(text.startswith("usage: securegal " + path) for path, text in result["help"].items())


def test_top_level_help_and_version_import_no_heavy_module():
    script = ("import contextlib, io, sys\nfrom securegal.cli import main\n"
              "for argv in (['--help'], ['--version']):\n"
              "    with contextlib.redirect_stdout(io.StringIO()):\n"
              "        try:\n            main(argv)\n        except SystemExit:\n            pass\n"
              f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_import_securegal_is_light_but_train_is_still_there():
    script = (f"import sys, securegal\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
              "print(securegal.train.__module__)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.stdout.split("\n")[:2] == ["[]", "securegal.run"], done.stderr


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"securegal {__version__}"


def test_top_level_help_lists_every_command_with_its_summary(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name, summary in COMMANDS.items():
        assert re.search(rf"^\s+{name}\s+{re.escape(summary.split()[0])}", out, re.M), name


@pytest.mark.parametrize("argv,verbose", [
    (["certs", "init", "d", "--parties", "a"], False),
    (["-v", "certs", "init", "d", "--parties", "a"], True),
    (["certs", "init", "d", "--parties", "a", "-v"], True),
    (["certs", "init", "-v", "d", "--parties", "a"], True),
    (["bench", "crypto", "--verbose"], True),
    (["party", "serve", "--config", "p.toml", "-v"], True),
    (["audit", "run", "-v"], True),
    (["reproduce", "--verbose"], True),
])
def test_verbose_is_accepted_before_and_after_the_subcommand(argv, verbose):
    args = build_parser(requested_commands(argv)).parse_args(argv)
    assert args.verbose is verbose


def test_requested_commands_reads_only_the_command_token():
    assert requested_commands(["-v", "audit", "--help"]) == ("audit",)
    assert requested_commands(["--help", "audit"]) == ()
    assert requested_commands(["--version"]) == ()
    assert requested_commands(["nope"]) == ()


def _all_actions(parser: argparse.ArgumentParser, path=("securegal",)):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_actions(sub, path + (name,))
        else:
            yield path, parser, action


def test_help_shows_each_default_at_most_once_and_never_none():
    parser = build_parser()  # every command, train included
    seen = 0
    for path, sub, action in _all_actions(parser):
        formatter = sub._get_formatter()
        text = formatter._expand_help(action) if action.help else ""
        where = f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
        assert "(default: None)" not in text and "(default: False)" not in text, where
        assert text.count("default") <= 1, (where, text)
        seen += 1
    assert seen > 60


def test_help_prints_list_defaults_as_they_are_typed(capsys):
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.5,1,3,8)" in out and "[0.5" not in out
    with pytest.raises(SystemExit):
        main(["bench", "crypto", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 4096x8 4096x32 16384x32 65536x16)" in out


def test_description_wraps_text_but_keeps_indented_lists():
    from securegal.cli import HelpFormatter
    from securegal.learners.registry import describe

    p = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter,
                                description="word " * 40 + "\n\nlearners:\n" + describe())
    text = p.format_help()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert describe() in text


def test_learner_and_dataset_registries_explain_each_name_in_one_line():
    from securegal.data import datasets
    from securegal.learners import registry

    for module, names in ((registry, registry.LEARNERS), (datasets, datasets.DATASETS)):
        lines = module.describe().splitlines()
        assert [line.split()[0] for line in lines] == list(names)
        assert all(len(line.split(None, 1)[1]) > 20 and len(line) <= 80 for line in lines)
    for name in registry.LEARNERS:
        assert registry.learner_class(name).name == name


# --- exit codes -------------------------------------------------------------------------------

def _patch_run(monkeypatch, exc: BaseException):
    import securegal.commands.certs as certs

    def run(args):
        raise exc

    monkeypatch.setattr(certs, "run", run)
    return ["certs", "init", "unused", "--parties", "a"]


@pytest.mark.parametrize("exc", [ConfigError("bad value 7"), BudgetExceeded("over budget"),
                                 PartyRefused("party1", "invalid", "no such option")])
def test_securegal_errors_exit_2_with_one_line(exc, monkeypatch, capsys):
    assert main(_patch_run(monkeypatch, exc)) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"securegal: error: {exc}"]


@pytest.mark.parametrize("exc", [TypeError("unsupported operand"), ValueError("could not broadcast"),
                                 KeyError("missing"), ZeroDivisionError("float division by zero")])
def test_unexpected_errors_are_internal_exit_1_with_the_traceback_in_a_file(exc, monkeypatch, capsys):
    assert main(_patch_run(monkeypatch, exc)) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "invalid" not in err
    assert err.startswith(f"securegal: internal error ({type(exc).__name__}): ")
    path = re.search(r"traceback in (\S+\.log)$", err.strip()).group(1)
    with open(path) as fh:
        log = fh.read()
    assert log.startswith("Traceback") and type(exc).__name__ in log


def test_a_partys_internal_error_is_internal_too(monkeypatch, capsys):
    from securegal.errors import error_from_reply

    exc = error_from_reply("party1", "internal", "internal error (TypeError); see the party's log")
    assert main(_patch_run(monkeypatch, exc)) == 1
    assert capsys.readouterr().err.splitlines() == [f"securegal: internal error: {exc}"]


def test_internal_error_with_verbose_logs_the_traceback(monkeypatch, capsys, caplog):
    with caplog.at_level(logging.ERROR, logger="securegal.cli"):
        assert main(_patch_run(monkeypatch, TypeError("boom")) + ["-v"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "securegal: internal error (TypeError): boom; traceback above"
    record = next(r for r in caplog.records if r.name == "securegal.cli")
    assert record.exc_info[0] is TypeError


def test_os_errors_on_a_named_file_exit_2_others_are_internal(monkeypatch, capsys, tmp_path):
    missing = FileNotFoundError(2, "No such file or directory", str(tmp_path / "x.csv"))
    assert main(_patch_run(monkeypatch, missing)) == 2
    assert capsys.readouterr().err.strip() == f"securegal: error: No such file or directory: {tmp_path / 'x.csv'}"
    assert main(_patch_run(monkeypatch, ConnectionResetError(104, "Connection reset by peer"))) == 1
    assert "internal error (ConnectionResetError)" in capsys.readouterr().err


def test_closed_stdout_exits_quietly_without_a_log(tmp_path):
    from securegal.privacy.dp.accountant import Budget, Release
    from securegal.privacy.dp.ledger import open_ledger

    ledger = tmp_path / "t.ledger"  # 500 releases: over 100 kB of JSON, more than a pipe holds
    with open_ledger(ledger, "id:cli/pipe", Budget(1.0, 1e-5), "rdp") as led:
        led.record([Release(r, "stat", 2000.0, 1.0, 1, 1.0) for r in range(1, 501)], "s1")
    logs = tmp_path / "tmp"  # where an error log would go
    logs.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "securegal.cli", "ledger", "show", "--json", "--releases",
                             str(ledger)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "TMPDIR": str(logs)})
    assert proc.stdout.readline() == b"{\n"  # like `| head -1`: one line, then the reader leaves
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == EXIT_PIPE and err == ""
    assert not list(logs.iterdir())


def test_broken_pipe_not_on_stdout_is_internal(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(_patch_run(monkeypatch, BrokenPipeError(32, "Broken pipe"))) == 1
    assert "internal error (BrokenPipeError)" in capsys.readouterr().err


def test_real_bad_input_exits_2(capsys):
    assert main(["reproduce", "--seeds", "0"]) == 2
    assert capsys.readouterr().err.strip() == "securegal: error: --seeds must be >= 1, got 0"
    with pytest.raises(SystemExit) as exc:
        main(["nope"])
    assert exc.value.code == 2


def test_one_log_format_for_every_process():
    script = ("import logging\nfrom securegal.logs import configure_logging\nconfigure_logging(False)\n"
              "logging.getLogger('securegal.party').info('hidden')\n"
              "logging.getLogger('securegal.party').warning('party %s left', 'p3')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ WARNING securegal\.party: party p3 left\n", done.stderr)
    verbose = subprocess.run([sys.executable, "-c", script.replace("(False)", "(True)")], capture_output=True,
                             text=True, timeout=120)
    assert [line.split(" ", 1)[1] for line in verbose.stderr.splitlines()] == [
        "INFO securegal.party: hidden", "WARNING securegal.party: party p3 left"]
