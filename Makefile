# bids_decode: `make demo` runs the app on a simulated dataset, `make test` runs the tests.
# Both create the virtual environment .venv on first use (a fresh machine needs only python3).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO ?= demo
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install demo test test-fast lint bench clean container-test

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --no-cache-dir --upgrade pip
	$(PIP) install --quiet --no-cache-dir $(TORCH_SPEC)
	$(PIP) install --quiet --no-cache-dir -e '.[test]'
	touch $@

demo: install
	rm -rf $(DEMO)
	$(PY) -m bids_decode simulate $(DEMO)/ds001246-sim --n-subjects 3
	$(PY) -m bids_decode $(DEMO)/ds001246-sim $(DEMO)/derivatives participant \
	    --features $(DEMO)/ds001246-sim/stimuli/features_simulated.h5 --roi VC LVC HVC --n-voxels 200
	$(PY) -m bids_decode $(DEMO)/ds001246-sim $(DEMO)/derivatives group
	# the ds001506 layout (numeric event codes, TR 2 s): 24 training runs, natural-image test
	$(PY) -m bids_decode simulate $(DEMO)/ds001506-sim --layout ds001506 --n-subjects 1 \
	    --n-train-runs 24 --n-test-runs 4
	$(PY) -m bids_decode $(DEMO)/ds001506-sim $(DEMO)/derivatives-ds001506 participant \
	    --features $(DEMO)/ds001506-sim/stimuli/features_simulated.h5 --n-voxels 200 \
	    --train-session 'perceptionNaturalImageTraining*' \
	    --test-session 'perceptionNaturalImageTest*'
	# two networks planted on V1 ... HVC ('hierarchical' in layer order, 'mixed' out of order),
	# decoded and encoded (--encoding: voxel-wise models, brain maps) into one OUTPUT_DIR; the
	# group level compares them and prints their BH scores (decoding, encoding, full)
	$(PY) -m bids_decode simulate $(DEMO)/ds001246-hierarchy --hierarchy --n-subjects 3 \
	    --n-train-runs 10 --n-test-runs 4
	for net in hierarchical mixed; do \
	  $(PY) -m bids_decode $(DEMO)/ds001246-hierarchy $(DEMO)/derivatives-hierarchy participant \
	      --features $(DEMO)/ds001246-hierarchy/stimuli/features_$$net.h5 \
	      --roi V1 V2 V3 V4 HVC --n-voxels 100 --encoding || exit 1; \
	done
	$(PY) -m bids_decode $(DEMO)/ds001246-hierarchy $(DEMO)/derivatives-hierarchy group
	@echo "Demo outputs in $(DEMO)/derivatives (open sub-01_net-simulated.html and"
	@echo "group/report.html), $(DEMO)/derivatives-ds001506 (the ds001506 layout) and"
	@echo "$(DEMO)/derivatives-hierarchy (two networks and their brain hierarchy scores)"

test: install
	$(PY) -m pytest -m "not container" $(PYTEST_ARGS)

# the unit tests only (no end-to-end runs, nothing over a few seconds): under a minute
test-fast: install
	$(PY) -m pytest -m "not slow and not container" $(PYTEST_ARGS)

container-test: install
	bash scripts/container-test.sh

lint: install
	$(VENV)/bin/ruff check bids_decode tests benchmarks

# the benchmark's extras (himalaya, psutil) in .venv and fastl2lir 0.11 in its own .bench-venv
$(VENV)/.bench-installed: $(VENV)/.installed
	$(PIP) install --quiet --no-cache-dir -e '.[test,bench]'
	touch $@

.bench-venv/.installed: benchmarks/requirements-fastl2lir.txt benchmarks/setup_bench_venv.sh
	bash benchmarks/setup_bench_venv.sh $(PYTHON)
	touch $@

bench: $(VENV)/.bench-installed .bench-venv/.installed
	$(PY) benchmarks/bench_decoder.py $(BENCH_ARGS)

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info
