# vit-cars-poc: `make report` runs the whole study, `make test` runs the tests.
# Both set up what they need (.venv/, packages, Jupyter kernel, paired notebooks).

PROFILE ?= cpu
ifeq ($(filter $(PROFILE),smoke cpu gpu),)
$(error unknown PROFILE '$(PROFILE)': use smoke, cpu or gpu)
endif
PYTHON ?= python3.11
# The exact versions that `make setup` installs: every package, transitive ones included
# (requirements/README.md). In .venv, the CPU lock, the tested one (torch's local CPU
# build). On a CUDA box, VENV=$$CONDA_PREFIX installs into the active conda environment and
# takes the GPU lock (CUDA 13 torch; TensorFlow without CUDA); LOCK= names another lock.
LOCK ?= $(if $(filter .venv $(CURDIR)/.venv,$(VENV)),requirements/cpu.lock.txt,requirements/gpu.lock.txt)
KERNEL := vit-cars-poc
VENV := .venv
PY := $(VENV)/bin/python
VIEWER := $(VENV)/etc/jupyter/labconfig/default_setting_overrides.json
STAMP := $(VENV)/.setup-done
export PYTHONPATH := $(CURDIR)/src
ifdef CARS_DATA_DIR
export CARS_DATA_DIR
endif

NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.py))
PAIRED := $(strip $(NOTEBOOKS) $(wildcard report/rapport.py))

.DEFAULT_GOAL := help
.PHONY: help setup lock test test-fast test-dry-run data run report weights bench lint clean gpu-bundle

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=smoke|cpu|gpu (default cpu), CARS_DATA_DIR=<dataset folder>,"
	@echo "    DRY_RUN=1 (the profile with tiny amounts), FORCE=1 (re-run everything),"
	@echo "    PARAMS=\"-p KEY VALUE ...\" overrides for every notebook (VALUE read as YAML):"
	@echo "      -p split_seed 7                    a key of params/PROFILE/study.yaml or of every notebook"
	@echo "      -p 01.runs.improved-hybrid.epochs 3  one key of one run of notebook 01 (NN.runs.NAME.KEY)"
	@echo "      -p 01.runs.improved-hybrid.network.transformer_layers 6  a key of a run's group"
	@echo "      -p '03.runs.*.epochs' 1            that key in every run of notebook 03"
	@echo "      -p 05.frozen.epochs 1              one key of a block of notebook 05 (NN.BLOCK.KEY)"
	@echo "    VENV=\$$CONDA_PREFIX on a CUDA box (installs requirements/gpu.lock.txt there)"
	@echo "    TEST_WORKERS=2 (make test, test-fast: pytest-xdist processes; 0: one process)"

setup: $(STAMP) $(VIEWER) ## create .venv, install the lock's exact versions, the Jupyter kernel, the notebook pairs
	@$(if $(PAIRED),$(VENV)/bin/jupytext --sync --quiet $(PAIRED))

# JupyterLab opens a .py file (notebooks/*.py) as a notebook, jupytext's viewer, instead of
# as text: a setting of this environment only (its etc/jupyter), not of the user's home
$(VIEWER): $(STAMP)
	@$(VENV)/bin/jupytext-config --settings-file $@ set-default-viewer python >/dev/null

# pip at the lock's version first (it then installs the rest), then one pip call for the
# whole lock, without resolving (--no-deps: the lock is complete). pip's byte-compiling is
# kept: the tests run with PYTHONDONTWRITEBYTECODE=1 and would compile every import again;
# compileall on both cores was no faster here (I/O bound). In .venv, pip-sync then removes
# what the lock no longer names (an older .venv); a conda environment is left as it is.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-deps $$(grep '^pip==' $(LOCK))
	$(PY) -m pip install --quiet --no-deps -r $(LOCK)
	$(if $(filter .venv $(CURDIR)/.venv,$(VENV)),$(PY) -m piptools sync --quiet $(LOCK))
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python 3 (vit-cars-poc)" >/dev/null
	@touch $@

# The locks come from pyproject.toml (and requirements/*.in) through pip-compile, which uses
# pip and so its configuration (local wheels, constraints). Versions already locked are kept;
# UPGRADE=1 takes the newest allowed. A deliberate step: review the diff, then commit.
COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --extra dev \
  --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
  --no-emit-trusted-host $(if $(UPGRADE),--upgrade)
# Each lock is compiled into a copy, which replaces it only when it differs: an unchanged
# lock keeps its date, and `make setup` has nothing to redo.
define compile_lock
	cp requirements/$(1).lock.txt requirements/.$(1).lock.tmp 2>/dev/null || true
	$(COMPILE) -o requirements/.$(1).lock.tmp pyproject.toml requirements/$(1).in
	@if cmp -s requirements/.$(1).lock.tmp requirements/$(1).lock.txt; then \
	  rm requirements/.$(1).lock.tmp; echo "requirements/$(1).lock.txt: unchanged"; \
	else mv requirements/.$(1).lock.tmp requirements/$(1).lock.txt; \
	  echo "requirements/$(1).lock.txt: updated (review: git diff requirements/)"; fi
endef
lock: $(STAMP) ## refresh requirements/{cpu,gpu}.lock.txt from pyproject.toml (UPGRADE=1: newest versions)
	$(call compile_lock,cpu)
	$(call compile_lock,gpu)

# The tests write nothing into the checkout: outputs go to temporary folders, and no
# bytecode cache is written. `make test` runs them in TEST_WORKERS pytest-xdist processes
# (one per core here); the smoke run of the notebooks is made once and shared, and the
# report's tests keep to one process (--dist loadgroup). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: $(STAMP) $(VIEWER) ## run the test suite (unit tests, smoke notebooks and report; not the dry run)
	PYTHONDONTWRITEBYTECODE=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

test-fast: $(STAMP) $(VIEWER) ## run the unit tests only (no notebook, no report)
	PYTHONDONTWRITEBYTECODE=1 $(PY) -m pytest -n $(TEST_WORKERS) -m "not slow and not dryrun"

test-dry-run: $(STAMP) $(VIEWER) ## the gpu profile's dry run and the gpu path's slower checks (bundle, refusals)
	PYTHONDONTWRITEBYTECODE=1 $(PY) -m pytest -m dryrun

# Where results/, models/, runs/ and report/_output/ go (the tests point it elsewhere).
OUTPUT ?= $(CURDIR)
export VIT_CARS_OUTPUT := $(abspath $(OUTPUT))
# DRY_RUN=1: the profile's models and settings with tiny amounts (batches of 4, one epoch
# per stage, 16 evaluation images), stand-in weights where the real ones are missing;
# outputs go to <profile>-dry. It runs on CARS_DATA_DIR when given, else on generated data
# with the 196 class ids of Stanford Cars.
ifdef DRY_RUN
OUTPROFILE := $(PROFILE)-dry
DRY_FLAG := --dry-run
else
OUTPROFILE := $(PROFILE)
DRY_FLAG :=
endif
# The smoke profile runs on generated data; the others on CARS_DATA_DIR or data/stanford_cars.
# Its notebooks are small and spend their time importing, starting kernels and tracing, on
# one core each: make runs two of them at a time (02 still after 01), and prints each
# notebook's output whole when it ends.
ifeq ($(PROFILE),smoke)
MAKEFLAGS += -j2 --output-sync=target
DATA_DIR ?= data/synth
else ifdef DRY_RUN
DATA_DIR ?= $(or $(CARS_DATA_DIR),data/synth-196)
else
DATA_DIR ?= $(or $(CARS_DATA_DIR),data/stanford_cars)
endif

# A real gpu run (PROFILE=gpu without DRY_RUN) first checks that each framework the
# notebooks train with (TensorFlow for 01, 02, 05; torch for 03, 04) sees a GPU; otherwise it
# stops at once, on one line that says what to install.
ifeq ($(PROFILE):$(DRY_RUN),gpu:)
GPU_CHECK := gpu-devices
endif
.PHONY: gpu-devices
gpu-devices: $(STAMP)
	@$(PY) -m common check --profile $(PROFILE) $(NOTEBOOKS) $(PARAMS)

data: $(STAMP) $(GPU_CHECK) ## check the dataset (downloads it into data/stanford_cars when CARS_DATA_DIR is unset)
ifeq ($(PROFILE),smoke)
	@test -d "$(DATA_DIR)" || $(PY) -m common synth "$(DATA_DIR)" --classes 12 --per-class 16 --test-per-class 4 --size 48 >/dev/null
else ifeq ($(DATA_DIR),data/synth-196)
	@test -d "$(DATA_DIR)" || $(PY) -m common synth "$(DATA_DIR)" --classes 196 --per-class 3 --test-per-class 1 --size 48 >/dev/null
else ifeq ($(DATA_DIR),data/stanford_cars)
	$(PY) -m common data download data/stanford_cars
endif
	$(PY) -m common data summary "$(DATA_DIR)" --no-verify

# One results file per notebook; it is rebuilt when the notebook, its parameter file or a
# module of src/common that it imports (directly or not) changed, or with FORCE=1. Those
# modules are read from the import statements (python3 -m common deps) into
# $(DEPS). A failing notebook stops the run and keeps its previous results; its executed
# copy stays in runs/$(PROFILE)/.
# On a box with several GPUs, `make -j5 run PROFILE=gpu GPUS="0 1 2 3 4"` gives each
# notebook exactly one GPU: notebook NN the NN-th of GPUS, round-robin when there are fewer
# GPUs than notebooks (GPUS="0 1": 01, 03, 05 on GPU 0, 02 and 04 on GPU 1).
RESULTS := $(patsubst notebooks/%.py,$(OUTPUT)/results/$(OUTPROFILE)/%.json,$(NOTEBOOKS))
DEPS := $(OUTPUT)/runs/deps.mk
PARAMS_STAMP := $(OUTPUT)/runs/$(OUTPROFILE)/params.txt
# PARAMS adds papermill parameters to every notebook, e.g. PARAMS="-p seed 7".
GPUS ?=
PARAMS ?=
# word NN of GPUS repeated once per notebook: GPUS[(NN - 1) mod len(GPUS)]
gpu_of = $(word $(patsubst 0%,%,$(firstword $(subst _, ,$(1)))),$(foreach n,$(NOTEBOOKS),$(GPUS)))

run: $(RESULTS) ## run the five notebooks with papermill into runs/$(PROFILE)/ and results/$(PROFILE)/

$(OUTPUT)/results/$(OUTPROFILE)/%.json: notebooks/%.py params/$(PROFILE)/%.yaml params/$(PROFILE)/study.yaml $(PARAMS_STAMP) $(if $(FORCE),force) | data
	$(if $(call gpu_of,$*),CUDA_VISIBLE_DEVICES=$(call gpu_of,$*)) $(PY) -m common run $< --profile $(PROFILE) $(DRY_FLAG) -p data_dir "$(DATA_DIR)" $(PARAMS)

# 02's improved configuration starts from the network that 01 trained.
$(OUTPUT)/results/$(OUTPROFILE)/02_vit_scratch_10classes.json: $(OUTPUT)/results/$(OUTPROFILE)/01_vit_scratch.json

$(DEPS): $(NOTEBOOKS) $(shell find src/common -name '*.py')
	@mkdir -p $(dir $@)
	@python3 -m common deps $(NOTEBOOKS) > $@.tmp && mv $@.tmp $@

ifeq ($(filter help setup lock test test-fast test-dry-run weights lint clean gpu-bundle,$(or $(MAKECMDGOALS),help)),)
-include $(DEPS)
# PARAMS is kept in a file that changes only when PARAMS does: a new PARAMS re-runs the
# notebooks. A new output folder starts with an empty one dated 1970 (nothing to re-run).
ifeq ($(wildcard $(PARAMS_STAMP)),)
$(shell mkdir -p "$(dir $(PARAMS_STAMP))" && touch -d @0 "$(PARAMS_STAMP)")
endif
ifneq ($(file < $(PARAMS_STAMP)),$(strip $(PARAMS)))
$(file > $(PARAMS_STAMP),$(strip $(PARAMS)))
endif
endif

report: run ## run the notebooks, then render report/_output/$(PROFILE)/rapport.{html,pdf}
	$(PY) -m common report --profile $(PROFILE) $(DRY_FLAG)

.PHONY: force
force:

weights: $(STAMP) ## download the gpu profile's pretrained weights into weights/ (needs network)
	$(PY) -m common weights download

bench: setup ## 01's training paths against the matmul peak, image loading, ViT throughput, time to accuracy
	@# 01's improved run as the notebook trains it, path by path since cf135a4, side by side
	@# with the matmul peak (float32, bfloat16; 1 and 2 threads): images/s, fraction of the
	@# peak, speed-up over cf135a4's path
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_images.py
	KERAS_BACKEND=tensorflow $(PY) benchmarks/bench_vit.py
	KERAS_BACKEND=torch $(PY) benchmarks/bench_vit.py
	@# the hybrid ViT of 01/02 (96 px, 4-convolution stem): tensorflow (its own thread pool),
	@# torch with 1 and 2 threads; on a quiet machine, then with one core kept busy
	for busy in "" --busy-core; do for run in tensorflow: torch:--threads=1 torch:--threads=2; do \
	  KERAS_BACKEND=$${run%%:*} $(PY) benchmarks/bench_vit.py --image-size 96 --patch-size 16 \
	    --stem-channels 16,32,64,64 --only nojit_aug_pipeline $${run#*:} $$busy; \
	done; done
	@# the same network as 01's recipe (16-wide heads, batch 128) on one thread: eager against
	@# torch.compile (jit_compile: true), and the FLOPs of one training step an image
	KERAS_BACKEND=torch $(PY) benchmarks/bench_vit.py --image-size 96 --patch-size 16 \
	  --stem-channels 16,32,64,64 --key-dim 16 --batch-size 128 --threads 1 --torch-compile \
	  --flops --only nojit_noaug,jit_noaug --steps 10 --warmup 3
	@# the fast 10-class recipe from scratch (params/cpu/02, run fast-scratch): its test top-1
	@# every 30 s of training and its time to 24.5 %, the best 10-class figure of 2022
	$(PY) benchmarks/time_to_accuracy.py

# What travels to a rented GPU box for benchmarks/gpu_check.sh (Python 3.12, no Keras, no
# network): .whl/ (the locked wheels it lacks, installed there with --no-deps) and
# .gl/cars10/ (the 10 classes, official ids and boxes, from CARS_DATA_DIR or the shared copy);
# fails when they and the checkout exceed the 64 MiB that can travel.
gpu-bundle: $(STAMP) ## build .whl/ and .gl/cars10/ for benchmarks/gpu_check.sh on a rented box (<= 64 MiB)
	$(PY) benchmarks/gpu_bundle.py

lint: setup ## ruff on the code and notebooks
	$(VENV)/bin/ruff check src tests benchmarks notebooks

clean: ## remove generated notebooks, runs, results, models, caches and report outputs
	rm -rf runs results models cache report/_output report/.quarto notebooks/*.ipynb report/*.ipynb
