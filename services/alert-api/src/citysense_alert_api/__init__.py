"""citysense_alert_api."""
