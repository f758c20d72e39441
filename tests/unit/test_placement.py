from chalicelib.assign.placement import Candidate, idle_to_stop, pick, pick_round_robin, pick_warm_first

A, B, C = Candidate("a", 1, 10.0), Candidate("b", 2, 30.0), Candidate("c", 3, 20.0)


def test_round_robin_cycles_in_creation_order():
    order, last = [], None
    for _ in range(6):
        c = pick_round_robin([C, A, B], last)
        order.append(c.id)
        last = c.seq
    assert order == ["a", "b", "c", "a", "b", "c"]


def test_round_robin_skips_busy_and_wraps():
    assert pick_round_robin([A, C], 1).id == "c"
    assert pick_round_robin([A, B], 3).id == "a"
    assert pick_round_robin([], 1) is None


def test_warm_first_takes_most_recently_used():
    assert pick_warm_first([A, B, C]).id == "b"
    assert pick("warm-first", [A, C], None).id == "c"
    assert pick("round-robin", [A, C], None).id == "a"


def test_idle_to_stop_is_oldest_idle_first_past_keepalive():
    assert [c.id for c in idle_to_stop([A, B, C], now=40.0, keepalive_s=15)] == ["a", "c"]
    assert idle_to_stop([A, B, C], now=40.0, keepalive_s=100) == []
    assert [c.id for c in idle_to_stop([A], now=10.0, keepalive_s=0)] == ["a"]
