# Shortcuts for developers; the README's two commands are scripts/demo and scripts/test.
.PHONY: setup test demo lint bench clean

setup:
	bash scripts/setup

test:
	bash scripts/test $(PYTEST_ARGS)

demo:
	bash scripts/demo $(DEMO_ARGS)

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: setup
	for b in bench/*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done

clean:
	rm -rf .venv var .pytest_cache .mypy_cache .ruff_cache
