"""Where a process's cgroup files are for a controller, from its /proc/<pid>/cgroup
(https://docs.kernel.org/admin-guide/cgroup-v2.html, "/proc/$PID/cgroup"; v1: one line per
hierarchy, `ID:controllers:path`)."""
from pathlib import Path

from chalicelib.cgroups import controller_dirs


def test_v2_is_the_one_hierarchy_and_v1_the_controllers_own(tmp_path: Path):
    v2 = tmp_path / "v2"
    v2.write_text("0::/system.slice/docker-abc.scope\n")
    assert controller_dirs(v2, "memory", tmp_path) == [(2, tmp_path / "system.slice/docker-abc.scope")]
    v1 = tmp_path / "v1"
    v1.write_text("12:pids:/docker/abc\n11:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n")
    assert controller_dirs(v1, "memory", tmp_path) == [(1, tmp_path / "memory/docker/abc")]
    assert controller_dirs(v1, "pids", tmp_path) == [(1, tmp_path / "pids/docker/abc")]
    assert controller_dirs(v1, "cpuacct", tmp_path) == [(1, tmp_path / "cpuacct/docker/abc")]
    hybrid = tmp_path / "hybrid"   # systemd's hybrid mode: v1 controllers beside an empty v2 one
    hybrid.write_text("4:memory:/user.slice\n0::/user.slice/session-1.scope\n")
    assert controller_dirs(hybrid, "memory", tmp_path) == [(1, tmp_path / "memory/user.slice"),
                                                           (2, tmp_path / "user.slice/session-1.scope")]
    assert controller_dirs(tmp_path / "gone", "memory", tmp_path) == []   # the process has ended


def test_this_process_has_its_cgroups_under_sys_fs_cgroup():
    mine = controller_dirs(Path("/proc/self/cgroup"), "pids")
    assert mine and all(str(where).startswith("/sys/fs/cgroup") for _, where in mine)
