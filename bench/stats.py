"""Small statistics helpers (no numpy in mk1's venv on purpose)."""
from __future__ import annotations

import math
from typing import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """Linear-interpolated percentile, q in [0, 100]."""
    xs = sorted(values)
    if not xs:
        return None
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: Iterable[float]) -> dict:
    xs = [float(v) for v in values]
    if not xs:
        return {"n": 0, "median": None, "p99": None, "mean": None, "min": None, "max": None}
    return {"n": len(xs), "median": round(percentile(xs, 50), 4), "p99": round(percentile(xs, 99), 4),
            "mean": round(sum(xs) / len(xs), 4), "min": round(min(xs), 4), "max": round(max(xs), 4)}


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def fmt(v, digits: int = 2, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


def inversions(seq: list[float]) -> int:
    """Pairs i < j with seq[i] > seq[j] (merge sort, O(n log n)); ties are not inversions."""
    def sort(xs: list[float]) -> tuple[list[float], int]:
        if len(xs) <= 1:
            return xs, 0
        mid = len(xs) // 2
        left, a = sort(xs[:mid])
        right, b = sort(xs[mid:])
        merged, count, i, j = [], a + b, 0, 0
        while i < len(left) and j < len(right):
            if left[i] <= right[j]:
                merged.append(left[i])
                i += 1
            else:
                merged.append(right[j])
                count += len(left) - i
                j += 1
        merged.extend(left[i:])
        merged.extend(right[j:])
        return merged, count
    return sort(list(seq))[1]


def cores_by_phase(samples: list[tuple[float, dict[str, float]]], at: float) -> dict:
    """Cores each process kept busy before and after the instant `at`, from samples of
    (time, {name: CPU seconds used so far}) taken through a run: a name's CPU seconds over the
    phase's seconds. The phases meet at the first sample taken at or after `at`; a phase with
    fewer than two samples is left out."""
    samples = sorted(samples, key=lambda s: s[0])
    cut = next((i for i, (t, _) in enumerate(samples) if t >= at), len(samples) - 1)
    out = {}
    for phase, part in (("during", samples[:cut + 1]), ("after", samples[cut:])):
        if len(part) < 2 or part[-1][0] <= part[0][0]:
            continue
        (t0, first), (t1, last) = part[0], part[-1]
        out[phase] = {name: round((last[name] - first.get(name, 0.0)) / (t1 - t0), 2) for name in last}
        out[phase]["seconds"] = round(t1 - t0, 2)
    return out


def fmt_shares(phase: dict) -> str:
    """One phase of cores_by_phase, each process's cores: "dispatcher 0.70, moto 0.41, ..."."""
    return ", ".join(f"{name} {fmt(v)}" for name, v in phase.items() if name not in ("machine", "seconds"))
