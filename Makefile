# One command each: `make demo` (set up, then run the main job) and
# `make test` (set up, then run the tests). Both create or reuse .venv here.
# `make demo MODEL=vrwkv6` runs the demo with the VRWKV6 backbone, `make demo
# MODEL=mae` the MAE pre-training demo.
VENV ?= .venv
MODEL ?= vrwkv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo presets test lint

setup:
	bash tools/setup_env.sh

demo: setup
	PATH=$(abspath $(VENV))/bin:$$PATH MODEL=$(MODEL) bash tools/run_demo.sh

presets: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest tests $(PYTEST_ARGS)

# flake8 and isort (settings in setup.cfg: 79 columns, OpenMMLab import
# order) and clang-format (.clang-format) on the C++/CUDA sources; all three
# always run, so one call lists every problem. `isort .` and
# `clang-format -i FILE` rewrite what they report.
CXX_SOURCES = $(shell git ls-files '*.cpp' '*.h' '*.cu')

lint:
	status=0; $(PY) -m flake8 . || status=1; \
	$(PY) -m isort --check-only --diff . || status=1; \
	$(VENV)/bin/clang-format --dry-run --Werror $(CXX_SOURCES) || status=1; \
	exit $$status
