#!/usr/bin/env bash
# Starts the services Lamina's tests (and a local distributed demo) talk to, each on
# loopback, installing what is missing: RabbitMQ (Debian's package) and Garage, a real
# S3-compatible server, built once per machine into the per-user cache. Prints `export ...` lines for the settings; use it as
#   eval "$(ops/services.sh)"
# Safe to run again: a service that already answers is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/env.sh

say() { printf 'lamina services: %s\n' "$*" >&2; }

GARAGE_VERSION=2.5.0
GARAGE_HOME="$LAMINA_CACHE/garage"
GARAGE_BIN="$GARAGE_HOME/bin/garage"
GARAGE_RUN="$LAMINA_CACHE/garage-run"
GARAGE_CONF="$GARAGE_RUN/garage.toml"
GARAGE_S3=127.0.0.1:23900
GARAGE_ADMIN=127.0.0.1:23903
# Test-only credentials of the loopback server (never used anywhere else).
GARAGE_KEY_ID=GK6c616d696e612d746573740a
GARAGE_SECRET=6c616d696e612d746573742d7365637265742d6f6e6c792d666f722d6c6f6f70
GARAGE_BUCKET=lamina-test
GARAGE_REGION=us-east-1

http_ok() { python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null; }
garage_ready() { http_ok "http://$GARAGE_ADMIN/health"; }

start_garage() {
    if [ ! -x "$GARAGE_BIN" ]; then
        say "building Garage $GARAGE_VERSION with cargo install (10-15 minutes, once per machine)"
        cargo install garage --version "$GARAGE_VERSION" --locked --root "$GARAGE_HOME" >&2
    fi
    if garage_ready; then
        return
    fi
    mkdir -p "$GARAGE_RUN/meta" "$GARAGE_RUN/data"
    cat > "$GARAGE_CONF" <<CONF
metadata_dir = "$GARAGE_RUN/meta"
data_dir = "$GARAGE_RUN/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:23901"
rpc_public_addr = "127.0.0.1:23901"
rpc_secret = "$(printf '%064d' 0 | tr 0 7)"

[s3_api]
s3_region = "$GARAGE_REGION"
api_bind_addr = "$GARAGE_S3"
root_domain = ".s3.localhost"

[admin]
api_bind_addr = "$GARAGE_ADMIN"
CONF
    say "starting Garage on $GARAGE_S3"
    GARAGE_DEFAULT_ACCESS_KEY="$GARAGE_KEY_ID" GARAGE_DEFAULT_SECRET_KEY="$GARAGE_SECRET" \
        GARAGE_DEFAULT_BUCKET="$GARAGE_BUCKET" \
        nohup "$GARAGE_BIN" -c "$GARAGE_CONF" server --single-node --default-bucket \
        > "$GARAGE_RUN/garage.log" 2>&1 &
    echo $! > "$GARAGE_RUN/garage.pid"
    for _ in $(seq 1 100); do
        garage_ready && return
        sleep 0.2
    done
    say "Garage did not become ready; its log:"
    tail -20 "$GARAGE_RUN/garage.log" >&2
    exit 1
}

port_open() { python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$1" 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

start_rabbitmq() {
    if port_open 5672; then
        return
    fi
    if ! command -v rabbitmq-server >/dev/null && [ ! -x /usr/sbin/rabbitmq-server ]; then
        say "installing rabbitmq-server"
        as_root apt-get update -qq >&2 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >&2 \
            || { say "cannot install rabbitmq-server (run: apt-get install rabbitmq-server)"; exit 1; }
    fi
    say "starting RabbitMQ on 127.0.0.1:5672"
    PATH="$PATH:/usr/sbin" as_root rabbitmq-server -detached >&2 || true
    for _ in $(seq 1 150); do
        port_open 5672 && return
        sleep 0.4
    done
    say "RabbitMQ did not start"
    exit 1
}

start_rabbitmq
start_garage
cat <<ENV
export LAMINA_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f
export LAMINA_S3_ENDPOINT=http://$GARAGE_S3
export LAMINA_S3_REGION=$GARAGE_REGION
export LAMINA_S3_ACCESS_KEY_ID=$GARAGE_KEY_ID
export LAMINA_S3_SECRET_ACCESS_KEY=$GARAGE_SECRET
export LAMINA_TEST_BUCKET=$GARAGE_BUCKET
export LAMINA_TEST_GARAGE="$GARAGE_BIN -c $GARAGE_CONF"
ENV
