"""citysense shared library: the one place for the message contract, metric registry, settings and logging."""

__version__ = "0.1.0"
