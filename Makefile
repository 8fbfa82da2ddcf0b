# drivenb: `make repro` runs the study, `make test` runs every test. Both build the environment first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.drivenb-env
export PATH := $(BIN):$(PATH)
export PYTHONUNBUFFERED := 1

.PHONY: env repro repro-radial repro-carla repro-hdmap repro-pimae test lint hooks export readme clean-runs lab bench imports docs outputs

$(STAMP): requirements.lock setup.py settings.ini
	@echo "== creating $(VENV) from requirements.lock (torch CUDA build, runs on CPU too; a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

env: $(STAMP)

## the study: pull the embedded dataset from the in-repo DVC remote, run the pipeline (main model, then the ablation), show metrics
repro: env
	dvc pull -q data.dvc
	dvc repro
	dvc metrics show reports/eval/metrics.json runs/train/summary.json
	@sed -n '/^| rank/,/^$$/p' reports/ablation.md
	dvc metrics show reports/radial/metrics.json
	dvc metrics show reports/carla/metrics.json
	@sed -n '/^| rank/,/^$$/p' reports/carla_ablation.md
	dvc metrics show reports/hdmap/metrics.json
	@sed -n '/^| rank/,/^$$/p' reports/hdmap_ablation.md
	dvc metrics show reports/pimae/metrics.json
	@sed -n '/^| variant/,/^$$/p' reports/pimae_ablation.md
	@sed -n '/^## Pretraining (PiMAE)/,/^## /p' reports/ablation.md

## the RADIal radar study alone: synthetic recordings -> EchoFusion layout -> train -> evaluate
repro-radial: env
	dvc repro radial_evaluate
	dvc metrics show reports/radial/metrics.json runs/radial/summary.json

## the CARLA driving study alone: synthetic routes -> index -> train -> evaluate, and the views x lidar x loss ablation
repro-carla: env
	dvc repro carla_evaluate carla_ablation_report
	dvc metrics show reports/carla/metrics.json runs/carla/summary.json
	@sed -n '/^| rank/,/^$$/p' reports/carla_ablation.md

## the map-element study alone: map expansion -> GT cache -> Q-Former detector -> Chamfer AP, and the Q-Former lr x LLM x queries ablation
repro-hdmap: env
	dvc pull -q data.dvc
	dvc repro hdmap_evaluate hdmap_ablation_report
	dvc metrics show reports/hdmap/metrics.json runs/hdmap/summary.json
	@sed -n '/^| rank/,/^$$/p' reports/hdmap_ablation.md

## the pretraining study alone: camera + lidar pairs -> PiMAE pretraining -> reconstruction metrics and the encoder export, its ablation, and the BEV fine-tune vs scratch runs
repro-pimae: env
	dvc pull -q data.dvc
	dvc repro pimae_evaluate pimae_ablation_report ablate_transfer
	dvc metrics show reports/pimae/metrics.json runs/pimae/summary.json
	@sed -n '/^| variant/,/^$$/p' reports/pimae_ablation.md
	@for f in reports/ablation/vit_cam_radar*/seed*/metrics.json; do python -c "import json,sys; m=json.load(open(sys.argv[1])); print(sys.argv[1], 'iou', round(m['iou'], 4))" $$f; done

## every test: lint (export check, clean notebooks, ruff, import layout), the notebooks (nbdev_test), then tests/ (pytest) incl. the embedded data
test: env lint
	dvc pull -q data.dvc
	nbdev_test --n_workers 2
	python -m pytest -q tests

export: env
	nbdev_export

## the source is clean: notebooks as nbdev_clean leaves them, drivenb/ what they export, no pyflakes finding, no forbidden import edge
lint: env
	nbdev_export
	@git diff --quiet -- drivenb 2>/dev/null || { echo "drivenb/ differs from what nbs/ export: edit the notebooks and run make export"; git --no-pager diff --stat -- drivenb; exit 1; }
	nbdev_clean
	@git diff --quiet -- nbs 2>/dev/null || { echo "nbdev_clean changed nbs/: commit the cleaned notebooks (make hooks does it on every commit)"; git --no-pager diff --stat -- nbs; exit 1; }
	ruff check nbs tests scripts benchmarks
	python scripts/import_graph.py --check

## a git pre-commit hook that cleans and exports the notebooks and lints (scripts/git-hooks/pre-commit)
hooks:
	git config core.hooksPath scripts/git-hooks

readme: env
	jupyter nbconvert --to markdown --log-level=WARN nbs/index.ipynb --output-dir . --output README

lab: env
	jupyter lab

## costs on this machine beside the official Simple-BEV's: writes docs/benchmarks.md (about 6 min; run it on a quiet machine)
bench: env
	python benchmarks/run.py

## which drivenb module imports which (`--check` fails on an edge the layout forbids)
imports: env
	python scripts/import_graph.py
	python scripts/import_graph.py --check

## the docs site, offline, into _site/ (open _site/index.html): the notebooks with their saved outputs (nothing is executed) and docs/*.md; scripts/docs_prepare.py drops hidden cells and #| lines
docs: env
	@mkdir -p _docs_src
	NO_MKDOCS_2_WARNING=1 mkdocs build

## execute notebooks in place keeping their outputs for the docs (then nbdev_clean): make outputs NBS="nbs/10_train.ipynb nbs/bev/40_lifting.ipynb"; default every notebook but the ablation variants (papermill's)
NBS ?= $(shell find nbs -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -not -path '*/ablations/*' | sort)
outputs: env
	python scripts/execute_notebooks.py $(NBS)
