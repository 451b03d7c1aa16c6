"""Hand batches of (key, value) messages to a :class:`runner.Publisher`.

``runner.Publisher.publish`` is moving from one message per call to a list per call (a faster producer path
being written alongside the real-data sources). Until every tree has the new signature, this one function
speaks both, so the openSenseMap poller and the replay depend on the runner's publisher and not on its revision.
"""

from __future__ import annotations

import inspect
from typing import Any


def publish_batch(publisher: Any, messages: list[tuple[bytes, bytes]]) -> None:
    if not messages:
        return
    if len(inspect.signature(publisher.publish).parameters) == 1:
        publisher.publish(messages)
    else:
        for key, value in messages:
            publisher.publish(key, value)


def failed_count(publisher: Any) -> int:
    return int(getattr(getattr(publisher, "counts", None), "failed", 0))
