# Belltower's developer commands. Everything runs through uv in the workspace's .venv.

# `uv` on PATH, else the copy `ensure-uv` installs with pip (python3 -m uv works either way).
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)

.PHONY: dev test test-unit lint bench bench-peers chaos clean dev-reset install ensure-uv ensure-chromium ensure-redis

dev: install
	$(UV) run --no-sync python -m belltower_dev.devstack

test: install
	$(UV) run --no-sync pytest

# The fast tier: pure logic, no servers (seconds).
test-unit: install
	$(UV) run --no-sync pytest -m unit -q

lint: install
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync mypy

bench: install ensure-redis
	$(UV) run --no-sync python bench/run.py

# Celery and arq on the same workload as e2e_runs_rate, beside Belltower's figure measured in the
# same window (they install into .venv-peers, never into the project's environment).
bench-peers: install ensure-redis
	$(UV) run --no-sync python bench/run.py --only e2e_runs_rate_vs_peers

# The fault matrix at its heavy sizes (BELLTOWER_CHAOS_SCALE=1: 10,000 runs under worker
# SIGKILLs, 25 jobs through the database outage); ends with one lost/duplicated line per case.
CHAOS_TESTS = tests/e2e/test_fault_matrix.py \
	tests/e2e/test_database_restart.py::test_a_database_down_for_30_s_under_load_loses_and_repeats_nothing \
	tests/e2e/test_failover.py::test_a_paused_leader_dispatches_nothing_once_deposed
chaos: install
	@log=$$(mktemp); \
	BELLTOWER_CHAOS_SCALE=$${BELLTOWER_CHAOS_SCALE:-1} $(UV) run --no-sync pytest -q -s \
		--timeout 1800 $(CHAOS_TESTS) >"$$log" 2>&1; status=$$?; \
	tail -n 40 "$$log" | grep -v '^fault-matrix'; echo; \
	grep -o '^[.FEsx]*fault-matrix .*' "$$log" | sed 's/^[.FEsx]*//'; rm -f "$$log"; exit $$status

# Installs every workspace member and the dev group; uv makes this a no-op when nothing changed.
install: ensure-uv ensure-chromium
	@if [ -f uv.lock ]; then $(UV) sync --all-packages --frozen; else $(UV) sync --all-packages; fi

# The console's browser tests drive Debian's Chromium (Playwright never downloads a browser here).
# Installed when missing and we are root with apt-get; otherwise those tests are skipped with a note.
ensure-chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the console's browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "warning: could not install chromium; browser tests will be skipped"; \
	else echo "note: chromium not found and not root; install it to run the console's browser tests"; fi; }

# The peers' broker for `make bench` / `bench-peers`: Debian's redis-server, installed when missing
# and we are root with apt-get (the bench starts it on a free port and stops it by pid).
ensure-redis:
	@command -v redis-server >/dev/null 2>&1 || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing redis-server for the peers' figures"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null) \
		|| echo "warning: could not install redis-server; the peers' figures will say so"; \
	else echo "note: redis-server not found and not root; install it to measure the peers"; fi; }

ensure-uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

# Removes the virtualenv and caches; `make dev`'s data in .dev/ is kept.
clean:
	rm -rf .venv .pytest_cache .ruff_cache .mypy_cache .hypothesis
	find . -path ./.dev -prune -o -type d -name __pycache__ -exec rm -rf {} +

# Wipes `make dev`'s NATS store, database, mail and batch folder.
dev-reset:
	@pid=$$(cat .dev/devstack.lock 2>/dev/null); \
	if [ -n "$$pid" ] && kill -0 "$$pid" 2>/dev/null; then \
		echo "make dev is running (pid $$pid): stop it with Ctrl-C first"; exit 1; fi
	rm -rf .dev
