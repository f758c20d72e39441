"""The `mk1` command: run, inspect and use the system.

    mk1 up | down | status | deploy
    mk1 invoke RuntimeAlpha "hello" --user admin [-n 5 --parallel]
    mk1 usage report | export --format jsonl|csv -o FILE
    mk1 logs RuntimeAlpha [--follow]

Exit codes: 0 ok, 1 the call failed (denied, throttled, function error), 2 bad
usage or mk1 not running.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from . import settings as settings_mod
from .client import Function, load_profile
from .errors import AuthenticationFailed, ConnectionError, Mk1Error, NotFound
from .signed import signed_get

try:
    from rich.console import Console
    from rich.table import Table
except ImportError:  # rich comes with streamlit; plain text without it
    Console = Table = None


def _table(title: str, columns: list[str], rows: list[list]) -> None:
    if Console is None:
        print(title)
        for r in [columns, *rows]:
            print("  ".join(str(x) for x in r))
        return
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(x) for x in r])
    Console().print(t)


def _status_json(s) -> dict:
    try:
        with urllib.request.urlopen(f"{s.dispatcher_url}/mk1/status", timeout=5) as r:
            return json.loads(r.read())
    except OSError as e:
        raise ConnectionError(f"mk1 is not running at {s.dispatcher_url} ({e}). Start it with `make up`.") from None


def cmd_status(args, s) -> int:
    st = _status_json(s)
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    rows = []
    for name, f in st["functions"].items():
        q = st.get("queues", {}).get(name, {})
        # Waiting calls' messages are mostly received (held for the next free slot): in flight, not visible.
        in_sqs = f"{q['visible']} / {q.get('NotVisible', 0)}" if "visible" in q else "-"
        rows.append([name, f.get("reserved_concurrency"), f.get("in_use", 0), f.get("waiting", 0),
                     in_sqs, len(f.get("containers", [])), f.get("cold_starts", 0)])
    _table(f"mk1 — backend {st['backend']}, placement {st['placement']}, keepalive {st['keepalive_ms']} ms",
           ["function", "cap", "in use", "waiting", "in SQS (visible / in flight)", "containers", "cold starts"],
           rows)
    mrows = [[m["uuid"][:8], m["source"].split(":")[-1], m["function"], m["state"], m["workers"],
              m["in_flight_batches"], m.get("backlog", "-"), m["batches"], m["deleted"]]
             for m in st.get("mappings", [])]
    if mrows:
        _table("event source mappings", ["uuid", "queue", "function", "state", "workers", "batches running",
                                         "backlog", "batches", "deleted"], mrows)
    crow = [[c["id"], c["state"], c["invocations"], c["init_ms"], c["idle_s"], c["backend"]]
            for f in st["functions"].values() for c in f.get("containers", [])]
    if crow:
        _table("containers", ["id", "state", "invocations", "init ms", "idle s", "backend"], crow)
    return 0


def cmd_invoke(args, s) -> int:
    fn = Function(args.function, user=args.user)
    prompts = [args.prompt] * args.n
    failed = 0
    if args.parallel and args.n > 1:
        with ThreadPoolExecutor(max_workers=min(args.n, 32)) as pool:
            results = list(pool.map(lambda p: _one(fn, p), prompts))
    else:
        results = [_one(fn, p) for p in prompts]
    fatal = [r for r in results if isinstance(r, (ConnectionError, NotFound, AuthenticationFailed))]
    if fatal:
        raise fatal[0]   # wrong name, user or endpoint: say it once, exit 2
    for i, r in enumerate(results, 1):
        if isinstance(r, Exception):
            failed += 1
            print(f"[{i}] ERROR {type(r).__name__}: {r}", file=sys.stderr)
        else:
            text = fn._text(r) if not r.function_error else None
            how = f"{_ms(r.duration_ms)} ms, waited {_ms(r.wait_ms)} ms, {'cold' if r.cold else 'warm'} on {r.container}"
            print(text if args.n == 1 else f"[{i}] {text}  ({how})")
    return 1 if failed else 0


def _one(fn: Function, prompt: str):
    """An InvokeResult (how it ran: duration, wait, cold) or the client's error for it."""
    try:
        r = fn.invoke({"prompt": prompt})
        if r.function_error:
            fn._text(r)   # raises the FunctionError, with the function's type and message
        return r
    except Mk1Error as e:
        return e


def _ms(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _usage(args, s, path: str) -> dict:
    akid, secret = load_profile(args.caller)
    from botocore.credentials import Credentials
    query = {k: v for k, v in (("function", args.function), ("since", args.since), ("until", args.until),
                               ("user", args.of_user)) if v}
    try:
        status, body = signed_get(s.dispatcher_url, path, Credentials(akid, secret), s.region, query)
    except OSError as e:
        raise ConnectionError(f"mk1 is not running at {s.dispatcher_url} ({e}). Start it with `make up`.") from None
    if status != 200:
        raise Mk1Error(body.get("message", str(body)))
    return body


def cmd_usage(args, s) -> int:
    if args.action == "report":
        body = _usage(args, s, "/mk1/usage/report")
        if args.json:
            print(json.dumps(body, indent=2))
            return 0
        _table(f"usage report (at ${body['price_gb_second']}/GB-s, ${body['price_per_request']}/request)",
               ["user", "function", "calls", "errors", "throttled", "p50 ms", "p95 ms", "GB-s", "est. USD"],
               [[r["user"], r["function"], r["invocations"], r["errors"], r["throttled"], r["p50_ms"],
                 r["p95_ms"], r["gb_seconds"], f"{r['estimated_cost_usd']:.8f}"] for r in body["rows"]])
        return 0
    records = _usage(args, s, "/mk1/usage")["records"]
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        _export(records, args.format, out)
    except BrokenPipeError:   # `mk1 usage export | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output:
        print(f"wrote {len(records)} records to {args.output}", file=sys.stderr)
    return 0


def _export(records: list[dict], fmt: str, out) -> None:
    if fmt == "csv":
        cols = sorted({k for r in records for k in r})
        w = csv.DictWriter(out, fieldnames=cols)
        w.writeheader()
        w.writerows(records)
    else:
        for r in records:
            out.write(json.dumps(r) + "\n")
    out.flush()


def cmd_logs(args, s) -> int:
    from infra import aws, names
    logs = aws.client(s, "logs")
    group = names.log_group(args.function)
    try:   # the function's own log group, if its LoggingConfig names one
        config = aws.client(s, "lambda").get_function_configuration(FunctionName=args.function)
        group = (config.get("LoggingConfig") or {}).get("LogGroup") or group
    except Exception:
        pass
    start = int((time.time() - args.since_minutes * 60) * 1000)
    seen: set[str] = set()
    try:
        while True:
            kw = {"logGroupName": group, "startTime": start}
            events = [e for page in logs.get_paginator("filter_log_events").paginate(**kw) for e in page["events"]
                      if e["eventId"] not in seen]
            for e in sorted(events, key=lambda e: (e["timestamp"], e.get("ingestionTime", 0))):   # time order
                seen.add(e["eventId"])
                start = max(start, e["timestamp"])
                when = datetime.fromtimestamp(e["timestamp"] / 1000, timezone.utc).strftime("%H:%M:%S.%f")[:-3]
                print(f"{when}  {e['logStreamName']}  {e['message']}", flush=True)
            if not args.follow:
                return 0
            time.sleep(1)
    except logs.exceptions.ResourceNotFoundException:
        print(f"no log group {group}: unknown function {args.function!r}?", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def cmd_deploy(args, s) -> int:
    """Provision again; say per function whether its code changed and, if mk1 is running, wait until
    the dispatcher serves the new code (the next call runs it)."""
    from infra import aws, names
    from infra.provision import provision
    lam = aws.client(s, "lambda")
    before = {}
    for fn in names.FUNCTIONS:
        try:
            before[fn] = lam.get_function_configuration(FunctionName=fn)["CodeSha256"]
        except Exception:   # not deployed yet
            before[fn] = None
    p = provision(s)
    changed = {fn: sha for fn, sha in p.functions.items() if before.get(fn) != sha}
    for fn, sha in p.functions.items():
        what = "new" if before.get(fn) is None else "changed" if fn in changed else "unchanged"
        print(f"{fn}: code {what} ({sha[:12]}…)")
    print(f"credentials: {p.credentials_file}")
    if changed:
        _wait_live(s, changed)
    return 0


def _wait_live(s, shas: dict[str, str], timeout: float = 15) -> None:
    started = time.monotonic()
    try:
        while True:
            live = _status_json(s)["functions"]
            waiting = [fn for fn, sha in shas.items() if live.get(fn, {}).get("code_sha256") != sha]
            if not waiting:
                print(f"live: the dispatcher runs the new code of {', '.join(shas)} "
                      f"({time.monotonic() - started:.1f} s)")
                return
            if time.monotonic() - started > timeout:
                print(f"not live after {timeout:.0f} s: {', '.join(waiting)} (see `mk1 status`)", file=sys.stderr)
                return
            time.sleep(0.2)
    except ConnectionError:
        print("mk1 is not running: the new code is live when it starts")


def cmd_up(args, s) -> int:
    from .stack import run_up
    return run_up(s, ui=not args.no_ui)


def cmd_down(args, s) -> int:
    from .stack import run_down
    return run_down(s)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mk1", description="A faithful, fast, observable Lambda on this machine.")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything and keep it running, restarting a part that crashes "
                                   "(what `make up` runs); Ctrl-C stops it")
    up.add_argument("--no-ui", action="store_true", help="do not start the Streamlit UI")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop a running `mk1 up`, the dispatcher draining first (nothing running: "
                                "says so, exit 0)").set_defaults(func=cmd_down)
    st = sub.add_parser("status", help="functions, concurrency in use, queues, containers")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    inv = sub.add_parser("invoke", help="invoke a function with a prompt")
    inv.add_argument("function")
    inv.add_argument("prompt")
    inv.add_argument("--user", default="admin")
    inv.add_argument("-n", type=int, default=1, help="how many calls")
    inv.add_argument("--parallel", action="store_true", help="make the n calls at once")
    inv.set_defaults(func=cmd_invoke)
    us = sub.add_parser("usage", help="usage records and the billing report")
    us.add_argument("action", choices=["report", "export"])
    us.add_argument("--user", "--of-user", dest="of_user", help="only this user's records")
    us.add_argument("--as", dest="caller", default="admin",
                    help="the profile that asks (default admin, who sees everyone's; a user sees only their own)")
    us.add_argument("--function")
    us.add_argument("--since", help="ISO-8601 start (inclusive)")
    us.add_argument("--until", help="ISO-8601 end (exclusive)")
    us.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    us.add_argument("-o", "--output")
    us.add_argument("--json", action="store_true")
    us.set_defaults(func=cmd_usage)
    lg = sub.add_parser("logs", help="the function's CloudWatch logs")
    lg.add_argument("function")
    lg.add_argument("--follow", "-f", action="store_true")
    lg.add_argument("--since-minutes", type=float, default=60)
    lg.set_defaults(func=cmd_logs)
    sub.add_parser("deploy", help="provision again / push changed function code").set_defaults(func=cmd_deploy)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    s = settings_mod.load()
    try:
        return args.func(args, s)
    except ConnectionError as e:
        print(f"mk1: {e}", file=sys.stderr)
        return 2
    except Mk1Error as e:
        print(f"mk1: {type(e).__name__}: {e}", file=sys.stderr)
        return 2 if type(e).__name__ in ("NotFound", "AuthenticationFailed") else 1
    except Exception as e:  # e.g. the AWS endpoint is down for `logs`/`deploy`
        print(f"mk1: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
