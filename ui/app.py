"""mk1's UI: invoke RuntimeAlpha and RuntimeBeta as a user and watch the system work.

    make up                                  # starts it on http://127.0.0.1:MK1_UI_PORT
    python -m streamlit run ui/app.py        # or on its own, next to a running dispatcher

Settings (MK1_HOME, MK1_ENDPOINT, ...) are read on every run. ui/data.py talks to mk1,
ui/views.py draws; this file only lays the page out.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from ui import data, views  # noqa: E402

st.set_option("client.toolbarMode", "minimal")    # a local tool: no "Deploy" button
st.set_page_config(page_title="mk1", page_icon=":material/function:", layout="wide")
st.title("mk1 — a local Lambda")

url = data.endpoint()
h = data.health(url)
up = h is not None and h.get("status") == "ok"
if h is None:
    st.error(f"**The dispatcher is not running** (nothing answers at {url}). {data.START_HINT}",
             icon=":material/power_off:")
elif not up:
    st.warning(f"The dispatcher at {url} is still starting; reload this page in a moment.",
               icon=":material/hourglass_top:")
else:
    st.caption(f"Dispatcher {url} · backend **{h.get('backend')}** · functions: "
               f"{', '.join(h.get('functions') or [])}")


def fetch_status() -> dict | None:
    try:
        return data.status(url) if up else None
    except data.Unreachable:
        return None


# -- the controls ---------------------------------------------------------------------------
st.subheader("Invoke")
if data.beyond_loopback(st.get_option("server.address")):
    # Served to other machines: nobody picks a user from this machine's key file; callers bring theirs.
    c_key, c_secret = st.columns(2)
    user = data.KeyUser(c_key.text_input("Access key id", key="akid"),
                        c_secret.text_input("Secret access key", type="password", key="secret"))
else:
    user = st.selectbox("User", data.USERS, key="user",
                        help="user1 may invoke RuntimeAlpha, user2 RuntimeBeta, admin both.")
col_a, col_b = st.columns(2)
with col_a:
    n_alpha = st.number_input("RuntimeAlpha invocations", min_value=0, max_value=data.MAX_CALLS, value=2,
                              step=1, key="n_alpha")
    p_alpha = st.text_input("RuntimeAlpha prompt", "hello world", key="p_alpha")
with col_b:
    n_beta = st.number_input("RuntimeBeta invocations", min_value=0, max_value=data.MAX_CALLS, value=2,
                             step=1, key="n_beta")
    p_beta = st.text_input("RuntimeBeta prompt", "the quick brown fox", key="p_beta")
clicked = st.button("Invoke runtimes", type="primary", key="invoke")

batch_box = st.container()
st.subheader("Container pool")
st.button("Refresh status", key="refresh", help="Read /mk1/status again (it also refreshes during a batch).")
pool_slot = st.empty()


def batch_slots():
    with batch_box:
        return st.empty(), st.empty(), st.empty(), st.container()


def show_timeline(box, batch: dict, status: dict | None) -> None:
    reserved = {n: f.get("reserved_concurrency") for n, f in ((status or {}).get("functions") or {}).items()
                if f.get("reserved_concurrency") is not None}
    with box:
        st.markdown("##### Timeline of the batch (per container)")
        views.timeline(batch["spans"], batch["source"], reserved)


# -- a new batch: run it, drawing each answer as it arrives ------------------------------------
batch, tl_box = None, None
if clicked:
    calls = data.plan(n_alpha, p_alpha, n_beta, p_beta)
    st.session_state.pop("batch", None)
    if not calls:
        with batch_box:
            st.info("Ask for at least one invocation of RuntimeAlpha or RuntimeBeta.")
    else:
        prog, msgs, table, tl_box = batch_slots()
        views.progress(prog, 0, len(calls))
        views.answers(table, [], len(calls), calls)   # a row per call from the start: waiting
        got: list[data.Answer] = []
        started, last_status = time.time(), 0.0
        for answer in data.run_batch(user, calls, url):
            if answer is not None:
                got.append(answer)
                views.progress(prog, len(got), len(calls))
                views.messages(msgs, got, user)
                views.answers(table, got, len(calls), calls)
            if up and time.monotonic() - last_status > 0.5:    # the pool, live while the batch runs
                last_status = time.monotonic()
                with pool_slot.container():
                    views.pool(fetch_status())
        ran = [a.request_id for a in got if a.container]
        with tl_box:
            with st.spinner("Reading the usage records of the batch ..."):
                records = data.batch_records(user, ran, started, url=url) if up and ran else []
        spans, source = data.timeline(got, records)
        batch = st.session_state["batch"] = {"user": user, "total": len(calls), "answers": got,
                                             "spans": spans, "source": source}
elif "batch" in st.session_state:      # any other rerun: the last batch stays on the page
    batch = st.session_state["batch"]
    prog, msgs, table, tl_box = batch_slots()
    views.progress(prog, len(batch["answers"]), batch["total"])
    views.messages(msgs, batch["answers"], batch["user"])
    views.answers(table, batch["answers"], batch["total"])

status = fetch_status()
if batch is not None:
    show_timeline(tl_box, batch, status)
with pool_slot.container():
    if up:
        views.pool(status)
    else:
        st.info("Start the dispatcher to see its containers and queues.")

# -- usage and billing ----------------------------------------------------------------------
st.subheader("Usage and billing")
if not up:
    st.info("Start the dispatcher to see usage records and the billing report.")
else:
    if isinstance(user, data.KeyUser):
        who = "all users"   # the dispatcher answers each key its own user's records (admin's: all)
        st.caption("Usage of the key's user (admin's key: everyone's).")
    elif user == "admin":
        who = st.selectbox("Records of user", ["all users", *data.USERS], key="usage_user_admin")
    else:
        who = st.selectbox("Records of user", [user], key=f"usage_user_{user}", disabled=True,
                           help="A user sees only their own usage (the dispatcher enforces it); admin sees all.")
    fn = st.selectbox("Function", ["all functions", *data.RUNTIMES], key="usage_function")
    window = st.selectbox("Time window", list(data.WINDOWS), index=1, key="usage_window")
    q = {"who": "" if who == "all users" else who, "function": "" if fn == "all functions" else fn,
         "since": data.window_start(window)}
    try:
        records = data.usage(user, url=url, **q)
        rep = data.report(user, url=url, **q)
    except Exception as e:  # noqa: BLE001 - shown as a message, never a traceback
        st.error(f"Could not read the usage as {user}: {e}", icon=":material/receipt_long:")
    else:
        tab_rec, tab_time, tab_bill = st.tabs(["Usage records", "Over time", "Billing report"])
        with tab_rec:
            views.usage_records(records)
        with tab_time:
            views.usage_over_time(records)
        with tab_bill:
            views.billing(rep)

# -- function URLs ---------------------------------------------------------------------------
st.subheader("Function URLs")
if not up:
    st.info("Start the dispatcher to call function URLs.")
else:
    urls = data.function_urls(status)
    if not urls:
        st.caption("No function URL yet: `awslocal lambda create-function-url-config --function-name NAME "
                   "--auth-type NONE` makes one (docs/FUNCTIONS.md).")
    else:
        labels = [f"{u['function']}{':' + u['qualifier'] if u['qualifier'] else ''} · {u['auth_type']} · "
                  f"{u['invoke_mode']}" for u in urls]
        pick = st.selectbox("URL", range(len(urls)), format_func=lambda i: labels[i], key="url_pick")
        chosen = urls[pick]
        st.caption(f"{chosen['url']}" + (f" · signed as **{user}**" if chosen["auth_type"] == "AWS_IAM" else ""))
        c_method, c_path = st.columns([1, 3])
        method = c_method.selectbox("Method", ["GET", "POST", "PUT", "DELETE"], key="url_method")
        path = c_path.text_input("Path and query", "/", key="url_path")
        body = st.text_area("Body", "", key="url_body", height=68)
        if st.button("Call URL", key="url_call"):
            try:
                code, headers, chunks = data.call_url(chosen["url"], method, path, body,
                                                      user if chosen["auth_type"] == "AWS_IAM" else None)
            except Exception as e:  # noqa: BLE001 - shown as a message, never a traceback
                st.error(f"The URL did not answer: {e}", icon=":material/link_off:")
            else:
                streamed = headers.get("transfer-encoding", "").lower() == "chunked"
                st.markdown(f"**HTTP {code}** · {headers.get('content-type', '')}"
                            + (" · streamed: shown as it arrives" if streamed else ""))
                with st.container(key="url_answer"):
                    shown, text = st.empty(), ""
                    for piece in chunks:   # redrawn at each chunk: the answer as it arrives
                        text += piece.decode("utf-8", "replace")
                        shown.code(text, language=None, wrap_lines=True)
