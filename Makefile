# cloudinit-azure: every entry point sets up what it needs on a fresh machine.
# Nothing is installed on the host beyond the project's .venv and .cache/:
# cloud-init and the simulator's Debian tools are unpacked, never installed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEPS   := .cache/.deps-done
CLOUD_INIT ?= 22.4.2
export CLOUD_INIT

.PHONY: all venv deps test unit integration lint demo bench clean distclean test-parity \
	test-integration

all: test

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' jinja2 oauthlib configobj jsonpatch netifaces
	$(PY) tools/azure_sim/deps.py --write-pth $(VENV)
	# the simulator as a command: .venv/bin/azure-sim (docs/image-authors.md)
	ln -sf ../../tools/azure-sim $(VENV)/bin/azure-sim
	touch $@

venv: $(STAMP)

$(DEPS): $(STAMP) tools/azure_sim/deps.py
	$(PY) tools/azure_sim/deps.py
	touch $@

deps: $(DEPS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

unit: $(DEPS)
	$(PY) -m pytest -q tests/unit

integration: $(DEPS)
	$(PY) -m pytest -q tests/integration

# make test stays under 10 minutes: lint, the unit tests on both cloud-init
# versions, and the core of the simulator tier (the plug-in's provisioning, the
# simulator's fidelity, a diff subset). The rest of the simulator tier (trust
# defects, network, resource disk, kernel, preprovisioning, power-cut smoke) is
# make test-integration, which CI runs next (.ci/run).
CORE_INTEGRATION := tests/integration/test_plugin.py tests/integration/test_simulator.py \
	tests/integration/test_diff.py
test: $(DEPS) lint
	$(PY) -m pytest -q -m "not powercut" -n 2 tests/unit $(CORE_INTEGRATION)
	# The adapters import cloud-init: unit tests again against 25.1.4.
	CLOUD_INIT=25.1.4 $(PY) -m pytest -q -p no:cacheprovider tests/unit

# Two boots side by side (xdist): each test checks only its own leftovers.
test-integration: $(DEPS)
	$(PY) -m pytest -q -m "not powercut" -n 2 tests/integration \
	  $(foreach f,$(CORE_INTEGRATION),--ignore=$(f))

# azure-sim diff over every scenario on both versions (make test runs a subset;
# docs/differences.md). About 40 boots.
test-parity: $(DEPS)
	AZURE_SIM_DIFF=all $(PY) -m pytest -q -n 2 tests/integration/test_diff.py

demo: $(DEPS)
	$(PY) tools/azure-sim boot

bench: $(DEPS)
	$(PY) tools/azure-sim bench

# docs/failures.md is generated from the error classes (a unit test checks it).
.PHONY: docs
docs: $(STAMP)
	$(PY) tools/failures_doc.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache

distclean: clean
	rm -rf $(VENV) .cache

# --- packages and the VM tier (docs/packaging.md, docs/vm.md) ------------------
# Build and test tools only; never cloud-init on the host (the VM image gets it).
VM_TOOLS := debootstrap qemu-system-x86 qemu-utils openssh-client dpkg-dev debhelper \
	dh-python python3-all python3-setuptools python3-wheel python3-build python3-installer \
	pybuild-plugin-pyproject fakeroot lintian
DEB_VERSION = $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog)
DEB = dist/python3-cloudinit-azure_$(DEB_VERSION)_all.deb

.PHONY: vm-tools deb dist vm-image test-vm
# chromium: the VM tier renders azure-sim's HTML report headless and checks the screenshot
VM_TOOLS += chromium fonts-dejavu-core

vm-tools:
	@dpkg -s $(VM_TOOLS) >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(VM_TOOLS); }

deb: vm-tools
	$(PYTHON) tools/azure_sim/packaging.py deb

dist: $(STAMP)
	$(PY) -m pip install -q build
	$(PY) tools/azure_sim/packaging.py dist

vm-image: deb $(STAMP)
	cd tools && ../$(PY) -m azure_sim.vmimage --deb ../$(DEB)

# Two QEMUs side by side, one xdist worker per image (tests/vm/conftest.py);
# the power-cut cases are make test-powercut's (.ci/nightly), not CI's budget.
test-vm: $(DEPS) vm-image
	AZURE_SIM_VM=1 $(PY) -m pytest -q -m "not powercut" -n 2 --dist loadgroup \
	  --durations=15 tests/vm

# The power-cut matrix (docs/reliability.md): every cut point in the sandbox on
# both cloud-init versions, then the VM tier's nightly points (two QEMUs side by
# side, one per image). AZURE_SIM_POWERCUT_FULL=1 adds every other point on both
# images; AZURE_SIM_QEMU_LOCK=FILE makes each VM case wait for FILE's lock.
.PHONY: test-powercut test-powercut-sandbox
test-powercut-sandbox: $(DEPS)
	$(PY) -m pytest -q -m powercut -n 2 tests/integration

test-powercut: test-powercut-sandbox vm-image
	AZURE_SIM_VM=1 $(PY) -m pytest -q -m powercut -n 2 --dist loadgroup \
	  --durations=30 tests/vm
