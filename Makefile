# The two commands a fresh machine needs: `make demo` and `make test`.
# Both create (or reuse) the virtual environment in .venv/ and install what they need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_output
PRESET ?= small
SEED ?= 1
PYTEST_FLAGS ?=
# `make test` runs the suite in two pytest-xdist worker processes (one per core), each test file
# on one worker so that module fixtures are built once; PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
PYTEST_XDIST = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)
# Demo training budget: a short run, enough to show learning (not a converged model).
DEMO_EPOCHS ?= 3
DEMO_STEPS ?= 100
DEMO_BATCH ?= 512
DEMO_MODELS ?= unisar,sasrec,search_baseline,sesrec,popularity
# The `full` protocol scores about this many test rows per task (a fixed hash-chosen subset of
# users, the same for every model) against the whole catalogue.
DEMO_FULL_ROWS ?= 500
UNISAR_RUN = $(DEMO_DIR)/compare/runs/unisar/seed_$(SEED)
# TensorFlow's C++ log lines stay hidden in the demo (the jsr-* commands do the same by default;
# `make demo TF_CPP_MIN_LOG_LEVEL=0` shows them).
TF_CPP_MIN_LOG_LEVEL ?= 3
export TF_CPP_MIN_LOG_LEVEL

.PHONY: demo test test-fast install clean bench

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,serving,gcp]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/jsr-simulate --preset $(PRESET) --seed $(SEED) --output_dir $(DEMO_DIR)/raw
	$(BIN)/jsr-preprocess --input_dir $(DEMO_DIR)/raw --output_dir $(DEMO_DIR)/data
	rm -rf $(DEMO_DIR)/compare $(DEMO_DIR)/two_tower $(DEMO_DIR)/serving
	$(BIN)/jsr-train --data_dir $(DEMO_DIR)/data --model_dir $(UNISAR_RUN) \
	    --epochs $(DEMO_EPOCHS) --override train.steps_per_epoch=$(DEMO_STEPS) \
	    --override train.batch_size=$(DEMO_BATCH) --override train.seed=$(SEED) --verbose 2
	$(BIN)/jsr-evaluate --data_dir $(DEMO_DIR)/data --model_dir $(UNISAR_RUN) --split test \
	    --full_max_rows $(DEMO_FULL_ROWS)
	$(BIN)/jsr-train --data_dir $(DEMO_DIR)/data --model_dir $(DEMO_DIR)/two_tower --model two_tower \
	    --epochs $(DEMO_EPOCHS) --override train.steps_per_epoch=$(DEMO_STEPS) --verbose 2
	$(BIN)/jsr-export --model_dir $(UNISAR_RUN) --retrieval_dir $(DEMO_DIR)/two_tower \
	    --export_base $(DEMO_DIR)/serving --model_name jsr --version 1
	@echo "Scoring REST requests through the SavedModel in a fresh TensorFlow-only process:"
	$(BIN)/python -m jsr_tf.export.rest --saved_model $(DEMO_DIR)/serving/jsr/1 --summary \
	    --request $(DEMO_DIR)/serving/jsr/1/assets.extra/sample_request_search.json
	$(BIN)/python -m jsr_tf.export.rest --saved_model $(DEMO_DIR)/serving/jsr/1 --summary \
	    --request $(DEMO_DIR)/serving/jsr/1/assets.extra/sample_request_retrieve.json
	@echo "Quick comparison, 1 seed (the UniSAR run above is reused):"
	$(BIN)/jsr-compare --data_dir $(DEMO_DIR)/data --output_dir $(DEMO_DIR)/compare \
	    --models $(DEMO_MODELS) --seeds 1 --first_seed $(SEED) --epochs $(DEMO_EPOCHS) \
	    --override train.steps_per_epoch=$(DEMO_STEPS) --override train.batch_size=$(DEMO_BATCH) \
	    --full_max_rows $(DEMO_FULL_ROWS)

test: $(STAMP)
	$(BIN)/python -m pytest tests $(PYTEST_XDIST) $(PYTEST_FLAGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow" $(PYTEST_XDIST) $(PYTEST_FLAGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py --presets small,medium --work_dir bench_output
	$(BIN)/python benchmarks/bench_reader.py --data_dir bench_output/medium/data
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
