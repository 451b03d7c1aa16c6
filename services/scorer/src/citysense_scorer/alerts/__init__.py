"""Threshold rules and the alert engine: rules, windowed series per station, outliers and the alert lifecycle."""
