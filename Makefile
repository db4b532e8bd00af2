# Two commands for a new user: `make demo` and `make test`. Both install first (quick when satisfied).
PYTHON ?= python3
STAMP := .install-stamp
PYTEST_ARGS ?=

.PHONY: install demo test test-slow bench clean

# The stamp is rebuilt when setup.cfg changes or when the imports fail (a fresh machine).
install:
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt setup.cfg ] && $(PYTHON) -c "import torch, torchvision, timm, av, cv2, zarr, h5py, dask.distributed, skvideo, preprocess, shards, train" 2>/dev/null; then \
		echo "install: dependencies already satisfied"; \
	else \
		echo "install: $(PYTHON) -m pip install -e .[test] (first time takes a few minutes)"; \
		$(PYTHON) -m pip install -q -e ".[test]" && touch $(STAMP); \
	fi

demo: install
	$(PYTHON) preprocess/extract.py --dataset demo --overwrite

test: install
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

test-slow: install
	$(PYTHON) -m pytest -q -m slow $(PYTEST_ARGS)

bench: install
	$(PYTHON) -m preprocess.bench

clean:
	rm -rf data/ runs/ $(STAMP)
