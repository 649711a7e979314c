# The few commands a newcomer needs. Everything runs in .venv (created by scripts/test.sh or
# scripts/demo.sh); `make test` is exactly what CI runs.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help demo lab test test-quick lint bench docs notebooks pictures mutation clean distclean

help:
	@echo "make demo        run the demo (bash scripts/demo.sh)"
	@echo "make lab         open the teaching notebooks in JupyterLab (bash scripts/demo.sh --lab)"
	@echo "make test        install everything and run every test (bash scripts/test.sh; CI runs this)"
	@echo "make test-quick  unit tests only, current Python"
	@echo "make lint        ruff + mypy"
	@echo "make bench       run the benchmarks"
	@echo "make docs        build the docs (mkdocs build --strict) into site/"
	@echo "make notebooks   re-execute notebooks/*.ipynb in place to refresh their stored outputs"
	@echo "make pictures    run the dashboard's browser tests and copy their screenshots to docs/img/"
	@echo "make mutation    mutation testing of the core modules (mutmut; 40-80 min; not in make test)"
	@echo "                 MODULES=\"scheduler state\" for some; see docs/testing.md"
	@echo "make clean       remove caches and test artifacts; distclean also removes the virtualenvs"

demo:
	bash scripts/demo.sh

lab:
	bash scripts/demo.sh --lab

test:
	bash scripts/test.sh

test-quick:
	bash scripts/test.sh --quick

lint:
	bash scripts/test.sh --lint

# The targets below use the dev env, created on first use.
$(PY):
	bash scripts/test.sh --setup

bench: $(PY)
	$(PY) -m benchmarks

docs: $(PY)
	$(VENV)/bin/mkdocs build --strict

notebooks: $(PY)
	$(VENV)/bin/jupyter execute --inplace --kernel_name=python3 notebooks/*.ipynb

# The README's and the docs' pictures: screenshots the browser tests take (test-artifacts/
# browser/NAME), copied as docs/img/NAME.
PICTURES := dashboard_showcase_graph.png:dashboard.png \
	dashboard_showcase_running.png:dashboard_live.png \
	dashboard_showcase_tasks.png:dashboard_tasks.png \
	observe_log.png:observe_log.png \
	observe_progress.png:observe_progress.png \
	observe_replay_middle.png:observe_replay.png

pictures: $(PY)
	$(PY) -m pytest tests/browser/test_dashboard.py tests/browser/test_observe.py -m browser -q
	@for pair in $(PICTURES); do \
		cp "test-artifacts/browser/$${pair%%:*}" "docs/img/$${pair##*:}" && echo "docs/img/$${pair##*:}"; \
	done

# MODULES="scheduler state" for some of them; MUTATION_JOBS=2 for mutmut's parallel workers.
mutation: $(PY)
	$(PY) scripts/mutation.py $(MODULES)

clean:
	rm -rf test-artifacts site build dist mutants .pytest_cache .mypy_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -not -path './.venv*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf .venv .venv-3.12 .venv-3.13
