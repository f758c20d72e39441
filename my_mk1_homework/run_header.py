"""X-Mk1-Run: how mk1 ran a call, in one answer header beside Lambda's own.

    X-Mk1-Run: container=RuntimeAlpha-0001-08134f; cold=false; duration-ms=0.412; wait-ms=0.000;
               started-at=1796162400.123456; dispatcher=0123456789abcdef; init-ms=201.532

container   the container (process or Docker) that ran it
cold        "true" if that container started for this call
duration-ms the function's time, from the event going out to its answer coming in
wait-ms     time queued for a free slot of the function's reserved concurrency
started-at  when it began executing (epoch seconds, the dispatcher's clock): with the durations,
            the span its usage record will show, for clients that draw timelines before the record
            is written
dispatcher  which dispatcher ran it (cluster mode runs several)
init-ms     the container's init, on cold calls only

One header rather than one per field: a boto3 client pays ~10 us for every header of an answer it
parses (measured per call, interleaved: six X-Mk1-* headers added 66 us to a boto3 call, the same
fields in this one 21 us). Values never hold ";" or "=".
"""
from __future__ import annotations

from collections.abc import Mapping

NAME = "X-Mk1-Run"


def format_run(fields: Mapping[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in fields.items())


def parse_run(value: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (value or "").split(";"):
        key, eq, val = part.partition("=")
        if eq and key.strip():
            out[key.strip()] = val.strip()
    return out


def run_of(headers: Mapping[str, str]) -> dict[str, str]:
    """The fields of an answer's X-Mk1-Run (headers by lower-case name, as botocore's HTTPHeaders)."""
    return parse_run(headers.get(NAME.lower()))


def number(fields: Mapping[str, str], key: str) -> float | None:
    try:
        return float(fields[key])
    except (KeyError, ValueError):
        return None
