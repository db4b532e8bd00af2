# Two commands for a new user: `make demo` and `make test`. Both install first (quick when satisfied).
PYTHON ?= python3
STAMP := .install-stamp
PYTEST_ARGS ?=

.PHONY: install demo test test-slow bench clean

# Before a first install: how much room the interpreter's prefix has. torch 2.14.1 from PyPI is a CUDA
# build on x86_64 (~5.6 GB installed with its nvidia-* libraries); pip's own error for a full disk
# ("[Errno 28] No space left on device") names neither the cause nor the place.
define DISK_CHECK
import importlib.util, shutil, sys
need = 1e9 if importlib.util.find_spec("torch") else 6.5e9
free = shutil.disk_usage(sys.prefix).free
line = f"install: {free / 1e9:.1f} GB free under {sys.prefix}"
if free < need:
    line += (f"; a first install needs about {need / 1e9:.1f} GB there (torch's CUDA build and its nvidia"
             " libraries on x86_64); if pip stops with 'No space left on device', free space or use"
             " PYTHON=<an interpreter on a larger disk>")
print(line)
endef
export DISK_CHECK

# The stamp is rebuilt when setup.cfg changes or when the imports fail (a fresh machine).
install:
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt setup.cfg ] && $(PYTHON) -c "import torch, torchvision, timm, av, cv2, zarr, h5py, dask.distributed, skvideo, preprocess, shards, train" 2>/dev/null; then \
		echo "install: dependencies already satisfied"; \
	else \
		echo "install: $(PYTHON) -m pip install -e .[test] (first time takes a few minutes)"; \
		$(PYTHON) -c "$$DISK_CHECK"; \
		$(PYTHON) -m pip install -q -e ".[test]" && touch $(STAMP); \
	fi

demo: install
	$(PYTHON) preprocess/extract.py --dataset demo --overwrite

test: install
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

test-slow: install
	$(PYTHON) -m pytest -q -m slow $(PYTEST_ARGS)

bench: install
	$(PYTHON) -m bench.extract

clean:
	rm -rf data/ runs/ $(STAMP)
