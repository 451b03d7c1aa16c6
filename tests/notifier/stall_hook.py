"""Start citysense-notifier with its Kafka consumer able to hang on demand (for the liveness test).

The notifier's consumer is replaced, in the process this module starts, by a subclass whose ``poll`` and ``consume``
block for as long as the file named by CITYSENSE_TEST_STALL_FILE exists: the main loop then makes no progress while the
process, its metrics thread and its Kafka client stay alive, as when a call into Kafka hangs.
"""

from __future__ import annotations

import os
import sys
import time

from confluent_kafka import Consumer


def _wait_while_flagged() -> None:
    flag = os.environ["CITYSENSE_TEST_STALL_FILE"]
    while os.path.exists(flag):
        time.sleep(0.1)


class StallableConsumer(Consumer):
    def poll(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        _wait_while_flagged()
        return super().poll(*args, **kwargs)

    def consume(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        _wait_while_flagged()
        return super().consume(*args, **kwargs)


def command(python: str) -> list[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys; sys.path.insert(0, {here!r}); import stall_hook, citysense_notifier.service as s; "
            "s.Consumer = stall_hook.StallableConsumer; "
            "from citysense_notifier.cli import main; raise SystemExit(main())")
    return [python, "-c", code]


if __name__ == "__main__":
    sys.exit("import this module; see command()")
