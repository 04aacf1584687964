"""``securegal`` command line: train | reproduce | bench | audit | party | certs.

Each subcommand lives in ``securegal/commands/<name>.py``; only the invoked one is imported, and
it imports torch, TenSEAL, Opacus, scikit-learn or gRPC only when it runs, so ``--help`` is fast.
``-v/--verbose`` works before or after the subcommand. Every process logs to stderr in one format
(:func:`securegal.logs.configure_logging`).

Exit codes:

- 0: success.
- 1: internal error (a bug, e.g. an unexpected TypeError): one line on stderr naming the exception;
  the traceback goes to the log on stderr with ``-v``, otherwise to a file
  ``securegal-error-*.log`` in the temporary directory, whose path the line gives. A party that
  answers ``internal`` (:class:`~securegal.errors.InternalError`) is one too; its own log has
  the traceback.
- 2: invalid input or settings: one line ``securegal: error: ...``, no traceback. This covers
  securegal's own errors (:class:`~securegal.errors.SecuregalError`: bad settings, a refused
  protocol message, a party that refused or did not answer) and operating-system errors on a
  named file (missing, unreadable, a directory), which the user can fix; argparse's usage errors
  also exit 2.
- 3: the run stopped early (e.g. the privacy budget refused a release); what was learned so far
  is saved.
- 130: interrupted (Ctrl-C); 143: terminated (SIGTERM). Both unwind: what the run set aside is
  put back, what it staged is removed.
- 141: stdout was closed early (e.g. piped into ``head``): quietly, no log, as a Unix tool that
  SIGPIPE ends (128 + 13).
"""
from __future__ import annotations

import argparse
import errno
import importlib
import itertools
import logging
import os
import select
import signal
import sys
import tempfile
import threading
import traceback
from typing import Iterable, Sequence

from . import __version__
from .errors import InternalError, SecuregalError, printable
from .logs import configure_logging

# Subcommand -> one-line summary. Each module defines ``add_parser(subparsers)``, which sets
# ``func`` on its parser.
COMMANDS = {
    "train": "train GAL on a dataset or CSV and write a run directory",
    "reproduce": "reproduce the GAL paper's tables (Joint, Alone, GAL-uniform, GAL)",
    "bench": "benchmarks (crypto, psi)",
    "audit": "run the attack suite on run directories and report leakage",
    "party": "run a feature party (one organization) behind gRPC with mutual TLS",
    "certs": "development certificates for a federation",
    "ledger": "show what a party's privacy ledger spent, per session, and what is left",
}

EXIT_OK, EXIT_INTERNAL, EXIT_INVALID, EXIT_STOPPED, EXIT_PIPE = 0, 1, 2, 3, 141

log = logging.getLogger(__name__)


class HelpFormatter(argparse.HelpFormatter):
    """Help for users: a default is shown only when it says something (not None, False or empty)
    and the help text does not already describe it; list defaults are shown as they are typed.
    In descriptions and epilogs, text is wrapped but indented lines are kept as they are, so
    lists (e.g. :func:`securegal.learners.registry.describe`) stay lists."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        for verbatim, lines in itertools.groupby(text.strip("\n").splitlines(), key=lambda s: s.startswith(" ")):
            if verbatim:
                out += [indent + line for line in lines]
            else:
                for blank, para in itertools.groupby(lines, key=lambda s: not s.strip()):
                    out.append("" if blank else super()._fill_text(" ".join(para), width, indent))
        return "\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS or default == [] or "default" in text
                or isinstance(action, argparse._StoreFalseAction)  # "--no-x (default: True)" reads as "off"
                or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))):
            return text
        return f"{text} (default: {_as_typed(default, action.nargs).replace('%', '%%')})"


def _as_typed(value, nargs) -> str:
    """``value`` written the way a user types it: list items space-separated for nargs='+'/'*',
    comma-separated for one comma-list argument; numbers without trailing zeros."""
    if isinstance(value, (list, tuple)):
        sep = " " if nargs in (argparse.ONE_OR_MORE, argparse.ZERO_OR_MORE) else ","
        return sep.join(_as_typed(v, None) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2), like every other invalid input."""

    def error(self, message: str):
        self.exit(EXIT_INVALID, f"securegal: error: {self.prog}: {message} (see {self.prog} --help)\n")


def _package_doc() -> str:
    import securegal

    return securegal.__doc__.splitlines()[0]


def requested_commands(argv: Sequence[str]) -> tuple[str, ...]:
    """The subcommand ``argv`` invokes, as a 0- or 1-tuple (none for top-level help or --version).

    Top-level options take no values, so the first token that is not an option names it.
    """
    for token in argv:
        if token in ("-h", "--help", "--version", "--"):
            return ()
        if not token.startswith("-"):
            return (token,) if token in COMMANDS else ()
    return ()


def build_parser(commands: Iterable[str] = tuple(COMMANDS)) -> argparse.ArgumentParser:
    """The full parser of ``commands`` (default: all); the others are listed but not imported."""
    parser = Parser(prog="securegal", description=_package_doc(),
                                     formatter_class=HelpFormatter,
                                     epilog="Run `securegal COMMAND --help` for a command's options.")
    parser.add_argument("--version", action="version", version=f"securegal {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details (INFO) to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = set(commands)
    for name, summary in COMMANDS.items():
        if name in wanted:
            importlib.import_module(f"securegal.commands.{name}").add_parser(sub)
        else:
            sub.add_parser(name, help=summary)
    _finish(sub)
    return parser


def _finish(sub: argparse._SubParsersAction) -> None:
    """Give every (nested) subcommand the users' formatter and ``-v/--verbose``.

    The subcommands' ``-v`` default is SUPPRESS, so it never resets a ``-v`` given before them.
    """
    for parser in sub.choices.values():
        parser.formatter_class = HelpFormatter
        if "--verbose" not in parser._option_string_actions:
            parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                help="log progress details (INFO) to stderr")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _finish(action)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a timeout, a CI runner): unwinds like Ctrl-C, so that what a run set
    aside or staged is put back or removed (it printed nothing and left them)."""


# The signal that stopped this run, if one did: an exception raised in a signal handler can
# surface as another (a lock's RuntimeError when it lands inside threading.Condition.wait), and
# the run still stopped because it was asked to.
_stopped_by: list[int] = []


def _terminate(signum, frame):
    _stopped_by.append(signum)
    raise Terminated()


def _interrupt(signum, frame):
    _stopped_by.append(signum)
    raise KeyboardInterrupt()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(requested_commands(argv)).parse_args(argv)
    args.argv = argv
    configure_logging(args.verbose)
    in_main_thread = threading.current_thread() is threading.main_thread()
    before = {}
    if in_main_thread:
        _stopped_by.clear()
        before = {signal.SIGTERM: signal.signal(signal.SIGTERM, _terminate)}
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where the caller chose another
            before[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
    try:
        return _run(args)
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _run(args: argparse.Namespace) -> int:
    try:
        code = int(_call(args) or EXIT_OK)
        sys.stdout.flush()  # a reader that left shows here, not as an error at interpreter exit
        return code
    except BrokenPipeError as exc:
        if not _stdout_closed():  # another pipe (a worker's, a socket): a bug
            return _internal(exc, args.verbose)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush goes nowhere
        return EXIT_PIPE
    except InternalError as exc:  # a party's bug, which it reported; the traceback is in its log
        return _fail(f"securegal: internal error: {exc}", EXIT_INTERNAL)
    except SecuregalError as exc:
        return _fail(f"securegal: error: {exc}")
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):  # the machine's state, not a bug
            return _fail(f"securegal: error: {exc.strerror}: stopped cleanly; fix it and run again "
                         "(--resume for a networked run)")
        if exc.filename is None:  # not about a file the user named: a socket, a pipe, the OS
            return _internal(exc, args.verbose)
        return _fail(f"securegal: error: {exc.strerror or type(exc).__name__}: {exc.filename}")
    except Terminated:
        print("securegal: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("securegal: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return _internal(exc, args.verbose)


def _call(args: argparse.Namespace):
    try:
        return args.func(args)
    except Exception as exc:
        if _stopped_by:  # the signal's exception surfaced as another while the run unwound
            raise (Terminated() if _stopped_by[0] == signal.SIGTERM else KeyboardInterrupt()) from exc
        raise


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
    except (OSError, ValueError):  # stdout is not a file descriptor (captured)
        return False
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _fail(message: str, code: int = EXIT_INVALID) -> int:
    print(printable(" ".join(message.split("\n"))), file=sys.stderr)
    return code


def _internal(exc: Exception, verbose: bool) -> int:
    """A bug, not bad input: the traceback goes to the log (-v) or to a private file."""
    if verbose:
        log.error("internal error", exc_info=exc)
        where = "traceback above"
    else:
        try:
            with tempfile.NamedTemporaryFile("w", prefix="securegal-error-", suffix=".log", delete=False) as fh:
                fh.write("".join(traceback.format_exception(exc)))
            where = f"traceback in {fh.name}"
        except OSError:
            where = "rerun with -v for the traceback"
    return _fail(f"securegal: internal error ({type(exc).__name__}): {exc}; {where}", EXIT_INTERNAL)


if __name__ == "__main__":
    sys.exit(main())
