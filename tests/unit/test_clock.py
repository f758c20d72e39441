"""The system clock's wall times come off its monotonic clock through one offset."""
import time

from chalicelib import clock as clock_module
from chalicelib.clock import FakeClock, SystemClock


def test_wall_times_are_the_monotonic_clock_moved_by_one_offset():
    c = SystemClock()
    a, b = c.monotonic(), c.monotonic() + 2.5
    assert abs((c.wall_of(b) - c.wall_of(a)) - 2.5) < 1e-6
    assert abs(c.time() - time.time()) < 0.05
    assert SystemClock().wall_of(a) == c.wall_of(a)   # process-wide: every instance agrees


def test_a_wall_clock_that_was_set_is_taken_again(monkeypatch):
    c = SystemClock()
    monkeypatch.setattr(clock_module, "_offset", clock_module._offset - 3600.0)   # an hour behind
    assert abs(c.time() - time.time()) < 0.05
    assert abs(clock_module._offset - clock_module._anchor()) < 0.05


def test_fake_clock_wall_of_moves_with_advance():
    c = FakeClock(start=10.0, wall=100.0)
    c.advance(1.5)
    assert c.wall_of(c.monotonic()) == c.time() == 101.5 and c.wall_of(10.0) == 100.0
