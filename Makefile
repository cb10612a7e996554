# The two commands of the README, plus a few conveniences. Everything runs inside .venv.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= demo
PYTEST_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.exifkit-installed

.PHONY: reproduce test test-fast lab install clean-results sync-notebooks paper-eval bench student site

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Execute the numbered notebooks on $(PROFILE) (default: demo, offline) into results/$(PROFILE)/
reproduce: $(STAMP)
	$(BIN)/exifkit reproduce --profile $(PROFILE)

## Student notebooks: solutions replaced by stubs and empty answer cells, into results/student/
student: $(STAMP)
	$(BIN)/exifkit course student --out results/student

## A static HTML site of a profile's executed notebooks, into results/site/<profile>/ (default: the
## committed extended reference run, so it works on a fresh clone; `make site PROFILE=demo` after `make reproduce`)
SITE_PROFILE := $(if $(filter command line environment,$(origin PROFILE)),$(PROFILE),extended)
site: $(STAMP)
	$(BIN)/exifkit course site --profile $(SITE_PROFILE)

## The whole test suite (two workers, one test file each at a time, each with its share of the cores as threads): every notebook once on the tiny profile, benchmarks in smoke mode and the slow end-to-end checks included
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

## Without the notebooks, the benchmarks and the slow end-to-end checks (a few minutes)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not slow and not notebooks and not bench" $(PYTEST_ARGS)

## JupyterLab on notebooks/ for reading and rerunning by hand
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

## Regenerate the .ipynb halves of the jupytext pairs from the reviewed .py files
sync-notebooks: $(STAMP)
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.py

clean-results:
	rm -rf results/demo results/extended results/paper

## Score the authors' released checkpoints on their test sets (no training): needs the paper data in a mirror
paper-eval: $(STAMP)
	$(BIN)/exifkit reproduce --profile paper --notebooks 00 05 --param official=true

## Speed: every benchmark in benchmarks/, both modes (or precisions) side by side, the streaming data path, and the kit against the authors' network where EXIFKIT_OFFICIAL_REPO names a checkout of it (about 30 minutes on 2 cores)
bench: $(STAMP)
	$(BIN)/python benchmarks/extractor_inference.py
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/precision.py
	$(BIN)/python benchmarks/large_image.py
	$(BIN)/python benchmarks/decoding.py
	$(BIN)/python benchmarks/profile_extractor.py
	$(BIN)/python benchmarks/data_path.py
	$(BIN)/python benchmarks/detect_kernel.py
	$(BIN)/python benchmarks/inference_precision.py
	$(BIN)/python benchmarks/versus_official.py
	$(BIN)/python benchmarks/profile_parts.py
	$(BIN)/python benchmarks/memory.py --devices cpu
