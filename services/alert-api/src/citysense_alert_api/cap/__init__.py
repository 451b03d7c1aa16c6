"""Public alerts as CAP 1.2 (OASIS Common Alerting Protocol) messages and an Atom feed of them.

``GET /v1/cap/alerts.atom`` lists the current message of every public alert; ``GET /v1/cap/alerts/{alert_id}.xml``
is one alert's current message. Which alert kinds and severities are public, the sender id, the area radius and
every text (per language, one ``<info>`` each) come from ``config/cap.yaml``, read and worded by the shared
:mod:`citysense_common.warnings` (the notifier's emails say the same).

**Messages from the newest state alone.** The store keeps one record per alert with its newest event, so each
message, and the earlier message it references, is derived from that record deterministically:

- The first message of an alert is its ``Alert``: identifier ``uuid5(alert_id|open|0)``, ``sent`` = ``opened_at``.
  A record that never changed (``updated_at == opened_at``: an open event's time is the opening time) is that
  message; any later state can still name it in ``<references>`` as ``sender,identifier,sent``.
- A later state is an ``Update`` (or ``Cancel``, below) with identifier ``uuid5(alert_id|last_event_id|0)`` and
  ``sent`` = the event's time; it references the ``Alert``. Intermediate updates are not referenced: the store does
  not keep them. ``<incidents>`` carries the alert id, which groups all messages of one alert.
- Every message has an ``expires`` (consumers such as Google Public Alerts require one). An active alert's message
  is valid for ``valid_hours``; while the alert stays unchanged it is re-issued every half of that as an
  ``Update`` (identifier number 1, 2, …, ``sent`` on the half-period boundary, referencing the ``Alert`` and the
  message it replaces), so a current message never expires while the alert lasts.

**The all-clear.** A resolved threshold alert is a ``Cancel`` of the warning (``all_clear_msg_type``) whose info
says the hazard is over: ``responseType`` ``AllClear``, ``urgency`` ``Past``, expiring ``all_clear_hours`` after the
resolution. CAP 1.2 defines ``Cancel`` as cancelling the earlier messages; the OASIS Emergency Management TC describes
that as closer to a revocation (issue EMERGENCY-31), and Google Public Alerts prefers an ``Update`` with ``AllClear``,
so a feed for such consumers sets ``all_clear_msg_type: Update``. A ``Cancel`` with ``responseType`` ``None``
withdraws earlier messages that no longer apply: a forecast that resolved (withdrawn, or superseded by the measured
alert) and an alert lowered to a severity that is not public.

**Mapping.** Severity: the rule's band label when ``severity_by_band`` names it (e.g. the EPA's ``Hazardous`` is
``Extreme``), else ``severity`` (info/warning/critical -> Minor/Moderate/Severe by default). Urgency: ``Immediate``
while active, ``Expected`` for a forecast, ``Past`` once over. Certainty: ``Observed`` for measured alerts,
``Likely`` for forecasts, ``Possible`` for statistical outliers. Category from the configuration (``Env``).
Instruction: the health advice for the alert's band, else for its severity. Area: ``areaDesc`` and a ``circle``
``lat,lon radius_km`` around the station.
"""
