"""Fixtures of the conformance tests (helpers: lambda_http.py, a module of its own: the name
`conftest` is taken by every test folder's conftest once the whole suite runs)."""
from __future__ import annotations

import pytest

from lambda_http import Raw, function_zip


@pytest.fixture(scope="module")
def fn(system):
    """A user's function for the cases that need one; deleted after the module."""
    lam = system.aws("lambda")
    role = system.aws("iam").get_role(RoleName="mk1-lambda-role")["Role"]["Arn"]
    names = []

    def make(name: str, **kw) -> str:
        lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler",
                            Code={"ZipFile": function_zip()}, Timeout=30, MemorySize=256, **kw)
        names.append(name)
        return name
    yield make
    for n in names:
        lam.delete_function(FunctionName=n)


@pytest.fixture(scope="module")
def admin(system):
    return system.lambda_client("admin")


@pytest.fixture(scope="module")
def raw(system):
    return Raw(system)


