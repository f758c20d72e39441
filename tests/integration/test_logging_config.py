"""LoggingConfig: Text or JSON logs, levels, a custom log group.

AWS's pages this matches:
- https://docs.aws.amazon.com/lambda/latest/api/API_LoggingConfig.html and
  https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html (defaults Text and
  /aws/lambda/<name>; JSON levels default INFO; levels refused with Text)
- https://docs.aws.amazon.com/lambda/latest/dg/python-logging.html (JSON records of the logging module,
  filtered at the application log level)
- https://docs.aws.amazon.com/lambda/latest/dg/telemetry-schema-reference.html (platform.start,
  platform.report and its metrics; platform.runtimeDone at DEBUG)
"""
import base64
import io
import json
import zipfile

import pytest
from botocore.exceptions import ClientError

from helpers import wait_until

HANDLER = '''
import logging
log = logging.getLogger()
def handler(event, context):
    log.debug("a debug line")
    log.info("an info line")
    log.warning("a warning line")
    return "ok"
'''


def _deploy(system, name: str, **kw) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", HANDLER)
    role = system.aws("iam").get_role(RoleName="mk1-lambda-role")["Role"]["Arn"]
    system.aws("lambda").create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                                         Role=role, Code={"ZipFile": buf.getvalue()}, **kw)


def _tail(system, name: str) -> list[str]:
    r = system.lambda_client("admin").invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    return base64.b64decode(r["LogResult"]).decode().splitlines()


def test_logging_config_is_kept_and_validated_as_aws_does(system):
    _deploy(system, "logtext")
    lam = system.aws("lambda")
    got = lam.get_function_configuration(FunctionName="logtext")["LoggingConfig"]
    assert got == {"LogFormat": "Text", "LogGroup": "/aws/lambda/logtext"}
    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(FunctionName="logtext", LoggingConfig={"ApplicationLogLevel": "DEBUG"})
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert 'LogLevel is not supported when LogFormat is set to "Text"' in e.value.response["Error"]["Message"]
    lam.update_function_configuration(FunctionName="logtext", LoggingConfig={"LogFormat": "JSON"})
    got = lam.get_function_configuration(FunctionName="logtext")["LoggingConfig"]
    assert got == {"LogFormat": "JSON", "LogGroup": "/aws/lambda/logtext", "ApplicationLogLevel": "INFO",
                   "SystemLogLevel": "INFO"}
    lam.update_function_configuration(FunctionName="logtext", LoggingConfig={"LogFormat": "Text"})
    assert lam.get_function_configuration(FunctionName="logtext")["LoggingConfig"]["LogFormat"] == "Text"


def test_json_logs_in_aws_shape_filtered_by_level_into_a_custom_group(system):
    _deploy(system, "logjson", LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN",
                                              "SystemLogLevel": "INFO", "LogGroup": "/custom/logjson"})
    lines = _tail(system, "logjson")
    records = [json.loads(line) for line in lines]
    types = [r.get("type") for r in records]
    assert types[0] == "platform.start" and types[-1] == "platform.report"
    assert "platform.runtimeDone" not in types                        # DEBUG, below INFO
    report = records[-1]["record"]
    assert report["status"] == "success" and set(report["metrics"]) >= {
        "durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB"}
    assert "initDurationMs" in report["metrics"]                      # the first call was cold

    # The function's own lines: JSON records, WARN and up only, in the custom group. (Read from the
    # group, not the Tail: a line still in the pipe when the answer comes goes to the container's
    # stream of the same group instead of the call's block.)
    logs = system.aws("logs")

    def in_group(text: str) -> list:
        try:
            events = logs.filter_log_events(logGroupName="/custom/logjson").get("events", [])
        except logs.exceptions.ResourceNotFoundException:
            return []   # made with the first lines written to it
        return [e["message"] for e in events if text in e["message"]]
    app = [json.loads(m) for m in wait_until(lambda: in_group("a warning line"), timeout=20,
                                             what="the warning in the custom log group")]
    assert app[0]["message"] == "a warning line" and app[0]["level"] == "WARNING" and app[0]["requestId"]
    assert wait_until(lambda: in_group('"platform.report"'), timeout=20, what="the REPORT record in the group")
    assert not in_group("an info line") and not in_group("a debug line")

    # SystemLogLevel DEBUG adds platform.runtimeDone; a level change reaches the next environment.
    lam = system.aws("lambda")
    lam.update_function_configuration(FunctionName="logjson", LoggingConfig={
        "LogFormat": "JSON", "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "DEBUG"})
    wait_until(lambda: any('"platform.runtimeDone"' in x for x in _tail(system, "logjson")), timeout=15,
               what="platform.runtimeDone at the DEBUG system level")
    wait_until(lambda: in_group("a debug line"), timeout=20, what="the DEBUG application level in effect")
