# Two commands set everything up on a fresh machine:
#   make demo   create .venv, install, train a small federation, print the result
#   make test   run the test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test bench install clean network-demo flower-demo

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev,flower]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/securegal train --dataset breast_cancer --parties 4 --rounds 10 --baselines --out runs/demo --overwrite

test: $(STAMP)
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

bench: $(STAMP)
	$(PY) -m pytest -q benchmarks --benchmark-only

clean:
	rm -rf $(VENV) runs .pytest_cache

# Label owner + 3 feature parties as separate processes on 127.0.0.1 with mutual TLS and fresh
# certificates; writes runs/network-demo/metrics.json and stops every process it started.
RESIDUALS ?= plain
network-demo: $(STAMP)
	rm -rf runs/network-demo runs/network-demo.federation
	$(PY) -m securegal.deploy.localnet --dataset breast_cancer --parties 4 --rounds 10 --seed 0 \
	    --residuals $(RESIDUALS) --out runs/network-demo

# The same federation on Flower's deployment runtime (issue 14): flower-superlink with TLS and
# SuperNode authentication, per feature party a party runtime and a flower-supernode, `flwr run`;
# writes runs/flower-demo/metrics.json and stops every process it started.
flower-demo: $(STAMP)
	rm -rf runs/flower-demo
	$(PY) -m securegal.deploy.flower.localnet --dataset breast_cancer --parties 4 --rounds 10 --seed 0 \
	    --residuals $(RESIDUALS) --out runs/flower-demo
