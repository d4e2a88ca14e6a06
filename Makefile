# The two commands of the README: `make run` (the whole pipeline on params.yaml) and `make test`.
# `make docs` serves the documentation site (docs/, mkdocs.yml) on 127.0.0.1:8000.
# Both create the virtual environment from requirements.lock first (about 3 minutes, once).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.trickbench-installed
CORES ?= all
# glibc: keep freed activations mapped instead of returning them to the kernel every step (platform.md).
# `trickbench train` applies the same settings itself (mallopt) when these are unset; benchmarks/README.md
export MALLOC_MMAP_THRESHOLD_ ?= 2147483647
export MALLOC_TRIM_THRESHOLD_ ?= 4294967296

.PHONY: venv run test test-fast docs report-html lock push pull clean-artifacts

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# then dvc.lock records what Snakemake made (`trickbench lock`: dvc commit), the lock `dvc repro` would write
run: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/trickbench lock

# artifacts/ (prepared data, checkpoints, predictions, records) to and from the DVC remote
# (docs/versioned-results.md). `trickbench pull` is `dvc pull`, then `snakemake --touch --forceall` (a checkout
# writes files in any order and a clone has no .snakemake records), so neither engine has anything to do.
push: venv
	$(BIN)/dvc push

pull: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/trickbench pull

test: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -ra

test-fast: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -ra -m "not slow and not slurm"

# NO_MKDOCS_2_WARNING: Material prints a notice about MkDocs 2 on every start otherwise
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a 127.0.0.1:8000

report-html: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores 1 --report $(or $(RESULTS),results)/report.html

lock: venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^trickbench' > requirements.lock.new
	{ echo '# Every package of the environment, pinned (pip freeze of a working install). Update with `make lock`.'; cat requirements.lock.new; } > requirements.lock && rm requirements.lock.new

clean-artifacts:
	rm -rf artifacts mlflow.db mlartifacts .snakemake
