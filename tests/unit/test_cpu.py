"""MK1_DISPATCHER_CPU: which CPU the dispatcher's threads are pinned to (chalicelib/cpu.py)."""
import pytest

from chalicelib.cpu import _ranges, choose


@pytest.mark.parametrize("setting,allowed,cluster,cpu", [
    ("auto", {0, 1}, False, 1),           # the last CPU, away from CPU 0's interrupts
    ("auto", {0, 1, 2, 3}, False, 3),
    ("auto", {2, 5}, False, 5),           # a cpuset that leaves out some CPUs
    (" AUTO ", {0, 1}, False, 1),
    ("auto", {0}, False, None),           # one CPU: nothing to pin
    ("auto", {0, 1}, True, None),         # cluster mode: several dispatchers would share the one CPU
    ("all", {0, 1}, False, None),
    ("0", {0, 1}, False, 0),
    ("1", {0, 1}, True, 1),               # a number is honoured in cluster mode too
])
def test_choose(setting, allowed, cluster, cpu):
    assert choose(setting, allowed, cluster) == cpu


@pytest.mark.parametrize("setting,words", [
    ("7", "MK1_DISPATCHER_CPU=7: this process may use only CPUs 0-1"),
    ("one", "MK1_DISPATCHER_CPU='one': expected auto, all, or the number of a CPU"),
    ("", "expected auto, all, or the number of a CPU"),
])
def test_a_cpu_it_cannot_use_is_refused_in_words(setting, words):
    with pytest.raises(ValueError) as e:
        choose(setting, {0, 1}, False)
    assert words in str(e.value)


def test_cpu_sets_are_written_as_the_kernel_writes_them():
    assert _ranges({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert _ranges({3}) == "3"
