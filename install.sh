#!/usr/bin/env sh
# Thin wrapper: all logic lives in bootstrap.py.
cd "$(dirname "$0")" && exec python3 bootstrap.py install "$@"
