# The commands of the README. All are idempotent: the environment is built
# once (tools/install.sh checks a stamp), the synthetic data set is generated
# once, a finished demo training is not repeated, and the web demo's extra
# packages are installed only when missing or when their list changed.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
DEMO_CONFIG ?= configs/synthetic/sera-tiny_synthetic.py
DEMO_CKPT ?= work_dirs/demo/epoch_6.pth
WEBUI_PORT ?= 7860
WEBUI_STAMP := $(VENV)/.sera_mm-webui
DEPLOY_STAMP := $(VENV)/.sera_mm-deploy
# Python 3.12 with the GPU machines' torch 2.11.0 and torchvision 0.26.0
TORCH_VENV ?= .venv-torch2.11

.PHONY: install demo demo-gres test webui webui-deps deploy-deps test-deps device-wheels test-torch2.11

install:
	bash tools/install.sh

demo: install
	bash tools/run_demo.sh

# The GRES demo: the tiny SERA with a presence head on the synthetic
# gRefCOCO-format set (sentences naming one shape, several or none)
demo-gres: install
	CONFIG=configs/gres/sera-tiny_synthetic-gres.py WORK_DIR=work_dirs/demo_gres FORMAT=grefcoco \
	    bash tools/run_demo.sh

# The web demo's optional requirements, sera_mm's extra `webui` (Gradio, and
# Selenium for its browser test; the sera_mm package needs neither), pinned
# by the constraints.
webui-deps: install
	@want=$$(cat requirements/webui.txt requirements/constraints.txt | sha256sum | cut -c1-16); \
	if [ "$$(cat $(WEBUI_STAMP) 2>/dev/null)" = "$$want" ] && $(PY) -c "import importlib.metadata as m; \
	    [m.version(p) for p in ('gradio', 'selenium')]" 2>/dev/null; then \
	  echo "[webui-deps] gradio and selenium are installed"; \
	else \
	  echo "[webui-deps] installing sera_mm's extra webui"; \
	  $(PY) -m pip install -q --disable-pip-version-check --no-build-isolation \
	    -c requirements/constraints.txt -e ".[webui]" && echo "$$want" > $(WEBUI_STAMP); \
	fi

# ONNX export and ONNX Runtime (tools/deployment/, backend='onnxruntime'), sera_mm's
# extra `deploy`, pinned by the constraints; the tests export and run models.
deploy-deps: install
	@want=$$(cat requirements/deploy.txt requirements/constraints.txt | sha256sum | cut -c1-16); \
	if [ "$$(cat $(DEPLOY_STAMP) 2>/dev/null)" = "$$want" ] && $(PY) -c "import importlib.metadata as m; \
	    [m.version(p) for p in ('onnx', 'onnxruntime', 'onnxscript')]" 2>/dev/null; then \
	  echo "[deploy-deps] onnx, onnxruntime and onnxscript are installed"; \
	else \
	  echo "[deploy-deps] installing sera_mm's extra deploy"; \
	  $(PY) -m pip install -q --disable-pip-version-check --no-build-isolation \
	    -c requirements/constraints.txt -e ".[deploy]" && echo "$$want" > $(DEPLOY_STAMP); \
	fi

# What the tests need beyond the environment: the above, and Debian's
# headless Chromium with its driver for the web demo's browser test.
test-deps: webui-deps deploy-deps
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "[test-deps] chromium and chromedriver are installed"; \
	else \
	  echo "[test-deps] installing Debian's chromium and chromium-driver (apt)"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; \
	fi

# What a bare GPU machine installs with no package index (.device/wheels, which
# a device command carries, and .device/base-wheels: OpenCV and SciPy, for a
# machine without them), and $(TORCH_VENV), a venv holding only torch and
# torchvision, where tests/test_tools/test_device_bootstrap.py tries them.
device-wheels:
	bash tools/analysis_tools/prepare_device.sh --torch-venv $(TORCH_VENV)

test: install test-deps device-wheels
	$(PY) -m pytest tests -q -n 2 -p no:cacheprovider -m "not slow"

# The web demo on the CPU with the demo checkpoint (trained by `make demo`
# first if it is missing): open http://127.0.0.1:$(WEBUI_PORT)/
webui: webui-deps
	@[ -f $(DEMO_CKPT) ] || $(MAKE) demo
	$(PY) tools/webui.py $(DEMO_CONFIG) $(DEMO_CKPT) --device cpu --port $(WEBUI_PORT)

# The suite on the GPU machines' versions (docs/en/environment.md): Python
# 3.12, torch 2.11.0, torchvision 0.26.0, and mmcv-lite with the rest of the
# carried wheels, installed by the bootstrap with no index; pytest and the web
# demo's packages from PyPI.
test-torch2.11: device-wheels
	$(TORCH_VENV)/bin/python tools/analysis_tools/device_bootstrap.py --check
	$(TORCH_VENV)/bin/python -m pip install -q --disable-pip-version-check \
	  -r requirements/tests.txt -r requirements/webui.txt
	$(TORCH_VENV)/bin/python -m pip install -q --disable-pip-version-check \
	  --no-build-isolation --no-deps -e .
	PATH=$(abspath $(TORCH_VENV))/bin:$$PATH $(TORCH_VENV)/bin/python -m pytest tests \
	  -q -n 2 -p no:cacheprovider
