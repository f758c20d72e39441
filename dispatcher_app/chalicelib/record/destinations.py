"""Where an Event call's outcome goes, in AWS's shapes: its destinations and its dead-letter queue.

https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html: an invocation
record (version, timestamp, requestContext with condition and approximateInvokeCount,
requestPayload, responseContext, responsePayload) goes to OnSuccess / OnFailure: an SQS queue, an
SNS topic, another Lambda function (invoked asynchronously with the record as its event) or an
EventBridge bus. https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html#invocation-dlq:
the function's DeadLetterConfig (SQS or SNS) receives the event itself, with RequestID, ErrorCode and
ErrorMessage attributes. Delivery happens off the call's path (the async runner's thread).
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Callable

from chalicelib.model import FunctionConfig, Outcome

log = logging.getLogger("mk1.destinations")

# (destination ARN, the record's JSON, the original caller) -> None: an async invoke of a function
InvokeAsync = Callable[[str, bytes, str], None]


def invocation_record(request_id: str, function_arn: str, condition: str, attempts: int, request: bytes,
                      outcome: Outcome | None, executed_version: str, now: float) -> dict:
    record = {"version": "1.0",
              "timestamp": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds")
              .replace("+00:00", "Z"),
              "requestContext": {"requestId": request_id, "functionArn": function_arn, "condition": condition,
                                 "approximateInvokeCount": attempts},
              "requestPayload": _json_or_text(request)}
    if outcome is not None:
        context = {"statusCode": 200, "executedVersion": executed_version}
        if outcome.is_error:
            context["functionError"] = "Unhandled"
        record["responseContext"] = context
        record["responsePayload"] = _json_or_text(outcome.payload)
    return record


def _json_or_text(data: bytes):
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return data.decode("utf-8", "replace")


class Destinations:
    def __init__(self, sqs, sns, events, invoke_async: InvokeAsync):
        self.sqs, self.sns, self.events, self.invoke_async = sqs, sns, events, invoke_async

    def deliver(self, destination: str, record: dict, success: bool, config: FunctionConfig, user: str) -> None:
        """The invocation record to an OnSuccess/OnFailure destination. A destination that cannot be
        reached is logged, not retried: the call's own outcome (result, usage record) stands."""
        body = json.dumps(record)
        try:
            service = destination.split(":")[2]
            if service == "sqs":
                self.sqs.send_message(QueueUrl=self._queue_url(destination), MessageBody=body)
            elif service == "sns":
                self.sns.publish(TopicArn=destination, Message=body)
            elif service == "lambda":
                self.invoke_async(destination, body.encode(), user)
            elif service == "events":
                result = "Success" if success else "Failure"
                self.events.put_events(Entries=[{
                    "Source": "lambda", "DetailType": f"Lambda Function Invocation Result - {result}",
                    "Detail": body, "EventBusName": destination, "Resources": [config.version_arn]}])
            else:
                log.warning("%s: destination %s is not a supported service", config.name, destination)
        except Exception as e:
            log.warning("%s: delivering to %s failed: %s", config.name, destination, e)

    def dead_letter(self, target: str, request_id: str, event: bytes, outcome: Outcome | None,
                    config: FunctionConfig) -> None:
        """The event itself to the function's DeadLetterConfig target (SQS or SNS), as AWS sends it."""
        message = (outcome.payload.decode("utf-8", "replace") if outcome is not None else "Event age exceeded")[:1024]
        attrs = {"RequestID": {"DataType": "String", "StringValue": request_id},
                 "ErrorCode": {"DataType": "Number", "StringValue": "200"},
                 "ErrorMessage": {"DataType": "String", "StringValue": message}}
        try:
            if target.split(":")[2] == "sns":
                self.sns.publish(TopicArn=target, Message=event.decode("utf-8", "replace"), MessageAttributes=attrs)
            else:
                self.sqs.send_message(QueueUrl=self._queue_url(target), MessageBody=event.decode("utf-8", "replace"),
                                      MessageAttributes=attrs)
        except Exception as e:
            log.warning("%s: sending to its dead-letter queue %s failed: %s", config.name, target, e)

    def _queue_url(self, arn: str) -> str:
        parts = arn.split(":")   # arn:aws:sqs:REGION:ACCOUNT:NAME
        return self.sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
