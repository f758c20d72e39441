"""X-Mk1-Run (my_mk1_homework/run_header.py): what the dispatcher writes is what clients read."""
from my_mk1_homework.run_header import NAME, format_run, number, parse_run, run_of


def test_round_trip_and_reading_from_botocore_headers():
    fields = {"container": "RuntimeAlpha-0001-08134f", "cold": "true", "duration-ms": "0.412",
              "wait-ms": "0.000", "started-at": "1796162400.123456", "dispatcher": "0123456789abcdef",
              "init-ms": "201.532"}
    value = format_run(fields)
    assert parse_run(value) == fields
    headers = {NAME.lower(): value, "x-amzn-requestid": "r"}   # botocore's HTTPHeaders: lower-case names
    ran = run_of(headers)
    assert number(ran, "duration-ms") == 0.412 and number(ran, "init-ms") == 201.532
    assert number(ran, "missing") is None


def test_absent_or_odd_values_read_as_nothing():
    assert run_of({}) == {} and parse_run(None) == {} and parse_run("") == {}
    assert parse_run("junk; cold=false;; =x ; wait-ms = 1.5") == {"cold": "false", "wait-ms": "1.5"}
    assert number({"wait-ms": "n/a"}, "wait-ms") is None
