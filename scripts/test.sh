#!/usr/bin/env bash
# Run the whole test suite: installs what it lacks (scripts/deps.sh: etcd 3.4 and 3.5, moto,
# Azurite and its SDK, promtool; Debian packages need root or password-less sudo), starts a moto
# S3 server and Azurite on 127.0.0.1 (etcd clusters are started by the tests themselves), runs
# `cargo test` with any arguments given, and stops the servers.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/deps.sh
. scripts/deps.sh
deps_test
MOTO=$MOTO_SERVER
PY=$LIFEBOAT_PYTHON

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
auth_port=$(free_port)
log=$(mktemp /tmp/lifeboat-moto.XXXXXX.log)
"$MOTO" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
# A second server that checks credentials (moto IAM auth) after its first, unauthenticated,
# action: the test creates its bucket with that one, then every key it uses is unknown.
INITIAL_NO_AUTH_ACTION_COUNT=1 "$MOTO" -H 127.0.0.1 -p "$auth_port" >"$log.auth" 2>&1 &
auth_pid=$!
az_port=$(free_port)
az_dir=$(mktemp -d /tmp/lifeboat-azurite.XXXXXX)
"$AZURITE_BLOB" --blobHost 127.0.0.1 --blobPort "$az_port" --location "$az_dir" --silent \
  --skipApiVersionCheck --loose --disableTelemetry >"$log.azurite" 2>&1 &
az_pid=$!
trap 'kill $moto_pid $auth_pid $az_pid 2>/dev/null || true; wait $moto_pid $auth_pid $az_pid 2>/dev/null || true; rm -rf "$az_dir" "$log" "$log.auth" "$log.azurite"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/" >/dev/null || { echo "test.sh: moto did not start; log:" >&2; cat "$log" >&2; exit 1; }
# Wait on the auth server by TCP connect only: an HTTP request would use up its one free action.
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$auth_port") 2>/dev/null && break; sleep 0.1; done
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$az_port") 2>/dev/null && break; sleep 0.1; done
export LIFEBOAT_TEST_AZURE_ENDPOINT="http://127.0.0.1:$az_port/devstoreaccount1"
export LIFEBOAT_TEST_AZURE_CONTAINER=lifeboat
# Azurite's well-known development account key (public; documented by Microsoft).
"$PY" - <<PYEOF || { echo "test.sh: cannot create the Azurite container; log:" >&2; cat "$log.azurite" >&2; exit 1; }
from azure.storage.blob import BlobServiceClient
key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
cs = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint=$LIFEBOAT_TEST_AZURE_ENDPOINT;"
BlobServiceClient.from_connection_string(cs).create_container("$LIFEBOAT_TEST_AZURE_CONTAINER")
PYEOF
export LIFEBOAT_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
# For tests that start (and kill) an S3 server of their own.
export LIFEBOAT_TEST_MOTO="$MOTO"
export LIFEBOAT_TEST_S3_AUTH_ENDPOINT="http://127.0.0.1:$auth_port"
echo "moto S3 at $LIFEBOAT_TEST_S3_ENDPOINT; Azurite at $LIFEBOAT_TEST_AZURE_ENDPOINT; etcd: $(/usr/bin/etcd --version 2>/dev/null | sed -n 1p), and $("$LIFEBOAT_TEST_ETCD35_DIR/etcd" --version | sed -n 1p) in $LIFEBOAT_TEST_ETCD35_DIR"
cargo test "$@"
