# Two commands for a learner: `make lab` opens the lessons, `make test` runs every test.
# Both create .venv and install the project on first use; a stamp keyed on the dependency
# files means nothing is reinstalled until pyproject.toml changes (torch is ~5 GB).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: lab test setup lint clean-venv app

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mnist-lessons)"
	@rm -f $(VENV)/.installed-*
	@touch $@

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# Notebooks run their short, seeded schedule (MNISTLIB_QUICK=1) and write checkpoints to a
# throw-away folder. One lesson: make test TESTS=notebooks/03_training.ipynb
TESTS ?= tests notebooks
test: $(STAMP)
	@ckpt=$$(mktemp -d); \
	MNISTLIB_QUICK=1 MNISTLIB_CHECKPOINTS=$${MNISTLIB_CHECKPOINTS:-$$ckpt} TQDM_DISABLE=1 MPLBACKEND=Agg \
	  $(PY) -m pytest $(TESTS) --nbval-lax --nbval-current-env \
	  --nbval-kernel-startup-timeout 120 --nbval-cell-timeout 600 $(PYTEST_ARGS); \
	status=$$?; rm -rf $$ckpt; exit $$status

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)

# Lesson 09's drawing web app on http://127.0.0.1:8501 (this computer only), serving the newest best
# checkpoint. Another model or port: make app APP_ARGS="--checkpoint model.onnx --port 8502"
APP_ARGS ?=
app: $(STAMP)
	$(PY) -m mnistlib.webapp $(APP_ARGS)
