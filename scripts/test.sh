#!/usr/bin/env bash
# Runs every test: setup (idempotent), vet, then the whole suite with the
# race detector against real SQLite, PostgreSQL, NATS and MQTT clients.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "==> go vet"
go vet ./...
echo "==> go test -race"
go test -race -count=1 -timeout 30m "$@" ./...
echo "==> go test -race (patched mochi-mqtt server, its own module)"
(cd third_party/mochi-mqtt-server && go test -race -count=1 .)
