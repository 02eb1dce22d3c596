# Set-up and everyday commands. Every target creates/updates .venv/ first (idempotent).
PY        ?= python3.11
VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
DEMO_OUT  ?= demo_out

.PHONY: setup demo test lint format bench-hand clean

$(STAMP): requirements/lock.txt setup.py
	@command -v $(PY) >/dev/null || { echo "need $(PY) (set PY=...)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

## The main job on the embedded default: the hand model, the bundled sample dataset, its grasps
## re-evaluated in MuJoCo, the bundled object grasp library and scenes of unseen objects composed
## from it, then the bundled trained model planning grasps on those unseen-object scenes, each planned grasp
## lift-tested in MuJoCo (pictures and tables in $(DEMO_OUT)/; PLAN_MODEL=DIR plans with another model;
## --threads 1: on a busy 2-core machine two torch threads made plan() 10x slower, 9 s vs 0.8 s).
SAMPLE    := sceneleap_core/data/sample
LIBRARY   := sceneleap_core/data/library_default
PLAN_MODEL ?=
demo: $(STAMP)
	$(BIN)/sceneleap hand info
	$(BIN)/sceneleap hand draw --q open --out $(DEMO_OUT)/hand_open.png
	$(BIN)/sceneleap hand draw --q "0 0.9 0.7 0.6 0 0.9 0.7 0.6 0 0.9 0.7 0.6 1.3 0.5 0.4 0.4" --out $(DEMO_OUT)/hand_closed.png
	$(BIN)/sceneleap data stats $(SAMPLE) --verify
	$(BIN)/sceneleap data show $(SAMPLE) --index 4 --out $(DEMO_OUT)/sample_scene.png
	$(BIN)/sceneleap data export $(SAMPLE) --index 4 --scene $(DEMO_OUT)/scene.json --grasps $(DEMO_OUT)/grasps.npz
	$(BIN)/sceneleap eval-grasps --scene $(DEMO_OUT)/scene.json --grasps $(DEMO_OUT)/grasps.npz --protocol both \
		--workers 2 --json $(DEMO_OUT)/eval.json --png $(DEMO_OUT)/grasp_rollout.png
	$(BIN)/sceneleap library stats $(LIBRARY) --png $(DEMO_OUT)/library_stats.png
	rm -rf $(DEMO_OUT)/composed
	$(BIN)/sceneleap scenes compose --library $(LIBRARY) --split test --num-scenes 3 --views 2 --out $(DEMO_OUT)/composed
	$(BIN)/sceneleap scenes show $(DEMO_OUT)/composed --index 0 --grasps 4 --out $(DEMO_OUT)/composed_scene.png
	$(BIN)/sceneleap demo-plan $(if $(PLAN_MODEL),--model $(PLAN_MODEL)) --data $(DEMO_OUT)/composed --scenes 3 \
		--num-grasps 16 --workers 2 --threads 1 --out $(DEMO_OUT)/planner

## The test suite (what CI runs).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-hand: $(STAMP)
	$(BIN)/python bench/hand.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache $(DEMO_OUT)
