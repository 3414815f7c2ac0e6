#!/usr/bin/env bash
# Benchmark: `lifeboat backup` against `etcdctl snapshot save` and against the plain script an
# operator would write (save; zstd -3 -T0; age; upload as `aws s3 cp` does), in one run on one throwaway
# etcd 3.4 on 127.0.0.1 loaded with about SIZE_MIB of data; S3 is moto on 127.0.0.1; working
# files on tmpfs. Also `lifeboat inspect` (with and without the trailer hash) against
# `etcdctl snapshot status`, and peak RSS of each lifeboat command.
#
#   bash bench/backup.sh [SIZE_MIB]      (default 1024; RUNS=3 best-of; results go to stdout)
#
# Needs etcd/etcdctl 3.4, zstd, age (apt-get install age), curl, python3, /usr/bin/time and
# moto_server (bash scripts/deps.sh test puts it in ~/.cache/lifeboat-tools/venv).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
RUNS=${RUNS:-3}
MOTO=${MOTO_SERVER:-${LIFEBOAT_TOOLS:-$HOME/.cache/lifeboat-tools}/venv/bin/moto_server}
for t in age zstd curl /usr/bin/time; do
  command -v $t >/dev/null || { echo "backup.sh: $t not found (apt-get install age zstd curl time)" >&2; exit 1; }
done
PYBIN=$(dirname "$MOTO")/python3
[ -x "$MOTO" ] || { echo "backup.sh: moto_server not found; run bash scripts/deps.sh test or set MOTO_SERVER" >&2; exit 1; }

cargo build --release --quiet
LB=$PWD/target/release/lifeboat
source bench/lib.sh

start_moto

age-keygen -o "$WORK/key.txt" 2>/dev/null
rcpt=$(age-keygen -y "$WORK/key.txt")
mkdir -p "$WORK/spool" "$WORK/backups" "$WORK/plain"
policy() { # policy NAME DESTINATION-YAML
  cat >"$WORK/$1.yaml" <<YAML
apiVersion: lifeboat/v1
kind: BackupPolicy
metadata: {name: $1}
spec:
  cluster: {endpoints: ["$EP"]}
  snapshot: {spoolDir: $WORK/spool}
  encryption: {recipients: ["$rcpt"]}
  destinations: [$2]
YAML
}
policy local "{name: local, url: \"file://$WORK/backups\"}"
policy s3 "{name: s3, url: \"s3://bench/etcd\", options: {endpoint: \"http://127.0.0.1:$s3_port\", allowHttp: true}}"

cat >"$WORK/plain.sh" <<SH
set -e
cd "$WORK/plain"
etcdctl --endpoints=$EP snapshot save snap.db >/dev/null
zstd -q -f -3 -T0 snap.db -o snap.db.zst
age -r "$rcpt" -o snap.db.zst.age snap.db.zst
# What \`aws s3 cp\` does (boto3's transfer manager: 8 MiB multipart, 10 threads); moto ships boto3.
"$PYBIN" -c 'import boto3, sys; boto3.client("s3", endpoint_url=sys.argv[1]).upload_file("snap.db.zst.age", "bench", "plain/snap.db.zst.age")' "http://127.0.0.1:$s3_port"
rm -f snap.db snap.db.zst snap.db.zst.age
SH

# Alternate the commands inside each round so that drift on the machine hits all of them.
python3 - "$RUNS" "$WORK" "$EP" "$LB" "$SNAP" >"$WORK/times" <<'PY'
import subprocess, sys, time
runs, work, ep, lb, snap = int(sys.argv[1]), *sys.argv[2:]
cmds = {
  "save": ["sh", "-c", f"etcdctl --endpoints={ep} snapshot save {work}/save.db >/dev/null && rm -f {work}/save.db"],
  "local": [lb, "backup", "--policy", f"{work}/local.yaml", "--no-retry"],
  "s3": [lb, "backup", "--policy", f"{work}/s3.yaml", "--no-retry"],
  "plain": ["bash", f"{work}/plain.sh"],
  "status": ["etcdctl", "snapshot", "status", snap, "-w", "json"],
  "inspect": [lb, "inspect", snap, "--json"],
  "inspect_skip": [lb, "inspect", snap, "--json", "--skip-hash-check"],
}
best = {k: float("inf") for k in cmds}
for _ in range(runs):
    for k, c in cmds.items():
        s = time.perf_counter()
        r = subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode != 0:
            sys.exit(f"{k} failed ({r.returncode}): {r.stderr.decode(errors='replace')[-2000:]}")
        best[k] = min(best[k], time.perf_counter() - s)
        if k in ("local",):
            subprocess.run(["sh", "-c", f"rm -rf {work}/backups/*"], check=True)
for k, v in best.items():
    print(k, f"{v:.3f}")
PY
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
rss_local=$(rss "$LB" backup --policy "$WORK/local.yaml" --no-retry)
rss_s3=$(rss "$LB" backup --policy "$WORK/s3.yaml" --no-retry)
rss_inspect=$(rss "$LB" inspect "$SNAP" --json)
rss_save=$(rss etcdctl --endpoints=$EP snapshot save "$WORK/save.db"); rm -f "$WORK/save.db"

# What was committed restores to the bytes etcd serves (same revision: nothing writes meanwhile).
"$LB" restore --policy "$WORK/local.yaml" --identity "$WORK/key.txt" --output "$WORK/r.db" --yes --force >/dev/null 2>&1
cmp -s "$WORK/r.db" "$SNAP" || { echo "MISMATCH: the local backup restores to different bytes" >&2; exit 1; }
rm -f "$WORK/r.db"

python3 - "$WORK/times" <<PY
import sys
t = dict((k, float(v)) for k, v in (l.split() for l in open(sys.argv[1])))
print(f"snapshot: {$bytes/2**20:.0f} MiB; machine: $(nproc) cores; best of $RUNS; tmpfs; moto on 127.0.0.1; $(date -u +%Y-%m-%d)")
print(f"  etcdctl snapshot save                      {t['save']:7.3f} s   peak RSS {$rss_save/1024:5.0f} MiB")
print(f"  plain: save; zstd -3 -T0; age; aws s3 cp {t['plain']:7.3f} s")
print(f"  lifeboat backup, local directory           {t['local']:7.3f} s   peak RSS {$rss_local/1024:5.0f} MiB")
print(f"  lifeboat backup, S3                        {t['s3']:7.3f} s   peak RSS {$rss_s3/1024:5.0f} MiB")
print(f"  etcdctl snapshot status                    {t['status']:7.3f} s")
print(f"  lifeboat inspect                           {t['inspect']:7.3f} s   peak RSS {$rss_inspect/1024:5.0f} MiB")
print(f"  lifeboat inspect --skip-hash-check         {t['inspect_skip']:7.3f} s")
print(f"ratios: local/save {t['local']/t['save']:.2f} (goal <= 1.10)  s3/plain {t['s3']/t['plain']:.2f} (<= 0.60)  "
      f"inspect/status {t['inspect']/t['status']:.2f} (<= 1.00)  skip/status {t['inspect_skip']/t['status']:.2f} (<= 0.33)")
PY
