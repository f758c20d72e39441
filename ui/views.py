"""How the UI draws things: each function renders one part of the page with Streamlit.

Nothing here talks to the dispatcher; ui/data.py does. Tables and charts stay one
column wide so the page reads well in a narrow window.
"""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from ui import data
from ui.data import Answer

COLORS = {"RuntimeAlpha": "#4c78a8", "RuntimeBeta": "#f58518"}
STATUS_ORDER = (data.OK, data.FUNCTION_ERROR, data.DENIED, data.THROTTLED, data.UNAUTHENTICATED,
                data.UNREACHABLE, data.ERROR)


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def _start(a: Answer) -> str:
    """'warm', or a cold start's init time in ms ('' for a call that did not run)."""
    if a.cold is None:
        return ""
    return f"{a.init_ms:.1f}" if a.cold and a.init_ms is not None else ("cold" if a.cold else "warm")


def answers_table(answers: list[Answer]) -> pd.DataFrame:
    rows = [{"#": a.index + 1, "runtime": a.runtime, "status": a.status, "response": a.text,
             "duration ms": _ms(a.duration_ms), "wait ms": _ms(a.wait_ms), "cold start ms": _start(a),
             "container": a.container or "", "request id": a.request_id}
            for a in sorted(answers, key=lambda a: a.index)]
    return pd.DataFrame(rows, columns=["#", "runtime", "status", "response", "duration ms", "wait ms",
                                       "cold start ms", "container", "request id"])


def answers(slot, answers: list[Answer], total: int, calls: list | None = None) -> None:
    """The results table and a one-line count, redrawn as each answer arrives; while the batch runs,
    the calls still out have a row each ("waiting": queued for a slot, starting or running)."""
    with slot.container():
        counts = data.summary(answers)
        order = list(STATUS_ORDER) + sorted(set(counts) - set(STATUS_ORDER))
        parts = [f"{counts[s]} {s}" for s in order if s in counts]
        out = total - len(answers)
        st.markdown(f"**{len(answers)} of {total} answers**" + (f" — {', '.join(parts)}" if parts else "")
                    + (f" — {out} still waiting" if out and calls is not None else ""))
        table = answers_table(answers)
        if calls is not None and out:
            done = {a.index for a in answers}
            pending = pd.DataFrame([{"#": i + 1, "runtime": runtime, "status": "⏳ waiting",
                                     "response": "waiting for a slot, starting or running"}
                                    for i, (runtime, _prompt) in enumerate(calls) if i not in done],
                                   columns=table.columns)
            table = pd.concat([table, pending], ignore_index=True) if len(table) else pending
        if len(table):
            st.dataframe(table, hide_index=True, column_config={
                # the ids whole (a user looks them up in `mk1 logs` and the usage records); a longer
                # response is cut, and shown whole when its cell is opened
                "#": st.column_config.NumberColumn(width=40),
                "response": st.column_config.TextColumn(width=230),
                "container": st.column_config.TextColumn(width=185),
                "request id": st.column_config.TextColumn(width=290)})


def messages(slot, answers: list[Answer], user: str) -> None:
    """One clear message per kind of failure (and runtime), never a stack trace."""
    groups: dict[tuple[str, str], list[Answer]] = {}
    for a in answers:
        if a.status != data.OK:
            groups.setdefault((a.status, a.runtime), []).append(a)
    with slot.container():
        for (status, runtime), items in groups.items():
            n = len(items)
            calls = f"{n} call{'s' if n != 1 else ''}"
            if status == data.DENIED:
                st.error(f"**{user} is not allowed to invoke {runtime}** — {calls} refused "
                         f"(AccessDeniedException). Choose a user whose policy allows it "
                         f"(user1: RuntimeAlpha, user2: RuntimeBeta, admin: both).", icon=":material/block:")
            elif status == data.THROTTLED:
                st.warning(f"**{runtime} is throttled** — {calls} got 429 TooManyRequests and did not run. "
                           f"Retry shortly, or ask for fewer calls at once.\n\n{items[0].text}",
                           icon=":material/traffic:")
            elif status == data.UNREACHABLE:
                st.error(f"**Cannot reach mk1** — {calls} to {runtime} failed: {items[0].text}",
                         icon=":material/power_off:")
            elif status == data.FUNCTION_ERROR:
                st.error(f"**{runtime} failed** in {calls}: {items[0].text}", icon=":material/bug_report:")
            else:
                st.error(f"**{runtime}**: {calls} failed: {items[0].text}", icon=":material/error:")


def progress(slot, done: int, total: int) -> None:
    slot.progress(done / total if total else 1.0, text=f"{done} of {total} calls answered")


PHASE_COLORS = {data.WAIT: "#c7c7c7", data.INIT: "#9ecae9", data.RUN: "#2f6fa8"}


def timeline(spans: list[dict], source: str, reserved: dict[str, int]) -> None:
    """The Gantt chart of the batch's executions per container (queue wait, cold start, run, with a
    legend), and the peak concurrency."""
    if not spans:
        st.info("No execution to draw: no call of this batch ran.")
        return
    df = pd.DataFrame(spans)
    containers = sorted(df["container"].unique())
    chart = alt.Chart(df).mark_bar(cornerRadius=2, height={"band": 0.7}).encode(
        x=alt.X("start_s:Q", title="seconds from the batch's first call"),
        x2="end_s:Q",
        y=alt.Y("container:N", sort=containers, title=None, axis=alt.Axis(labelLimit=170)),
        color=alt.Color("phase:N", scale=alt.Scale(domain=list(PHASE_COLORS), range=list(PHASE_COLORS.values())),
                        legend=alt.Legend(orient="top", title=None)),
        tooltip=["runtime", "container", "phase", "request_id", "status",
                 alt.Tooltip("start_s:Q", title="start s", format=".3f"),
                 alt.Tooltip("end_s:Q", title="end s", format=".3f"),
                 "duration_ms", "init_ms", "wait_ms"],
    ).properties(height=alt.Step(30))
    st.altair_chart(chart, width="stretch")
    peaks = data.max_concurrent_by_runtime(spans)
    text = ", ".join(f"{rt} {n}" + (f" (reserved {reserved[rt]})" if rt in reserved else "")
                     for rt, n in peaks.items())
    st.markdown(f"**max concurrent per runtime: {text}**")
    st.caption(f"Bars from {source}. A call that waited for a slot is drawn on the container that then ran "
               "it: grey while it waited in the function's queue, light blue while the container started "
               "(cold start), dark while it ran. Rows are containers; their names say the runtime.")


def pool(status: dict | None) -> None:
    """Per function: reserved concurrency, in use, waiting, queue depth; then the containers."""
    if not status:
        st.info("The dispatcher's status is not available.")
        return
    fns, queues = status.get("functions", {}), status.get("queues", {})
    rows, conts = [], []
    for name, f in sorted(fns.items()):
        q = queues.get(name) or {}
        rows.append({"function": name, "reserved": f.get("reserved_concurrency"), "in use": f.get("in_use"),
                     "waiting": f.get("waiting"), "containers": len(f.get("containers") or []),
                     "cold starts": f.get("cold_starts"), "queue visible": q.get("visible"),
                     "queue in flight": q.get("NotVisible"), "queue delayed": q.get("Delayed")})
        for c in f.get("containers") or []:
            conts.append({"function": name, "container": c.get("id"), "state": c.get("state"),
                          "init ms": c.get("init_ms"), "invocations": c.get("invocations"),
                          "idle s": c.get("idle_s"), "age s": c.get("age_s"), "backend": c.get("backend")})
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    if conts:
        st.dataframe(pd.DataFrame(conts), hide_index=True)
    else:
        st.caption("No container is running: the next call of each function is a cold start.")
    mappings(status.get("mappings") or [])


def mappings(items: list[dict]) -> None:
    """The SQS event source mappings mk1 polls: state, batches running, backlog."""
    if not items:
        return
    st.markdown("##### Event source mappings (SQS)")
    st.dataframe(pd.DataFrame([{"mapping": m.get("uuid", "")[:8], "queue": (m.get("source") or "").split(":")[-1],
                                "function": m.get("function"), "state": m.get("state"),
                                "batches running": m.get("in_flight_batches"), "backlog": m.get("backlog"),
                                "batches done": m.get("batches"), "messages deleted": m.get("deleted")}
                               for m in items]), hide_index=True)


def usage_records(records: list[dict]) -> None:
    if not records:
        st.info("No usage records match.")
        return
    cols = ["start", "user", "function", "status", "duration_ms", "billed_ms", "init_ms", "wait_ms",
            "container_id", "invocation_type", "request_id"]
    df = pd.DataFrame(records)
    st.dataframe(df[[c for c in cols if c in df.columns]].iloc[::-1], hide_index=True)
    st.caption(f"{len(records)} records, newest first.")


def usage_over_time(records: list[dict]) -> None:
    """Invocations per time bucket, and each invocation's duration, by function."""
    if not records:
        st.info("No usage records match.")
        return
    df = pd.DataFrame(records)
    df["time"] = pd.to_datetime(df["start"], utc=True)
    span_s = (df["time"].max() - df["time"].min()).total_seconds()
    unit, fmt = (("utcyearmonthdatehoursminutesseconds", "%H:%M:%S") if span_s < 900
                 else ("utcyearmonthdatehoursminutes", "%H:%M") if span_s < 86400 * 2
                 else ("utcyearmonthdatehours", "%b %d %H:00"))
    color = alt.Color("function:N", scale=alt.Scale(domain=list(COLORS), range=list(COLORS.values())),
                      legend=alt.Legend(orient="top", title=None))
    x_axis = alt.Axis(format=fmt, labelOverlap=True, title="start (UTC)")
    # Ordinal buckets: on a continuous time axis a one-second bar over a span of minutes is a hairline.
    count = alt.Chart(df).mark_bar().encode(
        x=alt.X(f"{unit}(time):O", axis=alt.Axis(format=fmt, labelOverlap=True, title="start (UTC)", labelAngle=0)),
        y=alt.Y("count():Q", title="invocations"),
        color=color, tooltip=["function", alt.Tooltip(f"{unit}(time):T", title="at", format=fmt),
                              alt.Tooltip("count():Q", title="invocations")]).properties(height=240)
    dur = alt.Chart(df).mark_circle(size=45, opacity=0.8).encode(
        x=alt.X("time:T", axis=x_axis), y=alt.Y("duration_ms:Q", title="duration ms"),
        color=color, tooltip=["function", "user", "status", "start", "duration_ms", "init_ms", "request_id"]
    ).properties(height=240)
    st.markdown("Invocations over time")
    st.altair_chart(count, width="stretch")
    st.markdown("Duration of each invocation")
    st.altair_chart(dur, width="stretch")


def billing(rep: dict) -> None:
    rows = rep.get("rows") or []
    if not rows:
        st.info("Nothing billed yet.")
        return
    df = pd.DataFrame(rows)
    st.dataframe(df, hide_index=True, column_config={
        "estimated_cost_usd": st.column_config.NumberColumn("estimated cost (USD)", format="%.8f")})
    total = sum(r.get("estimated_cost_usd", 0) for r in rows)
    st.markdown(f"**Estimated total: ${total:.8f}** for {sum(r.get('invocations', 0) for r in rows)} invocations")
    st.caption(f"Prices: ${rep.get('price_gb_second', 0):.10f} per GB-second, "
               f"${rep.get('price_per_request', 0):.7f} per request (AWS x86 list prices).")
