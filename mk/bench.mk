# Benchmarks: `make bench` runs them all (or `make bench ONLY="P4 P5"`); results in bench/results/.
.PHONY: bench
bench: $(STAMP)  ## measure the pipeline; writes bench/results/*.json and bench/results/SUMMARY.md
	@$(BIN)/python bench/run_all.py $(ONLY)
