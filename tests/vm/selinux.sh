#!/bin/bash
# Runs inside the SELinux test VM as /payload/run (see scripts/test-vm-selinux), at every boot:
#   1. enforcing from the start; `hanode init` (disks, selinux, etcd, Patroni, PostgreSQL on a
#      non-standard port, vip-manager) succeeds; the labels, a connection, no AVC denial from
#      the stack; a second run plans nothing; then one file is mislabelled on purpose, the whole
#      filesystem is relabelled from the policy store (fixfiles -F restore) and the VM reboots;
#   2. after the relabel: the same labels, every service up again, still no denial.
# Prints `VMTEST PASS|FAIL name` per check and a summary. The checks are tests/lib/check.sh's,
# on the payload disk as check.sh.
set -u
P=${P:-/payload}
# shellcheck source=tests/lib/check.sh
source "$P/check.sh"
vmtest_begin
PORT=5433

setype() { stat -c %C "$1" 2>/dev/null | cut -d: -f3; }
labels() { # the paths hanode labels, with their types
  for p in /pgdata /pgdata/data /pgdata/data/PG_VERSION /pgwal /pgwal/wal /opt/hanode/etcd-*/etcd /opt/hanode/vip-manager-*/vip-manager; do
    echo "$p $(setype "$p")"
  done
}
enforcing() { [ "$(getenforce)" = Enforcing ]; }
sql_ok() { [ "$(runuser -u postgres -- psql -p "$PORT" -Atc 'select 1' 2>/dev/null)" = 1 ]; }
# Over HTTPS, checked against the cluster CA that hanode put in place.
patroni_up() { python3 -c 'import ssl, urllib.request; urllib.request.urlopen("https://10.0.2.15:8008/health", timeout=2, context=ssl.create_default_context(cafile="/etc/hanode/tls/ca.crt"))' 2>/dev/null; }
# Denials from the stack hanode builds: its processes, its files, its ports.
# Stage 2 reads only what was logged after stage 1.
from=$(cat "$S/audit.from" 2>/dev/null || echo 1)
audit() { tail -n "+$from" /var/log/audit/audit.log 2>/dev/null; }
stack_denials() {
  audit | grep 'avc:  denied' \
    | grep -E 'comm="(postgres|etcd|patroni|python3|vip-manager|hanode|initdb|pg_ctl|pg_basebackup)"|/pgdata|/pgwal|/opt/hanode|src=(5433|8008|2379|2380)' || true
}
all_denials() { audit | grep -c 'avc:  denied'; }

if [ "$stage" = 1 ]; then
  expect enforcing-at-start "getenforce: $(getenforce)" enforcing
  install -D -m 0644 "$P/site.toml" /etc/hanode/hanode.toml
  install -D -m 0600 "$P/secrets.toml" /etc/hanode/secrets.toml
  t0=$(now_ms); hanode init --role postgres > "$S/init.log" 2>&1; rc=$?; t1=$(now_ms)
  echo "VMTEST TIME init-ms $((t1 - t0))"
  [ "$rc" = 0 ] || tail -40 "$S/init.log"
  expect init-exit-0 "hanode init exited $rc" test "$rc" = 0
  grep -E '^\[selinux\]|semanage|restorecon' "$S/init.log" | sed 's/^/VMTEST LOG /'
  labels > "$S/labels.before"
  sed 's/^/VMTEST LABEL /' "$S/labels.before"
  expect mounts-postgresql_db_t "pg_data, pg_wal and their contents are postgresql_db_t" \
    test "$(grep -c ' postgresql_db_t$' "$S/labels.before")" = 5
  expect binaries-bin_t "etcd and vip-manager are bin_t" test "$(grep -c ' bin_t$' "$S/labels.before")" = 2
  expect port-labelled "tcp $PORT is postgresql_port_t" bash -c "semanage port -l | grep -E '^postgresql_port_t +tcp .*\b$PORT\b'"
  expect rules-in-store "hanode's rules are local customizations in the policy store" \
    bash -c "semanage fcontext -l -C | grep -q '^/pgdata(/\.\*)?' && semanage fcontext -l -C | grep -q '^/opt/hanode/'"
  ps -eZ | grep -E ' (postgres|etcd|patroni|vip-manager)$' | awk '{print "VMTEST DOMAIN", $1, $NF}' | sort -u -k3
  expect postgres-confined "postgres runs in postgresql_t" bash -c "ps -eZ | grep ' postgres$' | grep -q postgresql_t"
  # As after the relabel: under emulation with the other lane busy, a first connection can
  # take minutes.
  expect psql-connects "select 1 over the socket on port $PORT" poll 300 sql_ok
  d=$(stack_denials); [ -z "$d" ] || echo "$d" | sed 's/^/VMTEST AVC /'
  echo "VMTEST INFO AVC denials in the whole boot: $(all_denials)"
  expect no-stack-denials "AVC denials from the stack (above)" test -z "$d"
  t0=$(now_ms); hanode init --role postgres > "$S/rerun.log" 2>&1; rc=$?; t1=$(now_ms)
  echo "VMTEST TIME rerun-ms $((t1 - t0))"
  [ "$rc" = 0 ] || { tail -40 "$S/rerun.log"; journalctl -u etcd -u patroni -n 60 --no-pager; } | sed 's/^/VMTEST LOG /'
  # The error itself in the FAIL line: a CI excerpt may keep only that line.
  expect rerun-no-changes "second run: exit $rc, $(grep -c '^- ' "$S/rerun.log") changes; $(grep -m1 'error:' "$S/rerun.log")" \
    grep -q 'no changes' "$S/rerun.log"
  expect enforcing-after-run "getenforce: $(getenforce)" enforcing
  # A full relabel from the policy store. (Debian's /.autorelabel generator does not fire
  # under enforcing in this image: its systemd generator is denied, like cloud-init's.)
  chcon -t default_t /pgdata/data/PG_VERSION
  # -T 0: setfiles on every CPU the VM has (the walk took 420 to 770 s on one, emulated).
  t0=$(now_ms); fixfiles -T 0 -F restore > "$S/relabel.log" 2>&1; rc=$?; t1=$(now_ms)
  echo "VMTEST TIME full-relabel-ms $((t1 - t0))"
  expect full-relabel "fixfiles -F restore exited $rc" test "$rc" = 0
  # Stage 2 judges what follows the relabel. While fixfiles walks the disk (minutes under
  # emulation), a PostgreSQL that Patroni restarts meets the file mislabelled just above, and
  # is denied: the test's own doing, not the stack's.
  echo $(( $(wc -l < /var/log/audit/audit.log) + 1 )) > "$S/audit.from"
  touch /run/hanode-reboot
  echo 2 > "$S/stage"
elif [ "$stage" = 2 ]; then
  expect relabel-restored "the file mislabelled before the relabel is postgresql_db_t again" \
    test "$(setype /pgdata/data/PG_VERSION)" = postgresql_db_t
  expect enforcing-after-relabel "getenforce: $(getenforce)" enforcing
  expect patroni-back "Patroni answers on 8008 after the relabel" poll 300 patroni_up
  expect psql-after-relabel "select 1 after the relabel" poll 60 sql_ok
  labels > "$S/labels.after"
  diff "$S/labels.before" "$S/labels.after" | sed 's/^/VMTEST DIFF /'
  expect labels-survive-relabel "the same types after the relabel" cmp -s "$S/labels.before" "$S/labels.after"
  for u in etcd patroni vip-manager; do expect "$u-active" "$u is active" systemctl is-active --quiet "$u"; done
  d=$(stack_denials); [ -z "$d" ] || echo "$d" | sed 's/^/VMTEST AVC /'
  expect no-stack-denials-after-relabel "AVC denials from the stack (above)" test -z "$d"
  hanode init --role postgres > "$S/rerun2.log" 2>&1
  expect rerun-after-relabel-no-changes "a run after the relabel plans nothing" grep -q 'no changes' "$S/rerun2.log"
  expect enforcing-at-end "getenforce: $(getenforce)" enforcing
  echo 3 > "$S/stage"
fi
counters_save "$S"
[ "$stage" = 1 ] || summary "VMTEST SUMMARY"
