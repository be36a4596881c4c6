# Every install step of the project lives here: `make test` and `make demo` work on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup browser test test-slow lint demo demo-steps demo-train demo-real demo-record demo-clean demo-data clean

setup: $(STAMP) browser

# Headless Chromium renders the composite's offline map page in a test. Installed from Debian's
# packages where this runs as root with apt-get; elsewhere that one test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium) >/dev/null \
	      || echo "warning: could not install chromium; the map-page browser test will skip"; \
	  else echo "note: chromium not installed (needs root + apt-get); the map-page browser test will skip"; fi; }

# Re-runs only when the dependency list changes; otherwise `make setup` is a no-op.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# -- make demo: the whole chain on simulated data, on CPU ------------------------------------------
# Each step is a plain command; a step is skipped when its output exists (the file each run writes
# last), so a rerun only does what is missing. `make demo-clean` starts over. `make demo` writes
# only under $(DEMO_OUT) and $(DEMO_DATA) (ignored by git) and prints your numbers beside the
# committed record's; `make demo-record` regenerates that record ($(DEMO_RECORD), tracked) from
# the demo's run and two more training seeds, on purpose.
DEMO_DATA   ?= data/simulated
DEMO_OUT    ?= outputs/demo
DEMO_RECORD ?= experiments/demo
DEMO_SEED   ?= 42
# The committed record is the `make demo` run (seed $(DEMO_SEED), in $(DEMO_OUT)); two more
# training seeds (trained and tested only) give the spread of the training numbers.
DEMO_OTHER_SEEDS := 43 44
DEMO_SEED_RUNS   := $(DEMO_OUT) $(addprefix outputs/demo-seed,$(DEMO_OTHER_SEEDS))
# The demo's tiles: a persistently cloudy tropical mountain site (clear on about 1 date in 10).
DEMO_SITE   := sim-site09
DEMO_LABELED := $(DEMO_DATA)/labeled/manifest.csv
DEMO_TILES   := $(DEMO_DATA)/tiles/tiles.json
DEMO_TRAIN   := $(DEMO_OUT)/train/metrics.json
DEMO_A       := $(DEMO_OUT)/composite_a/run.json
DEMO_B       := $(DEMO_OUT)/composite_b/run.json
# The real cloudy scenes of $(REALDATA), masked by the demo's model beside ukis-csmask and
# s2cloudless (scored against their consensus; skipped where $(REALDATA) is absent).
DEMO_REAL    := $(DEMO_OUT)/real_scenes
# The best checkpoint, as the training run recorded it (expanded when a composite step starts).
DEMO_CKPT = $(shell $(PY) -c "import json; print(json.load(open('$(DEMO_TRAIN)'))['best_checkpoint'])")
# Composite settings shared by both tiles: the model at 20 m (4x fewer pixels than 10 m), the
# unmasked 25th percentile and s2cloudless as baselines, the demo's caches in $(DEMO_OUT).
DEMO_COMPOSITE_ARGS = ckpt=$(DEMO_CKPT) masks.inference.resolution=20 \
	"evaluation.baselines=[none,s2cloudless]" \
	masks.cache_dir=$(DEMO_OUT)/cache/masks work_dir=$(DEMO_OUT)/cache/windows
# The report's inputs: one demo run folder's training and composites.
demo_runs = --train $(1)/train --composite $(1)/composite_a --neighbour $(1)/composite_b

# Same numbers on any x86-64 CPU with AVX2 (see "Reproducibility" in experiments/demo/README.md):
# a fixed thread count (reductions split the same way everywhere), and torch's, oneDNN's, MKL's
# (strict conditional numerical reproducibility) and numpy's kernels held at AVX2 whatever the CPU
# offers: AVX-512/AMX kernels round differently and training drifts to another best epoch.
DEMO_TARGETS := demo demo-steps demo-train demo-real demo-record $(DEMO_LABELED) $(DEMO_TILES) $(DEMO_TRAIN) $(DEMO_A) \
	$(DEMO_B)
$(DEMO_TARGETS): export OMP_NUM_THREADS := 2
$(DEMO_TARGETS): export MKL_NUM_THREADS := 2
$(DEMO_TARGETS): export MKL_DYNAMIC := FALSE
$(DEMO_TARGETS): export MKL_CBWR := AVX2,STRICT
$(DEMO_TARGETS): export ATEN_CPU_CAPABILITY := avx2
$(DEMO_TARGETS): export ONEDNN_MAX_CPU_ISA := AVX2
ifeq ($(shell uname -m),x86_64)
$(DEMO_TARGETS): export NPY_DISABLE_CPU_FEATURES := X86_V4 AVX512_ICL AVX512_SPR
endif

demo: $(STAMP) demo-steps
	@echo "== 7/7 report: your numbers beside the committed record's ($(DEMO_RECORD))"
	$(PY) experiments/demo_report.py $(call demo_runs,$(DEMO_OUT)) --committed $(DEMO_RECORD)
	@if [ -f $(DEMO_REAL)/metrics.md ]; then \
	  echo "Real scenes: $(DEMO_REAL)/metrics.md (tables) and $(DEMO_REAL)/overlays/ (RGB, consensus, model, ukis-csmask, s2cloudless)"; fi

demo-steps: $(DEMO_A) $(DEMO_B) demo-real

# Not a file target: it runs when $(DEMO_REAL) lacks its metrics (the command writes them last).
demo-real: $(DEMO_TRAIN)
	@if [ -f $(DEMO_REAL)/metrics.json ]; then exit 0; fi; \
	if [ ! -d "$(REALDATA)" ]; then \
	  echo "== 6/7 no real scenes: $(REALDATA) not found (REALDATA=<folder of scenes> to add yours)"; exit 0; fi; \
	echo "== 6/7 mask the real scenes of $(REALDATA): the model beside ukis-csmask and s2cloudless"; \
	$(VENV)/bin/cloudfree-evaluate-masks --scenes $(REALDATA) --model demo=$(DEMO_CKPT) \
	  --producers ukis s2cloudless scl --out $(DEMO_REAL)

demo-train: $(DEMO_TRAIN)

$(DEMO_LABELED): | $(STAMP)
	@echo "== 1/7 simulate the labeled training set"
	$(VENV)/bin/cloudfree-simulate labeled --out $(DEMO_DATA)/labeled --n-scenes 100 --size 512 \
	  --no-progress

$(DEMO_TRAIN): $(DEMO_LABELED)
	@echo "== 2/7 train the tiny ViT, seed $(DEMO_SEED) (W&B offline without a key)"
	$(PY) train.py experiment=demo data.root=$(DEMO_DATA)/labeled seed=$(DEMO_SEED) \
	  hydra.run.dir=$(DEMO_OUT)/train

$(DEMO_TILES): | $(STAMP)
	@echo "== 3/7 simulate two overlapping 100-date tiles of $(DEMO_SITE)"
	$(VENV)/bin/cloudfree-simulate tiles --out $(DEMO_DATA)/tiles --site $(DEMO_SITE) --n-dates 100 \
	  --size 256 --overlap 64 --no-progress

$(DEMO_A): $(DEMO_TRAIN) $(DEMO_TILES)
	@echo "== 4/7 composite tile_a with its baselines and truth metrics"
	$(PY) composite.py stack.source=$(DEMO_DATA)/tiles/tile_a $(DEMO_COMPOSITE_ARGS) \
	  hydra.run.dir=$(DEMO_OUT)/composite_a

$(DEMO_B): $(DEMO_A)
	@echo "== 5/7 composite tile_b, seam error against tile_a"
	$(PY) composite.py stack.source=$(DEMO_DATA)/tiles/tile_b $(DEMO_COMPOSITE_ARGS) \
	  evaluation.compare_with=$(DEMO_OUT)/composite_a/composite.tif \
	  hydra.run.dir=$(DEMO_OUT)/composite_b

# The committed record: the demo's steps (as `make demo` runs them), the training with the other
# seeds (same simulated data), then the record of the demo's run with the spread over all three.
demo-record: $(STAMP) demo-steps
	for seed in $(DEMO_OTHER_SEEDS); do \
	  $(MAKE) --no-print-directory demo-train DEMO_SEED=$$seed DEMO_OUT=outputs/demo-seed$$seed \
	    || exit 1; \
	done
	$(PY) experiments/demo_report.py $(call demo_runs,$(DEMO_OUT)) --seed-runs $(DEMO_SEED_RUNS) \
	  --write-record $(DEMO_RECORD)
	rm -rf $(DEMO_RECORD)/real_scenes
	if [ -f $(DEMO_REAL)/metrics.md ]; then cp -r $(DEMO_REAL) $(DEMO_RECORD)/real_scenes; fi

demo-clean:
	rm -rf $(DEMO_OUT) $(wordlist 2,9,$(DEMO_SEED_RUNS)) $(DEMO_DATA)/labeled $(DEMO_DATA)/tiles

# -- make demo-data: the default training data ------------------------------------------------------
# The simulated labeled set plus simulated clouds on real clear backgrounds from REALDATA (a folder
# of real Sentinel-2 scenes; without it, simulated only): the best mix of
# experiments/real_training/ablation.md. Idempotent: finished steps are skipped (data/README.md).
REALDATA  ?= ../shared/realdata
DEMO_MIX  ?= data/demo
demo-data: | $(STAMP)
	$(PY) -m cloudseg.data.realdata demo --realdata $(REALDATA) --out $(DEMO_MIX)
