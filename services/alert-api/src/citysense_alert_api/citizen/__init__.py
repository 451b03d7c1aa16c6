"""Citizens' self-service area subscriptions in the API: rate limits, the mail requests it produces for the
notifier, and the small confirm/unsubscribe pages (routes in ``routes/citizen.py``)."""
