# Two commands for a learner: `make lab` opens the lessons, `make test` runs every test.
# Both create .venv and install the project on first use; a stamp keyed on the dependency
# files means nothing is reinstalled until pyproject.toml changes (torch is ~5 GB).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: lab test test-full setup lint clean-venv app screenshots

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test,book]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mnist-lessons)"
	@rm -f $(VENV)/.installed-*
	@touch $@

# Root (containers, many cloud machines) needs --allow-root; nobody else gets it.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) notebooks/

# Notebooks run their short, seeded schedule (MNISTLIB_QUICK=1) and write checkpoints to a
# throw-away folder. One lesson: make test TESTS=notebooks/03_training.ipynb
TESTS ?= tests notebooks
test: $(STAMP)
	$(VENV)/bin/lint-imports
	@ckpt=$$(mktemp -d); \
	MNISTLIB_QUICK=1 MNISTLIB_CHECKPOINTS=$${MNISTLIB_CHECKPOINTS:-$$ckpt} TQDM_DISABLE=1 MPLBACKEND=Agg \
	  $(PY) -m pytest $(TESTS) --nbval-lax --nbval-current-env \
	  --nbval-kernel-startup-timeout 120 --nbval-cell-timeout 600 $(PYTEST_ARGS); \
	status=$$?; rm -rf $$ckpt; exit $$status

# Every lesson at its full default settings, in order, from a fresh checkpoint folder, as a learner
# runs them; the executed copies (and each lesson's seconds) land in build/executed/ for the book.
test-full: $(STAMP)
	TQDM_DISABLE=1 $(PY) tests/run_lessons.py --out build/executed --checkpoints build/checkpoints

# The pictures in README and lessons 05, 08 and 09, taken by the browser tests from lesson 03's own model
# (the run `make test-full` left in build/checkpoints); each PNG names that model in a text field.
SHOTS := notebooks/images
screenshots: $(STAMP)
	@model=$$($(PY) -c "from mnistlib.checkpoints import find_checkpoint; \
	  print(find_checkpoint('lesson-03', 'build/checkpoints') or '')"); \
	test -n "$$model" || { echo "No lesson-03 run in build/checkpoints/: run 'make test-full' first."; exit 1; }; \
	MNISTLIB_SCREENSHOT_MODEL=$$model MNISTLIB_CHECKPOINTS=$(CURDIR)/build/checkpoints TQDM_DISABLE=1 \
	MNISTLIB_PAD_SCREENSHOT=$(SHOTS)/pad.png MNISTLIB_COLLECT_SCREENSHOT=$(SHOTS)/collect.png \
	MNISTLIB_APP_SCREENSHOT=$(SHOTS)/app.png MNISTLIB_WEBPAGE_SCREENSHOT=$(SHOTS)/webpage.png \
	  $(PY) -m pytest tests/test_browser_pad.py tests/test_app_browser.py tests/test_webpage_browser.py -q \
	  -p no:cacheprovider -k "not touch and not notebook_7"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)

# The series as a static HTML book (offline: mkdocs + mkdocs-jupyter, nothing loaded from another host),
# rendered from executed notebooks — by default the ones `make test-full` writes to build/executed/.
#   make book                              → build/site/ ; open with: make book-serve
#   make book BOOK_NOTEBOOKS=some/folder   → from other executed notebooks
BOOK_NOTEBOOKS ?= build/executed
BOOK_SITE      ?= build/site
.PHONY: book book-serve
book: $(STAMP)
	@ls $(BOOK_NOTEBOOKS)/[0-9][0-9]_*.ipynb >/dev/null 2>&1 || { \
	  echo "No executed lessons in $(BOOK_NOTEBOOKS)/: run 'make test-full' first (it executes every lesson"; \
	  echo "into build/executed/), or point BOOK_NOTEBOOKS at a folder of executed notebooks."; exit 1; }
	$(PY) -m mnistlib.course.book build --notebooks $(BOOK_NOTEBOOKS) --out $(BOOK_SITE)

book-serve: $(STAMP)
	$(PY) -m mnistlib.course.book serve $(BOOK_SITE)
# Lesson 09's drawing web app on http://127.0.0.1:8501 (this computer only), serving the newest best
# checkpoint. Another model or port: make app APP_ARGS="--checkpoint model.onnx --port 8502"
APP_ARGS ?=
app: $(STAMP)
	$(PY) -m mnistlib.apps.webapp $(APP_ARGS)
