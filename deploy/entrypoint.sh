#!/bin/sh
# Container entrypoint: write the registry pointer from the environment and create the
# database schema on first start (bootstrap.py), then become the server (exec, so it
# receives SIGTERM directly and drains in-flight requests).
set -eu
python /usr/local/lib/modelvc/bootstrap.py
exec modelvc server "$@"
