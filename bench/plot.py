"""Plots of a results file. Runs in the bench venv (matplotlib is not one of mk1's dependencies):

    .mk1/bench-venv/bin/python bench/plot.py RESULTS.json OUT_DIR
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {"direct": "direct handler call", "floor_http": "bare HTTP (stdlib, TCP_NODELAY)",
          "boto3_floor": "boto3 -> bare HTTP server", "mk1_signed": "mk1, signed http.client",
          "mk1_boto3": "mk1, boto3", "peer_http": "Ray Serve, http.client", "peer_boto3": "Ray Serve, boto3",
          "floor_http_peer_phase": "bare HTTP (peer phase)", "boto3_floor_peer_phase": "boto3 -> bare (peer phase)"}
MK1, FLOOR, PEER = "#1f77b4", "#7f7f7f", "#ff7f0e"


def color(name: str) -> str:
    return MK1 if name.startswith("mk1") else PEER if name.startswith("peer") else FLOOR


def fig1(f, out: Path, title_suffix: str) -> str:
    names = list(f["variants"])
    med = [f["variants"][n]["overhead_ms"]["median"] for n in names]
    p99 = [f["variants"][n]["overhead_ms"]["p99"] for n in names]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    y = range(len(names))
    ax.barh(y, med, color=[color(n) for n in names], label="median")
    ax.scatter(p99, y, marker="|", s=200, color="black", label="p99", zorder=3)
    for i, m in enumerate(med):
        ax.text(m, i, f" {m:.2f}", va="center", fontsize=8)
    ax.axvline(3.0, color="red", ls="--", lw=1, label="goal: 3 ms")
    ax.set_yticks(list(y), [LABELS.get(n, n) for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("latency minus the handler's own time (ms)")
    ax.set_title(f"1. Warm call overhead, no-op function, free slot{title_suffix}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = out / "fig1_warm_overhead.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def fig2(f, out: Path, title_suffix: str) -> str:
    names = list(f["targets"])
    rates = [f["targets"][n]["calls_per_s"]["median"] for n in names]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    label = {"mk1": "mk1", "floor": "bare HTTP + semaphore(3)", "peer": "Ray Serve"}
    ax.bar([label.get(n, n) for n in names], rates, color=[MK1 if n == "mk1" else PEER if n == "peer" else FLOOR
                                                          for n in names])
    ideal = f["ideal_calls_per_s"]
    ax.axhline(ideal, color="black", lw=1, label=f"ideal {ideal:.0f}/s")
    ax.axhline(0.97 * ideal, color="red", ls="--", lw=1, label="goal 0.97 x ideal")
    for i, r in enumerate(rates):
        ax.text(i, r, f"{r:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("calls/s")
    ax.set_title(f"2. Throughput at the cap (cap 3, 50 ms, {f['clients']} clients){title_suffix}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = out / "fig2_throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def fig3(f, out: Path, title_suffix: str) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    labels, vals, cols, goals = [], [], [], []
    for backend, limit in (("process", 100), ("docker", 500)):
        c = f.get(backend)
        if not c:
            continue
        labels += [f"{backend}\nfloor", f"{backend}\nmk1"]
        vals += [c["floor_ms"]["median"], c["overhead_ms"]["median"]]
        cols += [FLOOR, MK1]
        goals.append((len(labels) - 1, limit))
    ax.bar(labels, vals, color=cols)
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
    for i, limit in goals:
        ax.hlines(limit, i - 0.4, i + 0.4, colors="red", linestyles="--", lw=1)
        ax.text(i + 0.42, limit, f"goal {limit}", color="red", fontsize=7, va="center")
    ax.set_ylabel("ms over load()")
    ax.set_title(f"3. Cold start: call-to-answer minus load(){title_suffix}", fontsize=10)
    fig.tight_layout()
    path = out / "fig3_cold_start.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def fig4(f, out: Path, title_suffix: str, name: str = "fig4_queue.png") -> str | None:
    series = f.get("series")
    if not series:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = list(range(len(series)))
    a.plot(xs, [s[1] for s in series], ".", ms=2, color=MK1)
    a.set_xlabel("order the calls entered the dispatcher")
    a.set_ylabel("start of execution (s after the first entry)")
    a.set_title("FIFO: start time by entry order", fontsize=10)
    b.plot(xs, [s[2] / 1000 for s in series], ".", ms=2, color=MK1)
    b.set_xlabel("order the calls entered the dispatcher")
    b.set_ylabel("wait for a slot (s)")
    b.set_title(f"wait; drain {f.get('drain_calls_per_s')} of {f.get('ideal_calls_per_s'):.0f} calls/s",
                fontsize=10)
    stalled = f" — {f['answered_ok']} answered, then STALLED" if f.get("stalled") else ""
    fig.suptitle(f"4. {f['calls']} calls at once, cap 3, 10 ms function{stalled}{title_suffix}", fontsize=11)
    fig.tight_layout()
    path = out / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def fig5(f, out: Path, title_suffix: str) -> str:
    pts = f["points"]
    c = [p["clients"] for p in pts]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(c, [p["calls_per_s"] for p in pts], "o-", color=MK1, label="mk1")
    a.plot(c, [p["ideal_calls_per_s"] for p in pts], "--", color="black", lw=1, label="ideal min(c,3)/50 ms")
    if all(p.get("floor") for p in pts):
        a.plot(c, [p["floor"]["calls_per_s"] for p in pts], "s:", color=FLOOR, label="floor (same harness)")
    a.set_xscale("log")
    a.set_xlabel("concurrent clients")
    a.set_ylabel("calls/s")
    a.set_title("throughput", fontsize=10)
    a.legend(fontsize=8)
    b.plot(c, [p["non_wait_overhead_ms"]["median"] for p in pts], "o-", color=MK1, label="median")
    b.plot(c, [p["non_wait_overhead_ms"]["p99"] for p in pts], "s:", color=MK1, label="p99")
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("concurrent clients")
    b.set_ylabel("ms")
    b.set_title("overhead: latency - queue wait - handler", fontsize=10)
    b.legend(fontsize=8)
    fig.suptitle(f"5. Scaling, cap 3, 50 ms function{title_suffix}", fontsize=11)
    fig.tight_layout()
    path = out / "fig5_scaling.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def main() -> int:
    results = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if results.get("mode") == "full" else f" [{results.get('mode')}]"
    made = []
    fig4b = lambda f, o, t: fig4(f, o, t, "fig4b_queue_500.png")  # noqa: E731
    fig4p = lambda f, o, t: fig4(f, o, t, "fig4p_queue_paced.png")  # noqa: E731
    for key, fn in (("1", fig1), ("2", fig2), ("3", fig3), ("4", fig4), ("4b", fig4b), ("4p", fig4p), ("5", fig5)):
        f = results.get("figures", {}).get(key)
        if f:
            name = fn(f, out, suffix)
            if name:
                made.append(name)
    print(", ".join(made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
