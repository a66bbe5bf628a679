#!/bin/sh
# Container entrypoint: write the registry pointer from the environment and create the
# database schema on first start (bootstrap.py), then become `modelvc ARGS` (exec, so it
# receives SIGTERM directly and drains in-flight requests): `modelvc server` by default
# (the image's CMD), `modelvc serve --fleet ...` for a gateway (its pod's args).
set -eu
python /usr/local/lib/modelvc/bootstrap.py
exec modelvc "$@"
