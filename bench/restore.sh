#!/usr/bin/env bash
# Benchmark: `lifeboat restore` staging a ~SIZE_MIB snapshot from S3 (moto on 127.0.0.1) against
# the plain sequential way on the same object in the same run: download (curl), `age -d`,
# `zstd -d`, then check the SHA-256 trailer (head | sha256sum vs tail). lifeboat also checks the
# stored object's SHA-256, the bbolt structure and status against the manifest, and fsyncs.
#
#   bash bench/restore.sh [SIZE_MIB]      (default 1024; results go to stdout)
#
# Needs etcd/etcdctl 3.4, zstd, age (apt install age), curl, python3, and moto_server
# (bash scripts/deps.sh test puts it in ~/.cache/lifeboat-tools/venv).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
RUNS=${RUNS:-3}
MOTO=${MOTO_SERVER:-${LIFEBOAT_TOOLS:-$HOME/.cache/lifeboat-tools}/venv/bin/moto_server}
command -v age >/dev/null || { echo "restore.sh: age not found (apt-get install age)" >&2; exit 1; }

cargo build --release --quiet
LB=$PWD/target/release/lifeboat
source bench/lib.sh

start_moto

age-keygen -o "$WORK/key.txt" 2>/dev/null
rcpt=$(age-keygen -y "$WORK/key.txt")
mkdir -p "$WORK/spool" "$WORK/out"
cat >"$WORK/policy.yaml" <<YAML
apiVersion: lifeboat/v1
kind: BackupPolicy
metadata: {name: bench}
spec:
  cluster: {endpoints: ["$EP"]}
  snapshot: {spoolDir: $WORK/spool}
  encryption: {recipients: ["$rcpt"]}
  destinations:
    - {name: s3, url: "s3://bench/etcd", options: {endpoint: "http://127.0.0.1:$s3_port", allowHttp: true}}
YAML
id=$("$LB" backup --policy "$WORK/policy.yaml")
stored=$("$LB" list --policy "$WORK/policy.yaml" --json | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["storedSize"])')
url="http://127.0.0.1:$s3_port/bench/etcd/bench/$id.snapshot.zst.age"

t_lb=$(best "$LB" restore --policy "$WORK/policy.yaml" --identity "$WORK/key.txt" \
  --output "$WORK/out/lb.db" --yes --force)
cmp -s "$WORK/out/lb.db" "$SNAP" || { echo "MISMATCH: lifeboat staged different bytes" >&2; exit 1; }
rss_lb=$(/usr/bin/time -f %M "$LB" restore --policy "$WORK/policy.yaml" --identity "$WORK/key.txt" \
  --output "$WORK/out/lb.db" --yes --force 2>&1 >/dev/null | tail -1)
rm -f "$WORK/out/lb.db"

cat >"$WORK/plain.sh" <<SH
set -e
cd "$WORK/out"
curl -fsS -o enc "$url"
age -d -i "$WORK/key.txt" -o snap.zst enc
zstd -d -q -f snap.zst -o plain.db
n=\$(stat -c %s plain.db)
want=\$(tail -c 32 plain.db | od -An -tx1 | tr -d ' \n')
got=\$(head -c \$((n - 32)) plain.db | sha256sum | cut -d' ' -f1)
[ "\$want" = "\$got" ]
sync plain.db
rm -f enc snap.zst
SH
t_plain=$(best bash "$WORK/plain.sh")
cmp -s "$WORK/out/plain.db" "$SNAP" || { echo "MISMATCH: the plain way staged different bytes" >&2; exit 1; }

python3 - <<PY
lb, plain = $t_lb, $t_plain
print(f"snapshot: {$bytes/2**20:.0f} MiB, stored (zstd + age) {$stored/2**20:.0f} MiB in moto S3 on 127.0.0.1")
print(f"machine: $(nproc) cores; best of $RUNS runs; working files on tmpfs; $(date -u +%Y-%m-%d)")
print(f"  lifeboat restore (download, decrypt, decompress, verify all, fsync)  {lb:7.3f} s   peak RSS $rss_lb KiB")
print(f"  curl; age -d; zstd -d; sha256 trailer check; sync                  {plain:7.3f} s")
print(f"  ratio lifeboat/plain                                               {lb/plain:7.2f}")
PY
