# `make bench`: every benchmark (bench/README.md). Figures are printed, never asserted; the table
# goes to build/bench.md, every figure to build/bench.json, the chart to build/bench.png.
# Included by the Makefile, which defines VENV and `setup`. Benchmark-only packages (matplotlib)
# come from bench/requirements.txt, a fully pinned closure installed
# into the venv with --no-deps; the check runs after `setup`, which may have made a new venv.
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: bench

## bench: every benchmark: build/bench.{json,md,png}
bench: setup
	@if [ ! -f $(BENCH_STAMP) ] || [ bench/requirements.txt -nt $(BENCH_STAMP) ]; then \
		echo "bench: installing bench/requirements.txt into $(VENV)"; \
		$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -r bench/requirements.txt \
			> $(VENV)/.bench-pip.log 2>&1 || { cat $(VENV)/.bench-pip.log; exit 1; }; \
		$(VENV)/bin/python -c 'import matplotlib' \
			|| { echo "bench: bench/requirements.txt did not install"; exit 1; }; \
		touch $(BENCH_STAMP); \
	fi
	@tools/firmware.sh onecloud  # the one-cloud image of the flash figures (not built by make test)
	@tools/firmware.sh unix32  # the 32-bit unix ports of the mip path's RAM figures (bench/mip_ram.py)
	@$(VENV)/bin/python bench/run_all.py
