# The two commands of the README. Each creates (or reuses) .venv and installs the project first.
#   make train   learner + actor training on the default simulated task (PandaPickCube-v0)
#   make test    the test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
# robot-test: franky + franky-sim, so the robot tests drive a simulated arm through libfranka's protocol.
# envs: dm-control and box2d, for the classic pixel benchmarks (classic_envs).
EXTRAS ?= dev,rlds,robot-test,envs

.PHONY: train test install

install: $(VENV)/.installed-$(EXTRAS)

# Re-installs whenever setup.py changes.
$(VENV)/.installed-$(EXTRAS): setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

train: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash examples/async_sac_state_sim/launch.sh $(ARGS)

test: install
	MUJOCO_GL=egl $(PY) -m pytest tests $(PYTEST_ARGS)
