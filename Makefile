# The whole set-up of cortexscale is these two targets (see README.md):
#   make run    creates .venv, installs, runs the default study through Snakemake
#   make test   creates .venv, installs with the test extras, runs the test suite
#   make test-fast  the unit tests only (no slow, slurm, gpu or lint marker): a few minutes
#               (as root, tests/test_slurm.py installs Debian's slurm-wlm and munge with
#               apt-get through scripts/slurm-cluster.sh and runs a one-node Slurm cluster)
#
# TORCH pins the CPU wheel that needs no GPU; set TORCH=torch on a GPU machine to let pip
# choose, or install your site's build into .venv before `make run`.

PYTHON ?= python3
VENV   ?= .venv
CORES  ?= $(shell nproc 2>/dev/null || echo 2)
TORCH  ?= torch==2.13.0
SNAKEMAKE_ARGS ?=
# the default study's name (config/config.yaml `study`): its outputs are under results/$(STUDY)/
STUDY := $(shell sed -n 's/^study: *\([A-Za-z0-9_.-]*\).*/\1/p' config/config.yaml)

BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint dryrun clean-results

$(STAMP): pyproject.toml
	@echo ">> creating $(VENV) and installing cortexscale (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" -e ".[test]"
	@touch $(STAMP)

run: $(STAMP)
	@echo ">> running the default study (config/config.yaml) with $(CORES) cores"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)
	@echo ">> results: results/$(STUDY)/summary.md, results/$(STUDY)/tables/, results/$(STUDY)/figures/"

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest tests

test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest tests -m "not slow and not slurm and not gpu and not lint"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --lint

dryrun: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/dryrun.py

clean-results:
	rm -rf results/$(STUDY) logs/$(STUDY) .snakemake
