# gpuhub — see README.md. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(abspath $(VENV))/bin
PYTHON ?= python3
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

# Molecule scenarios `make molecule` runs, in order (the demo scenario is not a test;
# `make test` runs the same ones in the lanes below).
SCENARIOS ?= docker tls default cluster
DEMO_SCENARIO := demo
TESTHOST_ENV := eval "$$(molecule/testhost/env.sh)"

.PHONY: help prereqs reports bootstrap deploy lint pytest test-quick test molecule testhost demo demo-clean clean bench bench-cluster gpu-capture lanes

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

prereqs: ## Docker engine, debootstrap, testssl.sh, python3-venv (as root: installed and started)
	scripts/prereqs.sh

bootstrap: $(VENV)/.installed ## Create .venv with the pinned toolchain (requirements-dev.txt)

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

deploy: bootstrap ## Converge the hosts in inventory/ (default: this machine) with site.yml
	$(BIN)/ansible-playbook site.yml -i inventory

lint: bootstrap ## yamllint, ansible-lint (production profile), ruff
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --profile production
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

REPORTS := .cache/reports

pytest: bootstrap ## Unit tests and playbook checks (no test hosts)
	mkdir -p $(REPORTS)
	$(BIN)/pytest -m "not e2e" --junitxml=$(REPORTS)/pytest.xml

test-quick: lint pytest ## Everything but Molecule: for local loops

testhost: prereqs ## Build (or reuse) the systemd Debian 12 test-host image
	molecule/testhost/build.sh

molecule: bootstrap testhost ## Every Molecule scenario in SCENARIOS, one after another
	mkdir -p $(REPORTS); rm -f $(REPORTS)/molecule-*.passed
	$(MAKE) --no-print-directory $(addprefix scenario-,$(SCENARIOS))

# One scenario, without the prerequisites (molecule and the lanes below have them done).
scenario-%:
	@echo "=== molecule test -s $*"
	$(TESTHOST_ENV); $(BIN)/molecule test -s $*
	touch $(REPORTS)/molecule-$*.passed

reports: # An empty reports folder, so the summary counts only this run's tests
	rm -rf $(REPORTS); mkdir -p $(REPORTS)

# `make test` runs two lanes side by side, each an ordered list of steps: most of a
# scenario's time is spent waiting (on a test host's Docker, on a hub, on the idle timeouts
# the drills must sit out), so the second core does the rest meanwhile. The longest
# scenario has a lane of its own; every line of output names its lane.
# Same host names, ports and reports are never shared between lanes (one test host per
# scenario, named after it).
LANE_1 ?= scenario-default
LANE_2 ?= lint scenario-docker scenario-tls scenario-cluster pytest

lane-%:
	$(MAKE) --no-print-directory -j1 $(LANE_$*) 2>&1 | sed -u 's/^/[lane $*] /'

lanes: bootstrap testhost # Both lanes side by side (the prerequisites done first)
	$(MAKE) --no-print-directory -j2 lane-1 lane-2

test: prereqs reports testhost bootstrap lanes ## The full suite: lint, pytest, every Molecule scenario (in two lanes)

demo: bootstrap testhost ## Converge site.yml into a throwaway test-host container
	$(TESTHOST_ENV); $(BIN)/molecule converge -s $(DEMO_SCENARIO)
	@molecule/demo/info.sh

demo-clean: bootstrap ## Remove the demo container
	$(TESTHOST_ENV); $(BIN)/molecule destroy -s $(DEMO_SCENARIO)

# Benchmark arguments (see each script's --help); BENCH_KEEP=1 keeps the bench host.
BENCH_SPAWN ?= -n 10
BENCH_LOAD ?= --users 100 --rate 2 --knee 4,8,16
BENCH_BACKUP ?= --gib 1
BENCH_RESULTS := bench/results

bench: bootstrap testhost ## Benchmarks: converge, spawn latency, load, backup (bench/results/)
	$(TESTHOST_ENV); status=0; \
	{ $(BIN)/python bench/converge.py && \
	  $(BIN)/python bench/spawn.py $(BENCH_SPAWN) && \
	  $(BIN)/python bench/load.py $(BENCH_LOAD) && \
	  $(BIN)/python bench/backup.py $(BENCH_BACKUP); } || status=$$?; \
	[ -n "$(BENCH_KEEP)" ] || $(BIN)/molecule destroy -s bench >/dev/null; exit $$status
	{ printf '# Benchmark results\n\n`make bench` (spawn.py %s, load.py %s, backup.py %s), commit %s.\nAnalysis of missed targets: README.md, "Benchmarks".\n\n' \
	    "$(BENCH_SPAWN)" "$(BENCH_LOAD)" "$(BENCH_BACKUP)" "$$(git rev-parse --short HEAD)"; \
	  cat $(BENCH_RESULTS)/converge.md $(BENCH_RESULTS)/spawn.md $(BENCH_RESULTS)/load.md \
	    $$(ls $(BENCH_RESULTS)/load-knee.md 2>/dev/null) $(BENCH_RESULTS)/backup.md; } > $(BENCH_RESULTS)/README.md

bench-cluster: bootstrap testhost ## Spawn latency on the Molecule cluster scenario (bench/results/spawn-cluster.*)
	$(TESTHOST_ENV); status=0; \
	{ $(BIN)/molecule converge -s cluster && $(BIN)/python bench/spawn.py --cluster $(BENCH_SPAWN); } || status=$$?; \
	[ -n "$(BENCH_KEEP)" ] || $(BIN)/molecule destroy -s cluster >/dev/null; exit $$status

gpu-capture: ## On a GPU host: record nvidia-smi outputs, the GPU fact and the smoke test (.cache/gpu-capture/)
	scripts/gpu-capture.sh .cache/gpu-capture

clean: ## Remove the virtualenv and caches (not the test-host image)
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
