#!/usr/bin/env bash
# End-to-end demo on a throwaway machine: starts a local 3-member etcd cluster on 127.0.0.1,
# loads some keys, generates an age key, takes an encrypted backup to a local directory, lists,
# inspects and checks it (with a restore drill), takes three more (retention prunes to the last 3),
# then destroys the cluster, restores the newest backup
# into a new member and counts the keys. Everything lives in one temp dir, removed at exit.
# Installs what it lacks first (etcd, etcdctl, protoc: scripts/deps.sh; as root or with
# password-less sudo, otherwise it prints the one apt-get command to run).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/deps.sh
. scripts/deps.sh
deps_demo
cargo build --release --quiet
LB=$PWD/target/release/lifeboat

WORK=$(mktemp -d /tmp/lifeboat-demo.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

base=$((30000 + RANDOM % 20000))
cluster=""
for i in 1 2 3; do cluster+="${cluster:+,}d$i=http://127.0.0.1:$((base + 10 + i))"; done
eps=()
for i in 1 2 3; do
  c=$((base + i)); p=$((base + 10 + i)); eps+=("http://127.0.0.1:$c")
  etcd --name d$i --data-dir "$WORK/d$i" \
    --listen-client-urls http://127.0.0.1:$c --advertise-client-urls http://127.0.0.1:$c \
    --listen-peer-urls http://127.0.0.1:$p --initial-advertise-peer-urls http://127.0.0.1:$p \
    --initial-cluster "$cluster" --initial-cluster-token demo --initial-cluster-state new \
    >"$WORK/d$i.log" 2>&1 &
  pids+=($!)
done
EP=$(IFS=,; echo "${eps[*]}")
export ETCDCTL_API=3
until etcdctl --endpoints="$EP" endpoint health >/dev/null 2>&1; do sleep 0.2; done
echo "== 3-member etcd cluster up at $EP"

for b in $(seq 0 19); do
  { echo; for k in $(seq 1 100); do printf 'put /demo/key-%04d value-%d\n' $((b*100+k)) $((b*100+k)); done; echo; echo; } \
    | etcdctl --endpoints="${eps[0]}" txn >/dev/null
done
echo "== loaded 2000 keys"

mkdir -p "$WORK/backups" "$WORK/spool"
RCPT=$("$LB" key generate --out "$WORK/identity.txt" 2>/dev/null)
cat >"$WORK/policy.yaml" <<YAML
apiVersion: lifeboat/v1
kind: BackupPolicy
metadata:
  name: demo
spec:
  cluster:
    endpoints: [$(printf '"%s",' "${eps[@]}" | sed 's/,$//')]
  snapshot: {spoolDir: $WORK/spool, timeout: 5m, stallTimeout: 30s}
  compression: {level: 3}
  encryption: {recipients: ["$RCPT"]}
  destinations:
    - {name: local, url: "file://$WORK/backups"}
  retention: {keepLast: 3}
YAML
"$LB" policy check "$WORK/policy.yaml"
ID=$("$LB" backup --policy "$WORK/policy.yaml")
echo "== backup $ID committed"
"$LB" list --policy "$WORK/policy.yaml"
ls -l "$WORK/backups/demo"
echo "== what the stored backup holds (fetched, decrypted, checked with lifeboat's own bbolt reader)"
"$LB" inspect --policy "$WORK/policy.yaml" --backup "$ID" --identity "$WORK/identity.txt"
echo "== three keys from it, without restoring anything"
"$LB" inspect --policy "$WORK/policy.yaml" --backup "$ID" --identity "$WORK/identity.txt" \
  --keys --prefix /demo/key-000 | sed -n 1,4p

echo "== prove the stored backup: download, decrypt, verify, and a restore drill in a throwaway etcd"
"$LB" check --policy "$WORK/policy.yaml" --identity "$WORK/identity.txt" --drill

echo "== three more backups: retention keeps the last 3 and prunes after every good backup"
for _ in 1 2 3; do "$LB" backup --policy "$WORK/policy.yaml" >/dev/null; done
"$LB" prune --policy "$WORK/policy.yaml" --dry-run
"$LB" list --policy "$WORK/policy.yaml"

echo "== disaster: every member and its data is gone"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
rm -rf "$WORK"/d1 "$WORK"/d2 "$WORK"/d3
pids=()

echo "== restore: stage the newest backup, restore it into a new data dir, print the runbook"
rp=$((base + 21)); rc=$((base + 22))
mkdir -p "$WORK/restore"
"$LB" restore --policy "$WORK/policy.yaml" --identity "$WORK/identity.txt" \
  --output "$WORK/restore/db.snapshot" --yes --target etcdutl \
  --name r1 --initial-cluster "r1=http://127.0.0.1:$rp" --initial-advertise-peer-urls "http://127.0.0.1:$rp" \
  --data-dir "$WORK/r1.etcd" --exec
etcd --name r1 --data-dir "$WORK/r1.etcd" \
  --listen-client-urls http://127.0.0.1:$rc --advertise-client-urls http://127.0.0.1:$rc \
  --listen-peer-urls http://127.0.0.1:$rp --initial-advertise-peer-urls http://127.0.0.1:$rp \
  >"$WORK/r1.log" 2>&1 &
pids+=($!)
until etcdctl --endpoints=http://127.0.0.1:$rc endpoint health >/dev/null 2>&1; do sleep 0.2; done
n=$(etcdctl --endpoints=http://127.0.0.1:$rc get /demo/ --prefix --keys-only | grep -c '^/demo/')
echo "== the restored member serves $n keys under /demo/ (2000 were written)"
[ "$n" = 2000 ]
echo "== demo finished; cleaning up $WORK"
