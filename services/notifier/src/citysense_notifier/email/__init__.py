"""Email to citizens over SMTP: the confirmation of an area subscription (double opt-in) and warnings.

The API's subscribe form queues a confirmation on ``citysense.citizen-mail`` (CITYSENSE_CITIZEN_MAIL_TOPIC); every
alert event of a public kind and severity (``config/cap.yaml``) sends a warning (open, update) or an all-clear
(resolve) to each confirmed area subscription whose circle covers the station, with the same words as the CAP feed
(:mod:`citysense_common.warnings`). Each email goes to one address, names only that subscription, and carries its
own unsubscribe link and ``List-Unsubscribe`` headers (RFC 2369, RFC 8058 one-click).

Delivery works like the webhooks': one immediate attempt, then the retry topic with backoff, every state in the
delivery log (``subscription_id`` = the area subscription's id). Email is off unless CITYSENSE_SMTP_HOST is set.
"""
