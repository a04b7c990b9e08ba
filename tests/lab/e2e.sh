#!/usr/bin/env bash
# End-to-end: a 3-node cluster built by hanode in the lab (scripts/lab) forms, converges,
# fails over with the VIP, takes the old leader back, and in synchronous mode loses no
# acknowledged commit. Prints PASS/FAIL per check and a closing count.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/lab/lib.sh
trap 'lab down > /dev/null 2>&1' EXIT
lab down > /dev/null 2>&1
out=$(mktemp -d)

# 1. Three nodes, the same site file, init in parallel.
lab up > "$out/up.log" 2>&1 || { cat "$out/up.log"; bad lab-up "scripts/lab up failed"; }
grep '^lab:' "$out/up.log"
etcd_eps=10.77.0.11:2379,10.77.0.12:2379,10.77.0.13:2379
check etcd-3-healthy "3 healthy etcd members" bash -c "[ \$(scripts/lab exec pg1 etcdctl --endpoints=$etcd_eps endpoint health 2>&1 | grep -c 'is healthy') = 3 ]"
check patroni-leader-2-streaming "one leader, two streaming replicas" poll 90 healthy_cluster pg1
leader=$(lab leader)
check vip-on-leader-only "VIP on $leader and on no other node" poll 30 bash -c "source tests/lab/lib.sh; [ \"\$(vip_holders)\" = '$leader' ]"
check write-through-vip "create and fill a table through the VIP" sql "create table t (id int primary key, v text); insert into t select g, 'before' from generate_series(1, 100) g"
for r in "${NODES[@]}"; do
  [ "$r" = "$leader" ] && continue
  check "read-on-$r" "100 rows on replica $r" poll 30 bash -c "source tests/lab/lib.sh; [ \"\$(node_sql $r 'select count(*) from t')\" = 100 ]"
done

# hanode status on the leader: services, DCS, Patroni's role, the VIP, every member.
lab exec "$leader" hanode status --cluster --output json > "$out/status.json" 2>/dev/null
check status-json "status: 3 services active, etcd quorum, primary, holds the VIP, 3 members" python3 -c "
import json,sys
s=json.load(open('$out/status.json'))
assert all(x['active'] and x['main_pid'] > 0 for x in s['services']) and len(s['services']) == 3, s['services']
assert 'Ok' in s['dcs'] and '3 of 3' in s['dcs']['Ok'], s['dcs']
assert s['patroni']['role'] in ('master', 'primary') and s['holds_vip'] is True, (s['patroni'], s['holds_vip'])
assert len(s['cluster']['members']) == 3
"

# 2. Re-run init: no changes, no restarts.
pids() { for n in "${NODES[@]}"; do for u in etcd patroni vip-manager; do echo "$n $u $(lab exec "$n" systemctl show -p MainPID --value "$u")"; done; done; }
pids > "$out/pids.before"
for n in "${NODES[@]}"; do lab exec "$n" hanode init --role postgres > "$out/rerun-$n.log" 2>&1 & done; wait
for n in "${NODES[@]}"; do check "rerun-$n-no-changes" "hanode init said no changes" grep -q "no changes" "$out/rerun-$n.log"; done
pids > "$out/pids.after"
check rerun-no-restart "main PIDs unchanged" diff "$out/pids.before" "$out/pids.after"

# 3. The leader loses power: a new leader, the VIP follows, writes resume, rows kept.
old=$leader
t0=$(date +%s.%N)
lab kill "$old"
check new-leader "a new leader is elected" poll 120 bash -c "l=\$(scripts/lab leader) && [ \"\$l\" != '$old' ]"
new=$(lab leader)
check vip-moves "VIP on the new leader $new" poll 60 bash -c "source tests/lab/lib.sh; [ \"\$(vip_holders)\" = '$new' ]"
check write-after-failover "a write through the VIP succeeds" poll 60 sql "insert into t values (1000, 'after')"
echo "failover (leader killed -> write through the VIP): $(echo "$(date +%s.%N) - $t0" | bc) s"
check rows-kept "the 100 rows from before are there" bash -c "source tests/lab/lib.sh; [ \"\$(sql 'select count(*) from t where id <= 100')\" = 100 ]"
lab exec "$new" systemctl stop vip-manager
check vip-released-on-stop "systemctl stop vip-manager removes the VIP" poll 10 bash -c "source tests/lab/lib.sh; [ -z \"\$(vip_holders)\" ]"
lab exec "$new" systemctl start vip-manager
check vip-back "the VIP comes back" poll 20 bash -c "source tests/lab/lib.sh; [ \"\$(vip_holders)\" = '$new' ]"

# 4. The old leader comes back and rejoins as a replica, with the rows written since.
lab boot "$old" > /dev/null
check old-leader-rejoins "$old streams as a replica" poll 240 bash -c "source tests/lab/lib.sh; [ \"\$(role_state $new $old)\" = 'Replica streaming' ]"
check old-leader-has-new-rows "the row written after failover is on $old" poll 60 bash -c "source tests/lab/lib.sh; [ \"\$(node_sql $old 'select v from t where id = 1000')\" = after ]"

# 5. Synchronous mode: no acknowledged commit is lost across a failover.
lab down > /dev/null 2>&1
LAB_SYNC=1 lab up > "$out/up-sync.log" 2>&1 || { cat "$out/up-sync.log"; bad lab-up-sync "scripts/lab up failed"; }
check sync-cluster "a synchronous cluster forms" poll 90 healthy_cluster pg1
# The leader names its synchronous standby one HA loop after the replicas stream.
check sync-standby "a synchronous standby is chosen" poll 60 bash -c "source tests/lab/lib.sh; members_json pg1 | grep -q 'Sync Standby'"
sql "create table acked (id int primary key)"
( i=0; while [ ! -f "$out/stop" ]; do i=$((i + 1)); if sql "insert into acked values ($i)" > /dev/null; then echo "$i" >> "$out/acked"; fi; done ) &
writer=$!
poll 30 test -s "$out/acked"
old=$(lab leader)
# Writes in flight when the plug is pulled: wait until 20 have been acknowledged.
poll 30 bash -c "[ \$(wc -l < '$out/acked') -ge 20 ]"
lab kill "$old"
poll 120 bash -c "l=\$(scripts/lab leader) && [ \"\$l\" != '$old' ]"
n_before=$(wc -l < "$out/acked")
poll 90 bash -c "[ \$(wc -l < '$out/acked') -gt $n_before ]"
touch "$out/stop"; wait "$writer"
acked=$(wc -l < "$out/acked")
present=$(sql "select count(*) from acked where id in ($(paste -sd, "$out/acked"))")
echo "synchronous mode: $acked commits acknowledged, $present of them present after the failover"
check sync-no-loss "every acknowledged commit survived" test "$acked" = "$present"

echo "lab e2e:"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
