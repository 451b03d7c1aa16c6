"""The daily batch: aggregates per station, metric and UTC day, and year-to-date exceedance days."""
