"""citysense_scorer."""
