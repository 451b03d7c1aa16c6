# The citizen map's browser libraries (Leaflet, leaflet.markercluster), vendored from npm into the alert API's
# static/vendor: the versions and sha512 hashes come from services/alert-api/web/package-lock.json.
.PHONY: vendor-web

vendor-web:  ## fetch the locked npm tarballs, verify their hashes, copy the map's files into static/vendor
	@python3 services/alert-api/web/vendor.py
