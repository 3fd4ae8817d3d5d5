# enclave-share: `make demo` runs the main job, `make test` the tests, `make check`
# the whole gate (format, lint, types, Solidity lint, tests). Each target does its
# own set-up, idempotently: a second run reinstalls nothing.
SHELL := /bin/bash
PY_MIN := 3.11
SOLC_VERSION := 0.8.30

export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/.venv/bin:$(PATH)
export SOLCX_BINARY_PATH := $(CURDIR)/.solc
export PYTHONDONTWRITEBYTECODE := 1

VENV := .venv/bin
STAMPS := .stamps
CONTRACTS := $(shell find contracts -name '*.sol')

.PHONY: setup demo deploy test test-contracts test-agent check lint format typecheck sol-lint bench lock clean

WEB_VENDOR := enclave_agent/gateway/web/vendor

setup: $(STAMPS)/tools $(STAMPS)/venv $(STAMPS)/node .solc/solc-v$(SOLC_VERSION) $(STAMPS)/compiled $(WEB_VENDOR)/.stamp

$(STAMPS)/tools:
	@tools/step tools tools/check-tools $(PY_MIN)
	@touch $@

$(STAMPS)/venv: requirements.lock pyproject.toml | $(STAMPS)/tools
	@echo "setup: python environment (.venv)"
	@test -x $(VENV)/python || tools/step venv python3 -m venv .venv
	@tools/step pip-install $(VENV)/pip install --disable-pip-version-check -r requirements.lock
	@tools/step package-install $(VENV)/pip install --disable-pip-version-check --no-deps --no-build-isolation -e .
	@tools/step pip-check $(VENV)/pip check
	@touch $@

$(STAMPS)/node: package.json package-lock.json | $(STAMPS)/tools
	@echo "setup: node tools (anvil, solc-js, OpenZeppelin, solhint)"
	@tools/step npm-ci npm ci --no-audit --no-fund
	@tools/step anvil anvil --version
	@touch $@

# The wallet page's charting library (and its licence), copied from node_modules and
# checked against the pins in vendor.json (served only as pinned; not measured).
$(WEB_VENDOR)/.stamp: enclave_agent/gateway/web/vendor.json tools/vendor-web $(STAMPS)/node
	@tools/step web-vendor tools/vendor-web
	@touch $@

.solc/solc-v$(SOLC_VERSION): tools/solc-facade.js $(STAMPS)/node
	@mkdir -p .solc
	@ln -sf ../tools/solc-facade.js $@
	@tools/step solc-facade $@ --version

$(STAMPS)/compiled: $(CONTRACTS) brownie-config.yaml .solc/solc-v$(SOLC_VERSION) $(STAMPS)/venv
	@echo "setup: compiling contracts"
	@tools/step compile brownie compile --all  # brownie alone misses a change to a file without a contract (types/Types.sol)
	@touch $@

demo: setup
	@$(VENV)/enclave-devnet demo --workdir var/demo

deploy: setup
	@brownie run scripts/deploy.py

test: setup test-contracts test-agent

test-contracts: setup
	@tools/port-free 8545 "Brownie's development network would attach to the node there instead of its own"
	brownie test tests/contracts -p no:cacheprovider

$(STAMPS)/chromium: | $(STAMPS)/tools
	@echo "setup: headless chromium (wallet page tests)"
	@tools/step chromium tools/chromium
	@touch $@

test-agent: setup $(STAMPS)/chromium
	$(VENV)/python -m pytest -p no:pytest-brownie -p no:cacheprovider tests/agent tests/devnet tests/console tests/integration tests/e2e

format: setup
	ruff format enclave_agent enclave_client enclave_console enclave_devnet scripts tests bench
	ruff check --fix enclave_agent enclave_client enclave_console enclave_devnet scripts tests bench

lint: setup
	ruff format --check enclave_agent enclave_client enclave_console enclave_devnet scripts tests bench
	ruff check enclave_agent enclave_client enclave_console enclave_devnet scripts tests bench

typecheck: setup
	mypy

sol-lint: setup
	solhint --disc 'contracts/**/*.sol'

check: lint typecheck sol-lint test

bench: setup $(STAMPS)/chromium
	$(VENV)/python bench/run_all.py

lock:
	python3 -m venv /tmp/enclave-share-lock && /tmp/enclave-share-lock/bin/pip install -r requirements.in
	(head -n 2 requirements.lock; /tmp/enclave-share-lock/bin/pip freeze) > requirements.lock.new && mv requirements.lock.new requirements.lock
	$(VENV)/pip install --disable-pip-version-check -r requirements.lock && $(VENV)/python tools/gen-runtime-lock

clean:
	rm -rf .venv node_modules .solc build .stamps $(WEB_VENDOR)
