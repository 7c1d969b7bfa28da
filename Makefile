# Two commands on a fresh Linux machine with Python >= 3.10 and pip:
#   make figures   create .venv if missing, install, run every notebook on the embedded default, write figures/
#   make test      create .venv if missing, install, run the whole test suite (notebooks in fast mode)
# and: make test-numerics (the rounding-sensitive tests on the plainest CPU kernels), make test-course (the
#      instructor's grading command end to end), make test-browser (every notebook in JupyterLab in headless
#      Chromium, and a JupyterHub course), make lab [FAST=1], make site, make strip (the tracked notebooks without outputs), make exercises
#      (the student sheets from the worked solutions), make benchmarks, make gpu-check (on a CUDA machine)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: test test-numerics test-course test-browser gpu-check figures install benchmarks strip exercises clean site lab

# A fresh install downloads ~5 GB (PyPI's torch build brings its CUDA libraries) and needs ~7 GB of disk. pip
# resumes a dropped download and the whole install is tried three times, 30 and 60 s apart, before make fails.
# Options as environment variables, so an older pip ignores the ones it lacks.
PIP_NET := PIP_RETRIES=10 PIP_RESUME_RETRIES=50
define pip_install
	for attempt in 1 2 3; do \
	    $(PIP_NET) $(BIN)/python -m pip install $(1) && break; \
	    if [ $$attempt = 3 ]; then exit 1; fi; \
	    wait=$$((15 << attempt)); \
	    echo "pip install failed (attempt $$attempt of 3; is the network up and is there ~7 GB of disk?);" \
	        "retrying in $$wait s"; sleep $$wait; \
	done
endef

# the optional extras make install adds (a comma inside $(call ...) would split its arguments)
EXTRAS := test,imagenet,course

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(call pip_install,--upgrade pip)
	$(call pip_install,-e ".[$(EXTRAS)]")
	$(BIN)/python -m workbench.course.classroom enable
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile -p no:cacheprovider --ignore=tests/browser --ignore=tests/course tests

# The rounding-sensitive tests once more on PyTorch's plainest CPU kernels, which every x86 CPU has (.ci/run; a
# test that holds only on one kernel level fails here first: docs/architecture.md)
test-numerics: $(STAMP)
	ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -p no:cacheprovider -m numerics tests

# The instructor's grading command end to end: the worked solutions (full marks), the unanswered student sheets
# (zero, a message per check) and a deliberately wrong submission (partial), into one CSV gradebook (.ci/run)
test-course: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -p no:cacheprovider -m course tests/course

# Every notebook in a real JupyterLab in headless Chromium (Debian's chromium and chromium-driver), fast mode; then
# a JupyterHub with two students who pull the course and are graded (the hub extra, installed here)
test-browser: $(STAMP)
	$(call pip_install,-e ".[hub]")
	$(BIN)/python -m pytest -p no:cacheprovider -rs tests/browser

# JupyterLab on the notebooks; FAST=1 for the fast mode (fewer images and queries, figures into figures/_fast/)
FAST ?= 0
lab: $(STAMP)
	WORKBENCH_FAST=$(FAST) $(BIN)/jupyter lab notebooks/

# Every notebook executed in fast mode and rendered to static HTML with an index: site/index.html
site: $(STAMP)
	$(BIN)/python -m workbench.course.site --out site

# Two notebooks at once, each kernel on one thread: the figures then do not depend on the machine's core count
# (the thread count changes numbers in the last bit: docs/performance.md), as the tests and the grader do not
figures: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m workbench.course.notebooks --full --jobs 2

# The prepared check for a CUDA machine (CUDA tests, AAA's CUDA-graph solver, Square over the floor on CIFAR-10)
gpu-check: $(STAMP)
	$(BIN)/python -m benchmarks.gpu_check

benchmarks: $(STAMP)
	$(call pip_install,-e ".[peers]")
	$(BIN)/python -m benchmarks.square_peers

strip: $(STAMP)
	$(BIN)/python -m workbench.course.classroom strip notebooks/*.ipynb notebooks/solutions/*.ipynb notebooks/exercises/*.ipynb

# The student sheets notebooks/exercises/ from the worked solutions (after editing a solution or a check)
exercises: $(STAMP)
	$(BIN)/python -m workbench.course.grading release

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
