"""The printed table, the machine facts, the plots (in the bench venv) and docs/BENCHMARKS.md."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path

from . import wakeup
from .harness import ROOT
from .stats import fmt, fmt_shares, ratio
from .venv import PY as BENCH_PY, version as bench_version  # noqa: F401  (re-exported)

DOC = ROOT / "docs" / "BENCHMARKS.md"
KEEP = re.compile(r"<!-- analysis:begin -->.*?<!-- analysis:end -->", re.S)


# -- machine facts --
def machine_facts() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines()
                   if x.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem = 0

    def pkg(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    def run(*cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=ROOT)
            return r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "packages": {p: pkg(p) for p in ("boto3", "botocore", "chalice", "moto", "awslambdaric")},
            "docker_server": run("docker", "version", "--format", "{{.Server.Version}}"),
            "git_commit": run("git", "rev-parse", "--short", "HEAD"),
            "wakeup": wakeup.measure()}


# -- the table --
def _row(fig, measure, mk1_med, mk1_p99, floor, peer, goal, met, digits=2, floor_ratio=None, peer_ratio=None):
    return [fig, measure, fmt(mk1_med, digits), fmt(mk1_p99, digits), fmt(floor, digits),
            fmt(floor_ratio if floor_ratio is not None else ratio(mk1_med, floor), 2),
            fmt(peer, digits) if not isinstance(peer, str) else peer,
            fmt(peer_ratio if peer_ratio is not None else (ratio(mk1_med, peer) if not isinstance(peer, str) else None), 2),
            goal, met]


HEAD = ["fig", "measure", "mk1 median", "mk1 p99", "floor", "mk1/floor", "peer (Ray Serve)", "mk1/peer", "goal",
        "met"]


def _yes(b) -> str:
    return "n/a" if b is None else ("yes" if b else "NO")


def rows(results: dict) -> list[list[str]]:
    out = []
    F = results.get("figures", {})
    nm = results.get("not_measured", {})
    peer_status = results.get("peer", {}).get("status", "not measured")
    f1 = F.get("1")
    if f1:
        v = {k: x["overhead_ms"] for k, x in f1["variants"].items()}
        g = f1["goal"]
        pb = v.get("peer_boto3", {}).get("median", peer_status) if "peer_boto3" in v else "not measured"
        ph = v.get("peer_http", {}).get("median") if "peer_http" in v else "not measured"
        met = g["met_3ms"] and (g["below_peer"] is not False)
        out.append(_row("1", "warm overhead via boto3, ms", v["mk1_boto3"]["median"], v["mk1_boto3"]["p99"],
                        v["floor_http"]["median"], pb, "< 3 ms and < peer",
                        f"{_yes(g['met_3ms'])} / {_yes(g['below_peer'])}" if not met else "yes"))
        out.append(_row("1", "  same, raw signed HTTP, ms", v["mk1_signed"]["median"], v["mk1_signed"]["p99"],
                        v["floor_http"]["median"], ph, "-", "-"))
        out.append(_row("1", "  boto3 on the bare floor, ms", v["boto3_floor"]["median"], v["boto3_floor"]["p99"],
                        v["floor_http"]["median"], "-", "-", "-"))
        if "runtime_loop" in v:
            out.append(_row("1", "  runtime loop alone (awslambdaric, bare endpoint), ms", v["runtime_loop"]["median"],
                            v["runtime_loop"]["p99"], None, "-", "-", "-"))
        out.append(_row("1", "  direct handler call, ms", v["direct"]["median"], v["direct"]["p99"], None, "-",
                        "-", "-", digits=3))
    elif "1" in nm:
        out.append(["1", "warm overhead", nm["1"], "", "", "", "", "", "", ""])
    f2 = F.get("2")
    if f2:
        t = f2["targets"]
        peer = t["peer"]["calls_per_s"]["median"] if "peer" in t else "not measured"
        m = t["mk1"]["calls_per_s"]
        out.append(_row("2", f"throughput, {f2['clients']} clients, calls/s (ideal {f2['ideal_calls_per_s']:.0f}; p99 col: worst rep)",
                        m["median"], m["min"], t["floor"]["calls_per_s"]["median"], peer,
                        ">= 0.97 x ideal", f"{_yes(f2['goal']['met'])} ({fmt(f2['goal']['value'], 3)} x ideal)",
                        digits=1))
        if "runtime_loop" in t:
            lp = t["runtime_loop"]
            out.append(_row("2", "  same, floor col: the runtime loop alone (3 awslambdaric, no dispatcher)",
                            m["median"], m["min"], lp["calls_per_s"]["median"], "-", "-",
                            f"loop: {fmt(lp['ratio_to_ideal'], 3)} x ideal", digits=1))
    f3 = F.get("3", {})
    for backend, limit in (("process", 100), ("docker", 500)):
        c = f3.get(backend)
        if "3" not in F and f"3-{backend}" not in nm:
            continue
        if c:
            out.append(_row("3", f"cold start {backend}, ms over load()", c["overhead_ms"]["median"],
                            c["overhead_ms"]["p99"], c["floor_ms"]["median"], "-", f"< {limit} ms",
                            f"{_yes(c['goal']['met'])} ({fmt(c['goal']['margin_ms'], 0)} ms margin)", digits=1))
        else:
            why = nm.get(f"3-{backend}", "not run")
            out.append(["3", f"cold start {backend}", why, "", "", "", "", "", f"< {limit} ms", "n/a"])
    for key in ("4", "4b", "4p"):
        f4 = F.get(key)
        if f4:
            fifo = f4.get("fifo", {})
            stalled = " (STALLED)" if f4.get("stalled") else ""
            sent = f" sent at {f4['rate_per_s']:.0f}/s" if f4.get("rate_per_s") else ""
            out.append([key, f"{f4['calls']} queued calls{sent}: answered{stalled}", f"{f4['answered_ok']}/{f4['calls']}",
                        "", "", "", "-", "-", "all", _yes(f4["goal"]["all_answered"])])
            out.append([key, "  FIFO: inversions, grants / starts (entries >= 10 ms apart)",
                        f"{fifo.get('queue_order_inversions_entries_10ms_apart')} / "
                        f"{fifo.get('inversions_entries_10ms_apart')}",
                        f"all pairs: {fifo.get('inversions')}/{fifo.get('pairs')}", "", "", "-", "-", "0",
                        _yes(f4["goal"]["fifo_kept"])])
            out.append(_row(key, "  slot time per queued call beyond the function, ms",
                            f4.get("slot_overhead_per_call_ms"), None, None, "-", "-", "-"))
            out.append(_row(key, "  non-wait overhead per call (latency - wait - duration), ms",
                            f4["non_wait_overhead_ms"]["median"], f4["non_wait_overhead_ms"]["p99"], None, "-", "-",
                            "-"))
            if f4.get("queued_path_overhead_ms"):
                out.append(_row(key, "    of it, sent -> joined the queue (the front door), ms",
                                f4["before_entry_ms"]["median"], f4["before_entry_ms"]["p99"], None, "-", "-", "-"))
                out.append(_row(key, "    the rest: latency - front door - wait - duration, ms",
                                f4["queued_path_overhead_ms"]["median"], f4["queued_path_overhead_ms"]["p99"], None,
                                "-", "-", "-"))
            if f4.get("connect_ms"):
                out.append(_row(key, "  before sending: connect, ms (p99 col) / connects retried after a dropped SYN",
                                f4["connect_ms"]["median"], f4["connect_ms"]["p99"], None, "-", "-",
                                f"{f4.get('connects_retried', 0)} retried"))
            out.append(_row(key, f"  drain rate, calls/s (ideal {f4.get('ideal_calls_per_s', 0):.0f})",
                            f4.get("drain_calls_per_s"), None, f4.get("ideal_calls_per_s"), "-", "-", "-", digits=1))
            if f4.get("runtime_loop_calls_per_s"):
                out.append(_row(key, "  drain rate, calls/s (floor col: the runtime loop alone, same function)",
                                f4.get("drain_calls_per_s"), None, f4["runtime_loop_calls_per_s"], "-",
                                ">= 0.97 x floor", "met" if (f4.get("ratio_to_runtime_loop") or 0) >= 0.97
                                else "not met", digits=1))
            if f4.get("runtime_loop_calls_per_s") and f4.get("drain_after_intake_calls_per_s"):
                out.append(_row(key, "    the same, once every call had joined the queue (intake over)",
                                f4["drain_after_intake_calls_per_s"], None, f4["runtime_loop_calls_per_s"], "-",
                                "-", "-", digits=1))
            hops = f4.get("runtime_hop_ms") or {}
            for phase, label in (("during_intake", "during intake"), ("after_intake", "intake over")):
                if phase in hops:
                    out.append(_row(key, f"    event out -> answer in, less the handler's time, ms ({label})",
                                    hops[phase]["median"], hops[phase]["p99"], None, "-", "-", "-"))
            cores = f4.get("cores_in_use") or {}
            for phase, label in (("during", "during intake"), ("after", "intake over")):
                if phase in cores:
                    c = cores[phase]
                    out.append([key, f"    cores in use, of {cores.get('cpus')} ({label}, {c['seconds']} s)",
                                fmt(c.get("machine")), "", "", "", "-", "-", "-", fmt_shares(c)])
            if f4.get("slot_utilisation") is not None:
                out.append([key, "  slot utilisation: function duration / slot time", fmt(f4["slot_utilisation"], 3),
                            "", "", "", "-", "-", "-", "-"])
            d = f4["dispatcher"]
            out.append([key, "  dispatcher peak RSS (VmHWM), MiB", fmt(d["peak_rss_mib"], 1), "",
                        f"before: {fmt(d['before'].get('VmHWM'), 1)}", "", "-", "-", "-",
                        f"{d['peak_threads']} threads"])
        elif key == "4" and "4" in nm:
            out.append(["4", "queue at depth", nm["4"], "", "", "", "", "", "", ""])
    f5 = F.get("5")
    if f5:
        for p in f5["points"]:
            out.append(_row("5", f"{p['clients']:>3} clients: calls/s (ideal {p['ideal_calls_per_s']:.0f}) | "
                                 "non-wait overhead ms med/p99",
                            p["calls_per_s"], None, p.get("floor", {}).get("calls_per_s"), "-", "-",
                            f"{fmt(p['non_wait_overhead_ms']['median'])} / {fmt(p['non_wait_overhead_ms']['p99'])}",
                            digits=1))
    f6 = F.get("6")
    if f6:
        r6, t6 = f6["ratios"], f6["throughput"]
        out.append(_row("6", f"cluster mode ({f6['dispatchers']} dispatchers): warm overhead via boto3, ms "
                             f"(floor col: one process)", f6["overhead_ms"]["median"], f6["overhead_ms"]["p99"],
                        f6["single_process"]["overhead_ms"], "-", "-",
                        f"+{fmt(r6['extra overhead ms'])} ms" if r6["extra overhead ms"] is not None else "-"))
        out.append(_row("6", f"  cluster mode: throughput, {f6['clients']} clients, calls/s "
                             f"(ideal {t6['ideal_calls_per_s']:.0f}; floor col: one process)",
                        t6["calls_per_s"], None, f6["single_process"]["calls_per_s"], "-", "-",
                        f"{fmt(t6['ratio_to_ideal'], 3)} x ideal, {t6['errors']} errors", digits=1))
    elif "6" in nm:
        out.append(["6", "cluster mode", nm["6"], "", "", "", "", "", "", ""])
    f7 = F.get("7")
    if f7:
        out.append(_row("7", f"SQS mapping: messages/s, {f7['messages']} in batches of 100 (ideal "
                             f"{f7['ideal_per_s']:.0f}: cap 3, 50 ms function)", f7["messages_per_s"], None,
                        f7["ideal_per_s"], "-", ">= 0.9 x ideal", "met" if f7["goal"]["ratio_0_9"] else "not met",
                        digits=0))
        if f7.get("sqs_floor_per_s"):
            out.append(_row("7", "  same queue work without a function (receive + delete, floor col), messages/s",
                            f7["messages_per_s"], None, f7["sqs_floor_per_s"], "-", "-", "-", digits=0))
        lat = f7["send_to_start_ms"]
        out.append(_row("7", "  SQS mapping: send to start of the invocation, ms (idle, batch 1)", lat["median"],
                        lat["max"], None, "-", "-", "-", digits=0))
    elif "7" in nm:
        out.append(["7", "SQS mapping", nm["7"], "", "", "", "", "", "", ""])
    f8 = F.get("8")
    if f8 and f8.get("loads"):
        goal = f8["goal"]
        for load, r in f8["loads"].items():
            out.append(_row("8", f"SnapStart cold start (load() {load} s): call to handler, ms "
                                 "(floor col: bare `python3.12 -c pass`)", r["restore_to_handler_ms"]["median"],
                            r["restore_to_handler_ms"]["p99"], r["bare_interpreter_ms"]["median"], "-",
                            "<= 10 ms, <= 0.5 x floor", "met" if goal["met"] else "not met", digits=1))
            out.append(_row("8", f"  same version's $LATEST without SnapStart (load() {load} s): call to handler, ms",
                            r["plain_to_handler_ms"]["median"], r["plain_to_handler_ms"]["p99"], None, "-", "-", "-",
                            digits=1))
    elif "8" in nm:
        out.append(["8", "SnapStart", nm["8"], "", "", "", "", "", "", ""])
    f9 = F.get("9")
    if f9:
        st, fu = f9["streaming"], f9["function_url"]
        out.append(_row("9", "streamed answer (10 chunks, 100 ms apart): first byte, ms (floor col: the same "
                             "function's buffered answer)", st["stream_first_byte_ms"]["median"],
                        st["stream_first_byte_ms"]["p99"], st["buffered_answer_ms"]["median"], "-", "-", "-",
                        digits=1))
        out.append(_row("9", "function URL, warm call, ms (floor col: Invoke as signed HTTP, same client)",
                        fu["url_ms"]["median"], fu["url_ms"]["p99"], fu["invoke_signed_http_ms"]["median"], "-",
                        "-", "-"))
        out.append(_row("9", "  Invoke of the same function through boto3, ms", fu["invoke_boto3_ms"]["median"],
                        fu["invoke_boto3_ms"]["p99"], None, "-", "-", "-"))
    elif "9" in nm:
        out.append(["9", "HTTP side", nm["9"], "", "", "", "", "", "", ""])
    return out


def table(results: dict) -> str:
    rs = [HEAD, *rows(results)]
    widths = [max(len(str(r[i])) for r in rs) for i in range(len(HEAD))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rs]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: dict) -> str:
    rs = rows(results)
    out = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rs]
    return "\n".join(out)


# -- plots --
def plot(results_file: Path, out_dir: Path, log=print) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([str(BENCH_PY), str(ROOT / "bench" / "plot.py"), str(results_file), str(out_dir)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        log(f"plots failed: {(r.stderr or r.stdout).strip()[-500:]}")
    else:
        log(f"plots: {out_dir.relative_to(ROOT)}/ ({r.stdout.strip()})")


# -- the doc --
def write_doc(results: dict, history: list[dict] | None = None) -> None:
    from .doc import render
    old = DOC.read_text() if DOC.exists() else ""
    keep = KEEP.search(old)
    text = render(results, markdown_table(results), history or [])
    if keep:
        text = KEEP.sub(lambda _: keep.group(0), text)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


# -- history of full runs: the spread between runs on a shared 2-core machine --
# Beside the doc and committed with it (not under .mk1/, which a fresh clone lacks): the doc's table
# of the last runs is made from it.
HISTORY = ROOT / "docs" / "bench" / "history.jsonl"


def history_entry(r: dict) -> dict:
    F = r.get("figures", {})
    loads = [v.get("loadavg_1min", {}).get(k) for v in list(F.values()) + list(F.get("3", {}).values())
             if isinstance(v, dict) for k in ("before", "after")]
    loads = [x for x in loads if x is not None]
    v1 = F.get("1", {}).get("variants", {})
    f4 = F.get("4", {})
    return {"started": r.get("started"), "commit": r.get("machine", {}).get("git_commit"),
            "machine": r.get("machine", {}).get("cpu"),
            "max_load": max(loads) if loads else None,
            "f1_mk1_boto3_ms": v1.get("mk1_boto3", {}).get("overhead_ms", {}).get("median"),
            "f1_boto3_floor_ms": v1.get("boto3_floor", {}).get("overhead_ms", {}).get("median"),
            "f1_peer_boto3_ms": v1.get("peer_boto3", {}).get("overhead_ms", {}).get("median"),
            "f2_ratio": F.get("2", {}).get("goal", {}).get("value"),
            "f2_floor_ratio": F.get("2", {}).get("ratios", {}).get("floor/ideal"),
            "f2_loop_ratio": F.get("2", {}).get("ratios", {}).get("runtime_loop/ideal"),
            "f3_process_ms": F.get("3", {}).get("process", {}).get("overhead_ms", {}).get("median"),
            "f3_docker_ms": F.get("3", {}).get("docker", {}).get("overhead_ms", {}).get("median"),
            "f4_answered": f"{f4.get('answered_ok')}/{f4.get('calls')}" if f4 else None,
            "f4_fifo_inversions_10ms": f4.get("fifo", {}).get("inversions_entries_10ms_apart"),
            "f5_ratios": [p["ratio_to_ideal"] for p in F.get("5", {}).get("points", [])]}


def append_history(r: dict) -> list[dict]:
    import json
    HISTORY.parent.mkdir(parents=True, exist_ok=True)
    with HISTORY.open("a") as f:
        f.write(json.dumps(history_entry(r)) + "\n")
    return [json.loads(x) for x in HISTORY.read_text().splitlines() if x.strip()]
