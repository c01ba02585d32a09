# SAEMI: `make run` serves the app, `make test` runs every test (browser tests included).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8050
WORKERS ?= 2

.PHONY: install run test bench demo clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

run: install
	$(BIN)/gunicorn -c python:app.gunicorn_conf --bind $(HOST):$(PORT) --workers $(WORKERS) --timeout 300 app.wsgi:server

test: install
	$(BIN)/python -m pytest --headless -q -p no:cacheprovider --doctest-modules app/analysis model/postprocess.py model/segmenter.py tests

bench: install
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_measure.py
	$(BIN)/python bench/bench_inference.py

demo: install
	$(BIN)/python -m app.make_demo

clean:
	rm -rf $(VENV)
