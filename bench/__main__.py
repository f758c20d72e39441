"""python -m bench [--quick | --selftest] [--only 1,2,...] [--no-peer] [--no-docker] [--profile]

Full run: every figure beside its floor and the Ray Serve peer; writes .mk1/bench/results.json,
docs/bench/*.png and the numbers in docs/BENCHMARKS.md.
--quick:   smaller counts, no peer (< 2 min); writes .mk1/bench/results-quick.json and
           .mk1/bench/results.json, plots under .mk1/bench/plots; docs untouched.
--selftest: figure 1 with 20 calls, no peer, no plots; exits 0 when the measurement works.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback

from . import figures, harness as h, report
from .venv import RayPeer, ensure

OUT = h.ROOT / ".mk1" / "bench"
ALL = {1, 2, 3, 4, 5, 6, 7, 8, 9}

SIZES = {
    #            fig1 reps x calls, fig2 reps x calls, fig3 process/docker calls, fig4 burst, fig5 points
    #            fig6 (cluster mode): overhead reps x calls, calls at the cap
    "full": {"f1": (5, 200), "f2": (3, 600), "f3": (12, 6), "f4": 1000,
             "f5": {1: 100, 3: 150, 10: 300, 30: 600, 100: 1000}, "f6": (3, 200, 600), "f7": 6000, "f8": 30, "f9": 500},
    "quick": {"f1": (3, 100), "f2": (2, 150), "f3": (4, 2), "f4": 200, "f5": {1: 30, 10: 120, 30: 150},
              "f6": (2, 60, 150), "f7": 3000, "f8": 10, "f9": 200},
    "selftest": {"f1": (1, 20)},
}

# mk1's production defaults for the background work (tests/helpers.py speeds these up for tests)
DEFAULTS = {"MK1_CONTROL_REFRESH_MS": "1000", "MK1_USAGE_BATCH_MS": "200", "MK1_LOGS_BATCH_MS": "1000"}
SYSTEM_A = {**DEFAULTS, "MK1_ALPHA_LOAD_SECONDS": "0.2", "MK1_ALPHA_GENERATE_SECONDS": "0",
            "MK1_BETA_LOAD_SECONDS": "0.2", "MK1_BETA_GENERATE_SECONDS": "0.05",
            "MK1_MAX_QUEUE_DEPTH": "2000", "MK1_MAX_WAIT_MS": "900000", "MK1_BACKEND": "process"}
PACED_PER_S = 450   # figure 4p: 1.5 x the ideal drain (cap 3 / 10 ms), ~2/3 of what the door takes in
SYSTEM_CLUSTER = {**SYSTEM_A, "MK1_CLUSTER": "1"}
SYSTEM_COLD = {**DEFAULTS, "MK1_ALPHA_LOAD_SECONDS": "0.2", "MK1_ALPHA_GENERATE_SECONDS": "0", "MK1_KEEPALIVE_MS": "0"}
SYSTEM_QUEUE = {**DEFAULTS, "MK1_BETA_LOAD_SECONDS": "0.2", "MK1_BETA_GENERATE_SECONDS": "0.01",
                "MK1_MAX_QUEUE_DEPTH": "2000", "MK1_MAX_WAIT_MS": "900000", "MK1_BACKEND": "process"}


def log(msg: str) -> None:
    print(msg, flush=True)


def docker_works() -> tuple[bool, str]:
    if not shutil.which("docker"):
        return False, "no docker command on this machine"
    try:
        r = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return False, f"`docker info` failed: {e}"
    if r.returncode != 0:
        return False, "`docker info` failed: " + (r.stderr.strip().splitlines() or ["no engine"])[-1]
    return True, ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run (< 2 min), no peer")
    ap.add_argument("--selftest", action="store_true", help="figure 1 with 20 calls; exit 0 if it works")
    ap.add_argument("--only", default="", help="comma-separated figures to run, e.g. 1,3")
    ap.add_argument("--no-peer", action="store_true", help="do not install or run the Ray Serve peer")
    ap.add_argument("--no-docker", action="store_true", help="skip the Docker cold start")
    ap.add_argument("--profile", action="store_true", help="profile the dispatcher even if goals are met")
    ap.add_argument("--no-docs", action="store_true", help="full run without rewriting docs/")
    ap.add_argument("--depth", type=int, default=0, help="figure 4's burst size (default 1000; quick 200)")
    args = ap.parse_args(argv)
    mode = "selftest" if args.selftest else "quick" if args.quick else "full"
    size = SIZES[mode]
    only = {int(x) for x in args.only.split(",") if x.strip()} or ({1} if mode == "selftest" else ALL)
    OUT.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    results: dict = {"mode": mode, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "machine": report.machine_facts(), "figures": {}, "not_measured": {}}
    log(f"mk1 benchmark ({mode}) on {results['machine']['cpu']} x{results['machine']['cores']}")

    # -- the bench venv: plots (matplotlib), the peer (Ray Serve), the profiler (py-spy)
    want = []
    if mode != "selftest":
        want.append("matplotlib")
    peer_reason = None
    if mode != "full":
        peer_reason = f"not measured: --{mode} runs no peer"
    elif args.no_peer:
        peer_reason = "not measured: --no-peer"
    elif not ({1, 2} & only):
        peer_reason = "not measured: its figures (1, 2) were not run"
    else:
        want.append("ray")
    if mode == "full" or args.profile:
        want.append("py-spy")
    tools = ensure(want, log) if want else {}
    if "ray" in want and tools.get("ray"):
        peer_reason = f"not measured: {tools['ray']}"
    results["tools"] = tools

    failures = 0
    partial: dict = {}

    def guarded(name: str, fn):
        nonlocal failures
        t0, load0 = time.monotonic(), os.getloadavg()
        try:
            r = fn()
            if r is not None:
                partial[name] = r
                (OUT / f"partial-{mode}.json").write_text(json.dumps(partial, indent=1))   # survives a later hang
                r["seconds"] = round(time.monotonic() - t0, 1)
                # other work on this 2-core machine shows here: a high load means noisy numbers
                r["loadavg_1min"] = {"before": round(load0[0], 2), "after": round(os.getloadavg()[0], 2)}
            return r
        except Exception as e:
            failures += 1
            log(f"  {name} FAILED: {type(e).__name__}: {e}")
            traceback.print_exc()
            results["not_measured"][name] = f"failed: {type(e).__name__}: {e}"[:500]
            return None

    def on_system(key: str, tag: str, env: dict, run) -> None:
        """One figure on a system of its own (h.running_system); one that cannot start is a failure."""
        nonlocal failures
        try:
            with h.running_system(tag, **env) as s:
                results["figures"][key] = guarded(key, lambda: run(s))
        except Exception as e:
            results["not_measured"][key] = f"failed: {e}"
            failures += 1

    def stop(p) -> None:
        if p.proc.poll() is None:
            results["peer"]["rss_mib_after"] = p.rss_mib()
        p.stop()

    # -- system A: figures 1, 2, 5 (and the profile)
    if only & {1, 2, 5}:
        floor = h.FloorServer()
        peer = None
        if peer_reason is None:
            log("starting the Ray Serve peer (bench venv subprocess) ...")
            try:
                peer = RayPeer(h.free_port())
                results["peer"] = {"name": "Ray Serve", "version": report.bench_version("ray"),
                                   "start_s": round(peer.start_s, 1), "rss_mib": peer.rss_mib()}
                log(f"  up in {peer.start_s:.1f} s, {results['peer']['rss_mib']} MiB RSS")
            except Exception as e:
                peer_reason = f"not measured: the peer did not start ({e})"
        if peer_reason:
            results["peer"] = {"name": "Ray Serve", "status": peer_reason}
            log(f"peer: {peer_reason}")
        try:
            log("starting mk1 (system A: no-op RuntimeAlpha, 50 ms RuntimeBeta) ...")
            with h.running_system("a", **SYSTEM_A) as s:
                # The peer's repetitions first (figure 1's, then figure 2's), then it is stopped, so its
                # idle daemons (GCS, raylet, workers) do not share the 2 cores with mk1's repetitions.
                peer_f1 = None
                if 1 in only and peer is not None:
                    reps, calls = size["f1"]
                    log(f"figure 1, peer phase: Ray Serve beside the floor ({reps} reps x {calls} calls per variant)")
                    peer_f1 = guarded("1-peer", lambda: figures.warm_overhead_peer(floor, peer, reps, calls, log=log))
                if 2 in only:
                    reps, calls = size["f2"]
                    log(f"figure 2: throughput at the cap (30 clients, {reps} reps x {calls} calls)")
                    results["figures"]["2"] = guarded("2", lambda: figures.throughput(
                        s, floor, peer, reps, calls, profile=mode == "full" or args.profile,
                        stop_peer=lambda: stop(peer), log=log))
                if peer is not None:
                    stop(peer)
                    peer = None
                if 1 in only:
                    reps, calls = size["f1"]
                    log(f"figure 1: warm call overhead ({reps} reps x {calls} calls per variant)")
                    f1 = guarded("1", lambda: figures.warm_overhead(s, floor, peer_f1, reps, calls, log=log))
                    if f1:
                        results["figures"]["1"] = f1
                        if mode == "full" or args.profile or (mode != "selftest" and (
                                not f1["goal"]["met_3ms"] or f1["goal"].get("below_peer") is False)):
                            log("profiling the dispatcher under warm load (py-spy) ...")
                            results["profile"] = guarded(
                                "profile", lambda: __import__("bench.profile", fromlist=["x"]).profile_dispatcher(
                                    s, seconds=8 if mode == "full" else 5, log=log))
                if 5 in only:
                    log(f"figure 5: scaling curve ({', '.join(map(str, size['f5']))} clients)")
                    results["figures"]["5"] = guarded("5", lambda: figures.scaling(s, floor, size["f5"], log=log))
        finally:
            if peer is not None:
                peer.stop()
            floor.stop()

    # -- figure 3: cold starts, process and Docker
    if 3 in only:
        n_proc, n_docker = size["f3"]
        log(f"figure 3: cold start, process backend ({n_proc} cold calls)")
        cold = {}
        try:
            with h.running_system("cp", MK1_BACKEND="process", **SYSTEM_COLD) as s:
                cold["process"] = guarded("3-process", lambda: figures.cold_start(s, "process", n_proc, log=log))
        except Exception as e:
            results["not_measured"]["3-process"] = f"failed: {e}"
            failures += 1
        ok, why = (False, "--no-docker") if args.no_docker else docker_works()
        if ok:
            log(f"figure 3: cold start, Docker backend ({n_docker} cold calls)")
            try:
                with h.running_system("cd", MK1_BACKEND="docker", **SYSTEM_COLD) as s:
                    import docker
                    from infra.image import ensure_image
                    image = ensure_image(docker.from_env(), progress=lambda m: None, settings=s.settings())
                    cold["docker"] = guarded("3-docker", lambda: figures.cold_start(
                        s, "docker", n_docker, docker_image=image, log=log))
            except Exception as e:
                results["not_measured"]["3-docker"] = f"not measured: the Docker backend failed to start ({e})"
        else:
            results["not_measured"]["3-docker"] = f"not measured: {why}"
            log(f"  Docker: not measured ({why})")
        results["figures"]["3"] = {k: v for k, v in cold.items() if v}

    # -- figure 4: the queue at depth
    if 4 in only:
        n = args.depth or size["f4"]
        log(f"figure 4: queue at depth ({n} calls at once, cap 3, 10 ms function)")
        try:
            with h.running_system("q", **SYSTEM_QUEUE) as s:
                results["figures"]["4"] = guarded("4", lambda: figures.queue_depth(
                    s, n, profile=mode == "full" or args.profile, stall_s=60 if mode == "full" else 30, log=log))
                # The same calls sent at twice the drain's ideal rate: still a queue (half of them wait
                # at the end), but no faster than the front door takes calls in, so what the queued
                # path costs a call is not hidden behind the intake of a burst sent all at once.
                log(f"figure 4p: {n} calls sent at {PACED_PER_S}/s")
                f4p = guarded("4p", lambda: figures.queue_depth(s, n, stall_s=60 if mode == "full" else 30,
                                                                 log=log, rate_per_s=PACED_PER_S))
                if f4p:
                    results["figures"]["4p"] = f4p
        except Exception as e:
            results["not_measured"]["4"] = f"failed: {e}"
            failures += 1
        f4 = results["figures"].get("4")
        if mode == "full" and not args.depth and f4 and not f4["goal"]["all_answered"]:
            # the figure failed at 1,000: measure the queue where it still works, for its other numbers
            log("figure 4 again at 500 calls (a depth below the failure), for FIFO, overhead and memory")
            try:
                with h.running_system("q5", **SYSTEM_QUEUE) as s:
                    f4b = guarded("4-500", lambda: figures.queue_depth(s, 500, stall_s=60, log=log))
                    if f4b:
                        results["figures"]["4b"] = f4b
            except Exception as e:
                results["not_measured"]["4-500"] = f"failed: {e}"

    # -- figure 6: cluster mode, two dispatchers on one moto, beside figures 1 and 2
    if 6 in only:
        reps, calls, tput = size["f6"]
        log(f"figure 6: cluster mode, 2 dispatchers ({reps} reps x {calls} warm calls, {tput} calls at the cap)")
        from .cluster import cluster_mode
        on_system("6", "cl", SYSTEM_CLUSTER, lambda s: cluster_mode(s, reps, calls, tput, results["figures"], log=log))

    # -- figure 7: an SQS event source mapping at the cap
    if 7 in only:
        n = size["f7"]
        log(f"figure 7: SQS event source mapping ({n} messages, batches of 100, 50 ms function, cap 3)")
        from .mappings import mapping_throughput
        on_system("7", "m", {**DEFAULTS, "MK1_BACKEND": "process"}, lambda s: mapping_throughput(s, n, log=log))

    # -- figure 8: SnapStart, a cold start by restore
    if 8 in only:
        n = size["f8"]
        log(f"figure 8: SnapStart cold starts ({n} restores per load, process backend)")
        from .snapstart import snapstart
        on_system("8", "ss", {**DEFAULTS, "MK1_BACKEND": "process", "MK1_KEEPALIVE_MS": "0"},
                  lambda s: snapstart(s, n, log=log))
        results["not_measured"]["8-docker"] = (
            "no restore on the docker backend (`docker checkpoint` needs an experimental engine and CRIU, "
            "which fails on this kernel: docs/FUNCTIONS.md): a SnapStart version "
            "starts there with a full init, so figure 3's Docker cold start is its cost")

    # -- figure 9: Lambda's HTTP side: streamed first byte, function URL overhead
    if 9 in only:
        n = size["f9"]
        log(f"figure 9: response streaming and function URLs ({n} warm URL calls)")
        from .http_side import http_side
        on_system("9", "hs", {**DEFAULTS, "MK1_BACKEND": "process"}, lambda s: http_side(s, n, log=log))

    results["seconds"] = round(time.monotonic() - t_start, 1)
    results["figures"] = {k: v for k, v in results["figures"].items() if v}
    name = {"full": "results-full.json", "quick": "results-quick.json", "selftest": "selftest.json"}[mode]
    if mode == "full" and only != ALL:   # a partial run must not pass for the last full one
        name = f"results-full-only-{'-'.join(map(str, sorted(only)))}.json"
    (OUT / name).write_text(json.dumps(results, indent=1))
    if mode != "selftest":   # results.json: the raw results of the latest full or quick run
        (OUT / "results.json").write_text(json.dumps(results, indent=1))
    print()
    print(report.table(results))
    if mode != "selftest" and not tools.get("matplotlib", "missing"):
        plot_dir = (h.ROOT / "docs" / "bench") if (mode == "full" and not args.no_docs) else (OUT / "plots")
        report.plot(OUT / name, plot_dir, log)
    if mode == "full" and not args.no_docs and only == ALL:   # the history is part of the docs
        report.write_doc(results, report.append_history(results))
        log("wrote docs/BENCHMARKS.md")
    log(f"\nresults: {(OUT / name).relative_to(h.ROOT)}  ({results['seconds']:.0f} s)")
    if mode == "selftest":
        f1 = results["figures"].get("1")
        good = bool(f1) and f1["variants"]["mk1_boto3"]["overhead_ms"]["n"] == 20
        log("selftest " + ("passed" if good else "FAILED"))
        return 0 if good else 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
