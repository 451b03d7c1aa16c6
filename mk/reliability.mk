# Reliability suite: `make test-reliability` runs tests/reliability (R1-R3, R8-R13; real Kafka, real scorer JVMs,
# real notifier and API processes; minutes, not seconds) — not part of `make test`, which already runs the stream
# end-to-end and delivery tests. `make soak` is R7: a 10-minute soak of the whole stack at 10,000 readings/s, writing
# bench/results/soak.json and soak.png (not for CI).
.PHONY: test-reliability soak
test-reliability: $(STAMP)  ## R1-R3, R8-R13: crashes, outages, hostile input, wrong clocks, full disks (slow)
	@CITYSENSE_RELIABILITY=1 $(BIN)/python -m pytest tests/reliability -p no:cacheprovider $(PYTEST_ARGS)

soak: $(STAMP)  ## R7: 10-minute soak at 10,000 readings/s; lag and memory curve in bench/results/soak.{json,png}
	@$(BIN)/python bench/soak.py $(SOAK_ARGS)
