"""Citizens' self-service area subscriptions: what the alert API (subscribe, confirm, unsubscribe) and the notifier
(confirmation and warning email) share: signed link tokens, the area test, address rules, the mail-request message
on Kafka and the settings (environment prefix ``CITYSENSE_CITIZEN_``)."""
