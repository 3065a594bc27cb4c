# caduceus: developer entry points. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0

.PHONY: help install check test test-gpu lint wheel-test bench quickstart probe-example clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)  ## create .venv and install caduceus (CPU torch) with the dev tools
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[dev]'
	@$(VENV)/bin/caduceus --version

check:  ## what CI runs: lint, then the CPU test suite, then wheel-test
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory test
	@$(MAKE) --no-print-directory wheel-test

test:  ## run the CPU test suite
	$(PY) -m pytest -q

test-gpu:  ## run the GPU tests (needs CUDA + mamba-ssm)
	$(PY) -m pytest -q -m gpu

lint:  ## ruff check + ruff format --check
	$(PY) -m ruff check caduceus_cli tests bench
	$(PY) -m ruff format --check caduceus_cli tests bench

wheel-test:  ## build the wheel, install it in a fresh venv, run the quick start with its default model
	PY=$(abspath $(PY)) TORCH="$(TORCH)" tests/wheel_quickstart.sh

bench:  ## CPU benchmarks (JSON + table under bench/results/)
	$(PY) bench/bench_forward.py --device cpu --threads 2

quickstart:  ## score the shipped example VCF with the shipped model
	$(VENV)/bin/caduceus score-vcf examples/chr22_example.vcf.gz --ref examples/chr22_slice.fa.gz -o /tmp/scored.vcf.gz

probe-example:  ## embed -> finetune --method probe -> score-vcf --probe on the shipped example (README figures)
	$(VENV)/bin/caduceus embed examples/chr22_labelled_snvs.tsv --ref examples/chr22_slice.fa.gz --window 256 --flank 64 -o /tmp/snvs.parquet
	$(VENV)/bin/caduceus finetune --method probe /tmp/snvs.parquet --split cv -o /tmp/probe_run
	$(VENV)/bin/caduceus score-vcf examples/chr22_example.vcf.gz --ref examples/chr22_slice.fa.gz --probe /tmp/probe_run/probe.joblib -o /tmp/scored_probe.vcf.gz

clean:  ## remove .venv and build outputs
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
