"""LocalStack providers for mk1's LocalStack test mode.

`PROVIDER_OVERRIDE_DYNAMODB=moto`: DynamoDB answered by the moto that LocalStack bundles, as
LocalStack answers ACM or API Gateway's fallbacks. LocalStack's own DynamoDB provider runs DynamoDB
Local, which it downloads (a JDK and a jar) at first use: a machine that reaches only package
registries cannot.
"""
from localstack.aws.api.dynamodb import DynamodbApi
from localstack.services.plugins import Service, ServiceLifecycleHook, aws_provider


class DynamoDBOnMoto(DynamodbApi, ServiceLifecycleHook):
    """Every operation falls through to moto (MotoFallbackDispatcher)."""


@aws_provider(api="dynamodb", name="moto")
def dynamodb_moto():
    from localstack.services.moto import MotoFallbackDispatcher
    return Service.for_provider(DynamoDBOnMoto(), dispatch_table_factory=MotoFallbackDispatcher)


# -- Lambda: mk1 runs the functions; LocalStack keeps their control plane -------------------------

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin  # noqa: E402
from localstack.services.lambda_.invocation.runtime_executor import (  # noqa: E402
    LambdaRuntimeException, RuntimeExecutor)


class Mk1RuntimeExecutor(RuntimeExecutor):
    """`LAMBDA_RUNTIME_EXECUTOR=mk1`: a function version needs nothing prepared here, because mk1's
    dispatcher runs it in its own containers. LocalStack's Docker executor would download its
    runtime and need a Docker socket to prepare each version, and marks the function Failed where
    it has neither; a Failed function then refuses every update ("cannot be updated if an old one is
    not running"). Invoking through LocalStack itself is refused with a message saying where to."""

    @classmethod
    def prepare_version(cls, function_version) -> None:
        return None

    @classmethod
    def cleanup_version(cls, function_version) -> None:
        return None

    def start(self, env_vars):
        raise LambdaRuntimeException("mk1 runs this function: invoke it through mk1's dispatcher "
                                     "(http://127.0.0.1:8000 by default), not LocalStack's Lambda")

    def stop(self) -> None:
        return None

    def get_address(self) -> str:
        return ""

    def get_endpoint_from_executor(self) -> str:
        return ""

    def get_runtime_endpoint(self) -> str:
        return ""

    def invoke(self, payload):
        raise LambdaRuntimeException("mk1 runs this function: invoke it through mk1's dispatcher")

    def get_logs(self) -> str:
        return ""


class Mk1RuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "mk1"

    def load(self, *args, **kwargs):
        return Mk1RuntimeExecutor
