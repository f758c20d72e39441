# The two set-up commands: `make up` and `make test`. Both install what they need.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: up test test-embedded test-localstack bench bench-quick install clean down package-aws

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade "pip>=23,<26.3"  # chalice 1.34 needs pip < 26.3
	@echo "installing Python packages into $(VENV) (a first install takes about 2-3 minutes) ..."
	@$(BIN)/python infra/install.py requirements.txt constraints.txt
	@touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	@$(BIN)/mk1 up

down: $(STAMP)
	@$(BIN)/mk1 down

# The whole suite on the embedded AWS, then the integration tests marked `localstack` against a
# host-mode LocalStack (installed on first use under .mk1/localstack-venv: infra/localstack.py).
test: test-embedded test-localstack

test-embedded: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-localstack: $(STAMP)
	MK1_TEST_AWS=localstack $(BIN)/python -m pytest tests/integration tests/conformance $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

# Function zips + `chalice package` of the dispatcher, under build/aws/ (see README: deploying to AWS).
package-aws: $(STAMP)
	$(BIN)/python -m infra.package_aws

clean:
	rm -rf $(VENV) .mk1
