#!/bin/sh
# Gateway entrypoint: write the registry pointer (PostgreSQL + bucket) from the
# environment (bootstrap.py), then become the gateway (exec, so SIGTERM reaches it).
set -eu
python /usr/local/lib/modelvc/bootstrap.py
exec modelvc serve "$@"
