"""Public warnings: which alerts citizens are warned about and the words they are warned with.

``config/cap.yaml`` names the public alert kinds and severities and holds every text per language (:mod:`.config`);
:mod:`.texts` turns an alert's state into a headline, description, health advice and area in one language. The
alert API's CAP 1.2 feed and the notifier's emails both build their content here, so a citizen reads the same
warning in every channel.
"""
