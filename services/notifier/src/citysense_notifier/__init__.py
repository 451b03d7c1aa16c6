"""citysense_notifier."""
