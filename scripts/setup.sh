#!/usr/bin/env bash
# Prepares a machine to build and test Steward. Idempotent: safe to run
# again; it installs only what is missing and starts only what is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

# Debian packages the tests use (third-party peers and tools).
PACKAGES=(mosquitto-clients jq chromium nftables)

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
		echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
		exit 1
	fi
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO=sudo
	say "installing ${missing[*]}"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Services the integration tests talk to: PostgreSQL on 127.0.0.1:5432
# (database "test") and NATS with JetStream on 127.0.0.1:4222. Start them
# when they are installed but stopped.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! port_open 5432 && command -v pg_ctlcluster >/dev/null; then
	say "starting PostgreSQL"
	pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! port_open 4222 && command -v nats-server >/dev/null; then
	say "starting NATS"
	mkdir -p /var/lib/nats-server
	start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
		-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
fi
for i in $(seq 1 30); do
	port_open 5432 && port_open 4222 && break
	sleep 1
done
port_open 5432 || echo "setup: PostgreSQL is not reachable on 127.0.0.1:5432; PostgreSQL tests will skip (or fail under CI=true)" >&2
port_open 4222 || echo "setup: NATS is not reachable on 127.0.0.1:4222; external-bus tests will skip (or fail under CI=true)" >&2

say "downloading Go modules"
go mod download

# SeaweedFS, the S3 server the object-store tests (internal/testutil/s3test)
# and bench/ota run on loopback. Its module has replace directives, which
# `go install pkg@version` refuses, so it is built from the module's source
# in the module cache. Built once per version (several minutes), then
# skipped.
WEED_VERSION=v0.0.0-20261109003541-7506e5f91cd6
GOBIN_DIR="$(go env GOPATH | cut -d: -f1)/bin"
if [ "$(cat "$GOBIN_DIR/.weed-version" 2>/dev/null)" != "$WEED_VERSION" ] || [ ! -x "$GOBIN_DIR/weed" ]; then
	say "building SeaweedFS $WEED_VERSION (S3 server for the tests; once)"
	src="$(cd /tmp && go mod download -json "github.com/seaweedfs/seaweedfs@$WEED_VERSION" | jq -r .Dir)"
	mkdir -p "$GOBIN_DIR"
	(cd "$src" && GOFLAGS=-buildvcs=false go build -o "$GOBIN_DIR/weed.new" ./weed)
	mv "$GOBIN_DIR/weed.new" "$GOBIN_DIR/weed"
	echo "$WEED_VERSION" >"$GOBIN_DIR/.weed-version"
fi
say "setup done"
