"""The benchmark's statistics: the figures' goals (FIFO kept, medians, p99) rest on these."""
import random

from bench.stats import cores_by_phase, inversions, percentile, ratio, summary


def _brute_inversions(xs):
    return sum(1 for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[i] > xs[j])


def test_inversions_match_the_definition_ties_included():
    rng = random.Random(7)
    for n in (0, 1, 2, 3, 10, 57, 200):
        for _ in range(5):
            xs = [rng.choice(range(max(1, n // 3))) for _ in range(n)]   # many ties
            assert inversions(xs) == _brute_inversions(xs), xs
    assert inversions([1, 2, 3]) == 0 and inversions([3, 2, 1]) == 3 and inversions([2, 2, 2]) == 0


def test_inversions_do_not_reorder_the_callers_list():
    xs = [3.0, 1.0, 2.0]
    inversions(xs)
    assert xs == [3.0, 1.0, 2.0]


def test_percentile_interpolates_between_ranks():
    assert percentile([], 50) is None and percentile([4.0], 99) == 4.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(range(101), 99) == 99
    assert abs(percentile([0, 10], 99) - 9.9) < 1e-9
    assert percentile([5, 1, 3], 0) == 1 and percentile([5, 1, 3], 100) == 5   # unsorted input


def test_summary_and_ratio_of_nothing_say_so():
    assert summary([])["median"] is None and summary([])["n"] == 0
    s = summary([1, 2, 3, 4, 100])
    assert (s["n"], s["median"], s["min"], s["max"], s["mean"]) == (5, 3.0, 1.0, 100.0, 22.0)
    assert ratio(1.0, 0) is None and ratio(None, 2.0) is None and ratio(1.0, 3.0) == 0.333


def test_cores_by_phase_splits_at_the_first_sample_past_the_instant():
    # a process busy on 2 cores for 1 s, then on half a core for 2 s; sampled every 0.5 s
    samples, used = [], 0.0
    for k in range(7):
        t = k * 0.5
        samples.append((t, {"p": used, "q": t * 0.1}))
        used += 1.0 if t < 1.0 else 0.25
    got = cores_by_phase(list(reversed(samples)), at=0.9)   # cut at t = 1.0
    assert got["during"] == {"p": 2.0, "q": 0.1, "seconds": 1.0}
    assert got["after"] == {"p": 0.5, "q": 0.1, "seconds": 2.0}
    # an instant past the last sample: everything before it, nothing after
    assert set(cores_by_phase(samples, at=9.0)) == {"during"}
    assert cores_by_phase(samples[:1], at=0.0) == {}
