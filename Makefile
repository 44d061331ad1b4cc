# The two commands of the README. Both are idempotent: the environment is
# built once (tools/install.sh checks a stamp), the synthetic data set is
# generated once, and a finished demo training is not repeated.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install demo test

install:
	bash tools/install.sh

demo: install
	bash tools/run_demo.sh

test: install
	$(PY) -m pytest tests -q -n 2 -p no:cacheprovider
