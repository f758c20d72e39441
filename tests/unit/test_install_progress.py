"""`make up`'s install says how far it is (infra/install.py): one line per package of the lock, the
time left at the rate so far, and the install step announced."""
from infra.install import INSTALL_SECONDS_PER_PACKAGE, Progress, locked_count


def test_each_new_package_is_counted_once_with_the_time_left():
    now = [100.0]
    p = Progress(total=4, clock=lambda: now[0])
    now[0] = 110.0
    assert p.line("Collecting boto3 (from -r requirements.txt (line 3))").startswith("[1/4] boto3")
    assert p.line("  Downloading boto3-1.42.0-py3-none-any.whl (139 kB)") is None
    now[0] = 120.0
    said = p.line("Collecting moto[server]")
    left = 20 / 2 * 2 + 4 * INSTALL_SECONDS_PER_PACKAGE
    assert said.startswith("[2/4] moto") and "20 s so far" in said and f"about {left:.0f} s left" in said
    assert p.line("Collecting moto") is None                 # the same package again
    assert p.line("Requirement already satisfied: six in ./.venv/lib").startswith("[3/4] six")


def test_the_install_step_is_announced_with_its_size():
    p = Progress(total=3)
    said = p.line("Installing collected packages: a, b, c")
    assert said.startswith("installing 3 packages")


def test_the_total_is_the_locks_pins(tmp_path):
    c = tmp_path / "constraints.txt"
    c.write_text("# the lock\nboto3==1.0\nmoto==5.2.5\n\n# pytest==1\nsix==1.16\n")
    assert locked_count(str(c)) == 3
