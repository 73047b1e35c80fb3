"""The `weft` command line: argument parsing and dispatch.

Every sub-command's implementation is imported only when that command runs,
so `weft check` does not pay for LMDB or Graphviz.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from weft.errors import WeftError


def _store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="DIR", help="store folder (default: $WEFT_STORE, else ./.weft)")


def _broker(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--broker", metavar="URL", help="run actions on `weft agent`s through this Redis (default: $WEFT_BROKER)"
    )


def _driving(p: argparse.ArgumentParser) -> None:
    """The options of a command that drives a run in this process: its bounds, the broker, the store."""
    p.add_argument("--workers", type=int, metavar="N", help="threads for plain actions' calls (default 64)")
    p.add_argument("--concurrency", type=int, metavar="N", help="async actions' calls in flight at once (default 1000)")
    _broker(p)
    _store(p)


class _Version(argparse.Action):
    """`weft --version`: the installed distribution's version, looked up only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print weft's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from importlib import metadata  # 30 ms at start-up that no other command needs

        try:
            version = metadata.version("weft")
        except metadata.PackageNotFoundError:
            version = "(not installed)"
        print(f"weft {version}")
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with `only`, of that command alone (the others are listed, with no options:
    what parsing a command line needs, at a fraction of the start-up time)."""
    parser = argparse.ArgumentParser(prog="weft", description="Weft: workflows with a compiler and a durable runtime.")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, target: str, help: str) -> argparse.ArgumentParser | None:
        """The parser of command `name`, to be given its options; None if they are not needed."""
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=target)
        return p if only is None or only == name else None

    p = command("check", "weft.cli.compile:check", "check .flow files and report every diagnostic")
    if p:
        p.add_argument("paths", nargs="+", metavar="PATH", help=".flow files or folders")
        p.add_argument("--format", choices=("text", "json", "sarif"), default="text")
        p.add_argument("--strict", action="store_true", help="warnings fail the check too")
        p.add_argument(
            "--extensions", metavar="DIR", action="append", default=[], help="folder of extension .flow files"
        )

    p = command("plan", "weft.cli.compile:plan", "show a flow's steps in execution order")
    if p:
        p.add_argument("file", metavar="FILE")
        p.add_argument("--flow", metavar="NAME")
        p.add_argument("--json", action="store_true", help="print the compiled Plan as JSON")
        p.add_argument("--extensions", metavar="DIR", action="append", default=[])

    p = command("graph", "weft.cli.compile:graph", "draw a flow (or a run, coloured by state)")
    if p:
        p.add_argument("target", metavar="FILE|RUN")
        p.add_argument("--flow", metavar="NAME")
        p.add_argument("-o", "--output", metavar="OUT", help="OUT.svg, .png, .pdf or .dot (default: DOT on stdout)")
        p.add_argument("--expand", action="store_true", help="draw every step of each bodies and sub-flows")
        p.add_argument("--extensions", metavar="DIR", action="append", default=[])
        _store(p)

    p = command("run", "weft.cli.runs:run", "compile and run a flow durably")
    if p:
        p.add_argument("file", metavar="FILE")
        p.add_argument("--flow", metavar="NAME")
        p.add_argument("-i", "--input", metavar="KEY=VALUE", action="append", default=[], dest="inputs")
        p.add_argument("--inputs", metavar="FILE.json", dest="inputs_file")
        p.add_argument("--user", help="who starts the run (default: login name)")
        p.add_argument("--detach", action="store_true", help="queue the run for `weft worker`, print its id and return")
        p.add_argument(
            "--at", metavar="WHEN", help="start at this time (ISO: 2026-12-24T03:00[+01:00]); scheduled till then"
        )
        p.add_argument("--in", metavar="DURATION", dest="within", help="start this long from now (2h, 30m)")
        p.add_argument(
            "--start-before", metavar="DURATION", help="fail the run if it cannot start within this long of its time"
        )
        p.add_argument("--extensions", metavar="DIR", action="append", default=[])
        _driving(p)

    p = command("list", "weft.cli.listing:list_runs", "list runs: filter, sort and page through the indexes")
    if p:
        for name, what, text in (
            ("state", "S", "scheduled, pending, running, paused, succeeded, failed or cancelled"),
            ("result", "R", "succeeded, failed, cancelled or rolled-back"),
            ("flow", "F", "runs of flow F"),
            ("tag", "T", "runs tagged T"),
            ("user", "U", "runs started by U"),
            ("schedule", "NAME", "runs schedule NAME started"),
            ("label", "TEXT", "label contains TEXT (any case)"),
            ("parent", "RUN", "sub-runs of RUN"),
            ("lock", "NAME", "the run holding lock NAME"),
        ):
            p.add_argument(f"--{name}", metavar=what, action="append", help=f"{text} (repeated: any of them)")
        p.add_argument(
            "--since", metavar="WHEN", help="started at or after WHEN: a duration ago (2h, 7d) or an ISO date"
        )
        p.add_argument("--before", metavar="WHEN", help="started before WHEN")
        p.add_argument(
            "--sort", default="started", help="started, ended, flow, state, user or label ('-' prefix reverses)"
        )
        p.add_argument("--reverse", action="store_true", help="reverse the sort order")
        p.add_argument("--all", action="store_true", help="include the sub-runs of `each` steps (see also --parent)")
        p.add_argument("--limit", type=int, default=50)
        p.add_argument("--offset", type=int, default=0)
        p.add_argument("--json", action="store_true")
        _store(p)

    p = command("prune", "weft.cli.listing:prune", "delete runs that ended long ago, with their sub-runs")
    if p:
        p.add_argument(
            "--older-than", metavar="AGE", required=True, help="ended before this long ago (30d) or an ISO date"
        )
        p.add_argument("--state", help="only runs that ended in this state (succeeded, failed, cancelled)")
        p.add_argument("--batch", type=int, default=500, metavar="N", help="runs deleted per transaction")
        _store(p)

    p = command("watch", "weft.cli.runs:watch", "follow a run driven by any process, live, until it ends or pauses")
    if p:
        p.add_argument("run", metavar="RUN")
        _store(p)

    p = command("show", "weft.cli.runs:show", "show a run, its steps and its history (or one step in full)")
    if p:
        p.add_argument("run", metavar="RUN")
        p.add_argument("step", metavar="STEP", nargs="?", help="show this step's inputs, outputs, error and traceback")
        p.add_argument("--json", action="store_true")
        p.add_argument(
            "--steps",
            metavar="N|all",
            help="show N steps (failed, running and suspended first) and the last N events"
            " (default: 50 as text, all with --json)",
        )
        _store(p)

    p = command("resume", "weft.cli.runs:resume", "retry failed steps and continue a run")
    if p:
        p.add_argument("run", metavar="RUN")
        p.add_argument(
            "--restart",
            metavar="STEP",
            action="append",
            default=[],
            help="start this failed polling step over (a new external task) instead of polling the one it started",
        )
        _driving(p)

    p = command("skip", "weft.cli.runs:skip", "skip a failed step (optionally giving its outputs) and continue")
    if p:
        p.add_argument("run", metavar="RUN")
        p.add_argument("step", metavar="STEP")
        p.add_argument("--output", metavar="K=V", action="append", default=[])
        p.add_argument(
            "--item", type=int, metavar="N", help="STEP is an each step: skip the failed step of item N's sub-run"
        )
        _driving(p)

    p = command("rerun", "weft.cli.runs:rerun", "run a step of a paused, failed or succeeded run again and continue")
    if p:
        p.add_argument("run", metavar="RUN")
        p.add_argument("step", metavar="STEP")
        p.add_argument("--with-dependents", action="store_true", help="run every step downstream of STEP again too")
        p.add_argument("--item", type=int, metavar="N", help="STEP is an each step: run item N's sub-run again")
        _driving(p)

    p = command("cancel", "weft.cli.runs:cancel", "cancel a run")
    if p:
        p.add_argument("run", metavar="RUN")
        _store(p)

    p = command("rollback", "weft.cli.runs:rollback", "undo every succeeded step in reverse dependency order")
    if p:
        p.add_argument("run", metavar="RUN")
        p.add_argument("--force", action="store_true", help="roll back even if some succeeded steps have no undo")
        p.add_argument(
            "--retry-undo",
            metavar="STEP",
            action="append",
            default=[],
            help="run this step's interrupted undo again",
        )
        p.add_argument(
            "--skip-undo",
            metavar="STEP",
            action="append",
            default=[],
            help="count this step's interrupted undo as done",
        )
        _driving(p)

    p = command("signal", "weft.cli.runs:signal", "deliver a signal to a waiting step")
    if p:
        p.add_argument("run", metavar="RUN")
        p.add_argument("name", metavar="NAME")
        p.add_argument("fields", nargs="*", metavar="K=V")
        _broker(p)
        _store(p)

    p = command("schedule", "weft.cli.schedules:main", "start runs of a flow on a cron line or an interval")
    if p:
        actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
        a = actions.add_parser("add", help="add a schedule (inputs are checked now)")
        a.add_argument("name", metavar="NAME")
        a.add_argument("file", metavar="FILE")
        a.add_argument("--flow", metavar="NAME")
        a.add_argument("-i", "--input", metavar="KEY=VALUE", action="append", default=[], dest="inputs")
        a.add_argument("--inputs", metavar="FILE.json", dest="inputs_file")
        when = a.add_mutually_exclusive_group(required=True)
        when.add_argument("--cron", metavar="LINE", help="a cron line: '0 3 * * *' (minute hour day month weekday)")
        when.add_argument("--every", metavar="DURATION", help="an interval: 15m, 1h, 30s")
        a.add_argument("--tz", metavar="ZONE", help="the cron line's time zone (default UTC): Europe/Prague")
        a.add_argument("--start", metavar="WHEN", help="first slot at or after this ISO time (default now)")
        a.add_argument("--until", metavar="WHEN", help="no slot after this ISO time")
        a.add_argument("--max-runs", type=int, metavar="N", help="start at most N runs")
        a.add_argument("--overlap", choices=("skip", "buffer-one", "allow", "cancel-other"), default="skip")
        a.add_argument("--catchup", default="1m", metavar="DURATION", help="fire missed slots this old at most (1m)")
        a.add_argument("--jitter", metavar="DURATION", help="fire each slot up to this much late, spread evenly")
        a.add_argument("--user", help="who its runs are started by (default: login name)")
        a.add_argument("--extensions", metavar="DIR", action="append", default=[])
        actions.add_parser("list", help="list the schedules and their next slots")
        for action, text in (
            ("show", "a schedule's settings, next slots, what it did and its last runs"),
            ("pause", "fire no slot until resumed"),
            ("resume", "fire again from the next slot"),
            ("trigger", "start one run now"),
            ("remove", "remove a schedule (its runs stay)"),
        ):
            a = actions.add_parser(action, help=text)
            a.add_argument("name", metavar="NAME")
            if action == "pause":
                a.add_argument("--note", metavar="TEXT", help="why it is paused")
        for name, a in actions.choices.items():
            _store(a)
            if name in ("list", "show"):
                a.add_argument("--json", action="store_true")

    p = command("worker", "weft.cli.worker:serve", "drive the runs of a store as a service, until SIGTERM")
    if p:
        p.add_argument("--workers", type=int, metavar="N", help="runs driven at once (default 8)")
        p.add_argument(
            "--concurrency", type=int, metavar="N", help="async actions' calls in flight at once per run (default 1000)"
        )
        p.add_argument(
            "--grace",
            default="30s",
            metavar="TIME",
            help="on SIGTERM, how long running steps may take to finish (default 30s)",
        )
        p.add_argument("--once", action="store_true", help="drive what needs a process now, then exit")
        p.add_argument(
            "-v", "--verbose", action="store_true", help="log every let-go between polls too (as WEFT_LOG=debug does)"
        )
        _broker(p)
        _store(p)

    p = command("serve", "weft.cli.serve:serve", "serve the REST API, live events and the web console")
    if p:
        p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        p.add_argument("--port", type=int, default=8137, help="port (default 8137; 0 picks a free one)")
        p.add_argument("--flows", metavar="DIR", action="append", default=[], help="folder of .flow files to serve")
        p.add_argument("--workers", type=int, metavar="N", help="runs the embedded worker drives at once (default 8)")
        p.add_argument("--no-worker", action="store_true", help="drive no runs here: `weft worker` processes do")
        p.add_argument("--token", help="the operator token (default: $WEFT_TOKEN, else generated into the store)")
        p.add_argument("--viewer-token", help="the read-only token (default: $WEFT_VIEWER_TOKEN, else generated)")
        p.add_argument("--grace", default="30s", metavar="TIME", help="on stop, how long running steps may finish")
        _broker(p)
        _store(p)

    p = command("agent", "weft.cli.agent:serve", "run action calls sent by orchestrators through a broker")
    if p:
        p.add_argument("--broker", metavar="URL", help="the Redis the orchestrators use (default: $WEFT_BROKER)")
        p.add_argument("--queue", metavar="NAME", action="append", default=[], help="a queue to serve (default: weft)")
        p.add_argument("--concurrency", type=int, metavar="N", default=8, help="calls run at once (default 8)")
        p.add_argument("--name", help="this agent's name, shown for the steps it ran (default: HOST-PID)")

    p = command("doctor", "weft.cli.doctor:doctor", "check a store's records and indexes against each other")
    if p:
        p.add_argument(
            "--repair", action="store_true", help="rebuild indexes, timers and queue; drop entries naming nothing"
        )
        p.add_argument("--json", action="store_true")
        _store(p)

    command("lsp", "weft.lsp.server:main", "serve editors over the Language Server Protocol (stdio)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    named = next((a for a in argv if not a.startswith("-")), None)  # the command (weft's own options take no value)
    args = build_parser(named).parse_args(argv)
    module, _, func = args.handler.partition(":")
    try:
        return getattr(importlib.import_module(module), func)(args) or 0
    except WeftError as e:
        print(f"weft: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("weft: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:  # a bug in Weft: one line for the user, the trace on request
        if os.environ.get("WEFT_DEBUG"):
            raise
        print(f"weft: internal error: {type(e).__name__}: {e} (set WEFT_DEBUG=1 for the traceback)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
