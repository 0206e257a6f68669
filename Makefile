# Fresh machine: `make demo` sets up and runs train -> export -> sample; `make test` sets up and runs every test.
.PHONY: setup demo test bench

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test:
	bash scripts/setup.sh --java
	bash scripts/test.sh

bench: setup
	.venv/bin/python bench/train_speed.py
