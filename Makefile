# SAEMI: `make run` serves the app, `make test` runs every test (browser tests included).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8050
WORKERS ?= 2
# The samples view's Dask cluster (see run): its scheduler's port and its worker processes.
DASK_PORT ?= 8786
DASK_WORKERS ?= 2
# Debian packages the tests need: the browser and its driver (dash_duo), tesseract (scale-bar OCR).
SYSTEM_PACKAGES := chromium chromium-driver tesseract-ocr

.PHONY: install system-deps run test lint bench demo clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# Installs with apt-get (as root, or through sudo) only what is missing.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	command -v tesseract >/dev/null 2>&1 || missing="$$missing tesseract-ocr"; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  echo "Installing with apt-get:$$missing"; \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing; \
	fi

# One Dask cluster per deployment for the samples view: a scheduler and DASK_WORKERS single-threaded worker
# processes beside gunicorn, its web workers clients of it through SAEMI_SCHEDULER. When SAEMI_SCHEDULER is set
# already, that cluster is used and none is started.
run: install
	@if [ -n "$$SAEMI_SCHEDULER" ]; then \
	  exec $(BIN)/gunicorn -c python:app.gunicorn_conf --bind $(HOST):$(PORT) --workers $(WORKERS) --timeout 300 \
	    app.wsgi:server; \
	fi; \
	export PYTHONPATH="$(CURDIR)" DASK_CONFIG="$(CURDIR)/app/dask.yaml"; \
	$(BIN)/dask scheduler --host 127.0.0.1 --port $(DASK_PORT) --no-dashboard & scheduler=$$!; \
	$(BIN)/dask worker tcp://127.0.0.1:$(DASK_PORT) --nworkers $(DASK_WORKERS) --nthreads 1 --no-dashboard \
	  --host 127.0.0.1 & workers=$$!; \
	trap 'kill $$workers $$scheduler 2>/dev/null' EXIT INT TERM; \
	SAEMI_SCHEDULER=tcp://127.0.0.1:$(DASK_PORT) $(BIN)/gunicorn -c python:app.gunicorn_conf --bind $(HOST):$(PORT) \
	  --workers $(WORKERS) --timeout 300 app.wsgi:server

lint: install
	$(BIN)/ruff check .

test: install system-deps lint
	$(BIN)/python -m pytest -q -m "not browser" --doctest-modules app/analysis model/postprocess.py model/segmenter.py model/inference.py \
	  model/config.py tests
	# The browser tests run in a process of their own: the Dask clusters and web servers they start stay there.
	$(BIN)/python -m pytest -q -m browser tests

bench: install
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_measure.py
	$(BIN)/python bench/bench_inference.py

demo: install
	$(BIN)/python -m app.make_demo

clean:
	rm -rf $(VENV)
