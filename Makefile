# Every install step of the project lives here: `make test` and `make demo` work on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup browser test test-slow lint demo demo-clean demo-data clean

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
# last), so a rerun only does what is missing. `make demo-clean` starts over.
DEMO_DATA   ?= data/simulated
DEMO_OUT    ?= outputs/demo
DEMO_RECORD ?= experiments/demo
DEMO_LABELED := $(DEMO_DATA)/labeled/manifest.csv
DEMO_TILES   := $(DEMO_DATA)/tiles/tiles.json
DEMO_TRAIN   := $(DEMO_OUT)/train/metrics.json
DEMO_A       := $(DEMO_OUT)/composite_a/run.json
DEMO_B       := $(DEMO_OUT)/composite_b/run.json
# The best checkpoint, as the training run recorded it (expanded when a composite step starts).
DEMO_CKPT = $(shell $(PY) -c "import json; print(json.load(open('$(DEMO_TRAIN)'))['best_checkpoint'])")
# Composite settings shared by both tiles: the model at 20 m (4x fewer pixels than 10 m), the
# unmasked 25th percentile and s2cloudless as baselines, the demo's caches in $(DEMO_OUT).
DEMO_COMPOSITE_ARGS = ckpt=$(DEMO_CKPT) masks.inference.resolution=20 \
	"evaluation.baselines=[none,s2cloudless]" \
	masks.cache_dir=$(DEMO_OUT)/cache/masks work_dir=$(DEMO_OUT)/cache/windows

demo: $(STAMP) $(DEMO_A) $(DEMO_B)
	@echo "== 6/6 report"
	$(PY) experiments/demo_report.py --train $(DEMO_OUT)/train --composite $(DEMO_OUT)/composite_a \
	  --neighbour $(DEMO_OUT)/composite_b --record $(DEMO_RECORD)

$(DEMO_LABELED): | $(STAMP)
	@echo "== 1/6 simulate the labeled training set"
	$(VENV)/bin/cloudfree-simulate labeled --out $(DEMO_DATA)/labeled --n-scenes 100 --size 512

$(DEMO_TRAIN): $(DEMO_LABELED)
	@echo "== 2/6 train the tiny ViT (W&B offline without a key)"
	$(PY) train.py experiment=demo data.root=$(DEMO_DATA)/labeled \
	  hydra.run.dir=$(DEMO_OUT)/train

$(DEMO_TILES): | $(STAMP)
	@echo "== 3/6 simulate two overlapping 100-date tiles"
	$(VENV)/bin/cloudfree-simulate tiles --out $(DEMO_DATA)/tiles --n-dates 100 --size 256 \
	  --overlap 64

$(DEMO_A): $(DEMO_TRAIN) $(DEMO_TILES)
	@echo "== 4/6 composite tile_a with its baselines and truth metrics"
	$(PY) composite.py stack.source=$(DEMO_DATA)/tiles/tile_a $(DEMO_COMPOSITE_ARGS) \
	  hydra.run.dir=$(DEMO_OUT)/composite_a

$(DEMO_B): $(DEMO_A)
	@echo "== 5/6 composite tile_b, seam error against tile_a"
	$(PY) composite.py stack.source=$(DEMO_DATA)/tiles/tile_b $(DEMO_COMPOSITE_ARGS) \
	  evaluation.compare_with=$(DEMO_OUT)/composite_a/composite.tif \
	  hydra.run.dir=$(DEMO_OUT)/composite_b

demo-clean:
	rm -rf $(DEMO_OUT) $(DEMO_DATA)/labeled $(DEMO_DATA)/tiles

# -- make demo-data: the default training data ------------------------------------------------------
# Simulated scenes with surfaces from a spectral library of real clear-sky pixels, over 10-60 m,
# plus simulated clouds on real clear backgrounds; from REALDATA (a folder of real Sentinel-2
# scenes; without it, simulated only). Idempotent: finished steps are skipped (data/README.md).
REALDATA  ?= ../shared/realdata
DEMO_MIX  ?= data/demo
demo-data: | $(STAMP)
	$(PY) -m cloudseg.data.realdata demo --realdata $(REALDATA) --out $(DEMO_MIX)
