"""The embedded AWS's process: moto's own server, with two of its per-request costs taken out.

    python -m infra.moto_server -H 127.0.0.1 -p 4566      (the same flags as `moto_server`)

Profiled at the cap (figure 2 of the benchmarks: 30 clients, every waiting call a message in SQS),
moto burned 12-15 ms of CPU per call on the same 2 cores as the dispatcher and the functions, and
two spots of moto 5.2 took ~40 % of it, neither doing anything a user could observe:

- every ReceiveMessage checks each message it returns against the queue's retention period by
  calling `get_queue_attributes`, which builds the queue's whole attribute map three times, and
  each build counts the queue's visible, in-flight and delayed messages (three scans of the queue,
  a clock read per message). Here the retention period is read straight off the queue: the same
  value (`MessageRetentionPeriod`, an int once set), the same comparison.
- every SendMessage reads one attribute through the same whole-map build, and the counts scan
  the queue calling moto's clock for each message (two datetimes per reading). SQS's clock for
  "now" is read as time.time() instead: the same instant, without the datetimes.
- every request lists moto's package folder (listdir + ~150 isdir) to learn its service names,
  and lists its response class's methods (inspect.getmembers); neither the installed package nor
  the classes change while the server runs, so each is read once.

Each patch checks that the code it replaces is what it expects (moto is pinned in constraints.txt)
and otherwise leaves moto as it is: mk1 then runs slower, never differently.
"""
from __future__ import annotations

import inspect
import logging
import sys
import time

log = logging.getLogger("mk1.moto")


def _fix_retention_check() -> bool:
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    original = SQSBackend.is_message_valid_based_on_retention_period
    if getattr(original, "mk1", False):
        return True
    if "get_queue_attributes" not in inspect.getsource(original):
        return False

    def is_message_valid_based_on_retention_period(self, queue_name: str, message) -> bool:
        retention_period = int(self.get_queue(queue_name).message_retention_period)
        return retention_period + message.sent_timestamp / 1000 > unix_time()

    is_message_valid_based_on_retention_period.mk1 = True   # type: ignore[attr-defined]
    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period
    return True


def _cache_module_list() -> bool:
    from moto import backends

    original = backends.list_of_moto_modules
    if getattr(original, "mk1", False):
        return True
    if "listdir" not in inspect.getsource(original):
        return False
    names = tuple(original())

    def list_of_moto_modules() -> tuple[str, ...]:
        return names

    list_of_moto_modules.mk1 = True   # type: ignore[attr-defined]
    backends.list_of_moto_modules = list_of_moto_modules
    return True


def _fast_sqs_clock() -> bool:
    from moto.sqs import models

    if getattr(models.unix_time, "mk1", False):
        return True
    slow_s, slow_ms = models.unix_time, models.unix_time_millis
    if slow_s.__module__ != "moto.core.utils" or slow_ms.__module__ != "moto.core.utils":
        return False

    def unix_time(dt=None) -> float:
        return time.time() if dt is None else slow_s(dt)

    def unix_time_millis(dt=None) -> float:
        return time.time() * 1000.0 if dt is None else slow_ms(dt)

    unix_time.mk1 = unix_time_millis.mk1 = True   # type: ignore[attr-defined]
    models.unix_time, models.unix_time_millis = unix_time, unix_time_millis
    return True


def _cache_method_names() -> bool:
    from moto.core import responses

    original = responses.method_names_from_class
    if getattr(original, "mk1", False):
        return True
    if "getmembers" not in inspect.getsource(original):
        return False
    cache: dict[type, list[str]] = {}

    def method_names_from_class(clazz) -> list[str]:
        names = cache.get(clazz)
        if names is None:
            names = cache[clazz] = original(clazz)
        return list(names)

    method_names_from_class.mk1 = True   # type: ignore[attr-defined]
    responses.method_names_from_class = method_names_from_class
    return True


PATCHES = {"sqs-retention-check": _fix_retention_check, "sqs-clock": _fast_sqs_clock,
           "service-list": _cache_module_list, "response-methods": _cache_method_names}


def apply() -> dict[str, bool]:
    """Apply what still fits the installed moto; {patch: applied}."""
    applied = {}
    for name, patch in PATCHES.items():
        try:
            applied[name] = patch()
        except Exception as e:   # a moto that moved on: run it unpatched
            log.warning("moto patch %s not applied: %s", name, e)
            applied[name] = False
    return applied


def main(argv: list[str] | None = None) -> None:
    applied = apply()
    skipped = [n for n, ok in applied.items() if not ok]
    if skipped:
        print(f"mk1: moto runs without these speed-ups (its code changed): {', '.join(skipped)}",
              file=sys.stderr, flush=True)
    from moto.server import main as moto_main
    moto_main(argv)


if __name__ == "__main__":
    main()
