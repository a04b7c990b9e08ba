# Helpers for the lab tests and benchmarks (sourced; see scripts/lab).
VIP=10.77.0.100
NODES=(pg1 pg2 pg3)
LAB_DIR=${LAB_DIR:-/var/tmp/hanode-lab}
# The checks (ok, bad, check, poll, summary) and their counters.
# shellcheck source=tests/lib/check.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/check.sh"
POLL_INTERVAL=0.5
lab() { scripts/lab "$@"; }
# secret KEY: a value of the lab's secrets file (its keys are unique across its tables).
secret() { sed -n "s/^$1 = \"\(.*\)\"/\1/p" "$LAB_DIR/secrets.toml"; }
password() { secret superuser_password; }
node_addr() { echo "10.77.0.1${1#pg}"; }
# The client role the tests write as (the superuser may connect from the members only).
APP_USER=app
# libpq's TLS settings for a client on the bridge: the server's certificate must come from the
# cluster CA and name the address asked for (the VIP or a member).
client_tls() { if [ "${LAB_TLS:-1}" = 1 ]; then echo "sslmode=verify-full sslrootcert=$1"; else echo "sslmode=disable"; fi; }
# The app role, once the cluster has a leader; it may create tables in the postgres database.
create_app_role() {
  local l; l=$(scripts/lab leader) || return 1
  node_sql "$l" "create role $APP_USER login password '$(password)'" > /dev/null
  node_sql "$l" "grant create on schema public to $APP_USER" > /dev/null
  [ "$(node_sql "$l" "select count(*) from pg_roles where rolname = '$APP_USER'")" = 1 ]
}
# SQL as a client writes: through the VIP from the bridge; without a VIP (LAB_VIP=0) over TCP
# to the leader's address, from the leader (pg_hba admits only members and the VIP's subnet).
sql() {
  if [ "${LAB_VIP:-1}" = 1 ]; then
    PGPASSWORD=$(password) PGCONNECT_TIMEOUT=2 psql "host=$VIP user=$APP_USER dbname=postgres $(client_tls "$LAB_DIR/ca.crt")" -Atqc "$1" 2>/dev/null
  else
    local l; l=$(scripts/lab leader) || return 1
    lab exec "$l" env PGPASSWORD="$(password)" PGCONNECT_TIMEOUT=2 psql "host=$(node_addr "$l") user=$APP_USER dbname=postgres $(client_tls /etc/hanode/tls/ca.crt)" -Atqc "$1" 2>/dev/null
  fi
}
# SQL on one node through its local socket.
node_sql() { lab exec "$1" runuser -u postgres -- psql -Atqc "$2" 2>/dev/null; }
vip_holders() { for n in "${NODES[@]}"; do ip -n "hn-$n" -4 -o addr show eth0 2>/dev/null | grep -q " $VIP/" && echo "$n"; done; true; }
members_json() { lab exec "$1" patronictl -c /etc/patroni/patroni.yml list -f json 2>/dev/null; }
# streams_from LEADER MEMBER: the leader sends WAL to MEMBER (Patroni names each standby's
# connection after its member); Patroni 3.0 reports replicas as "running", later ones "streaming".
streams_from() { [ "$(node_sql "$1" "select count(*) from pg_stat_replication where application_name = '$2' and state = 'streaming'")" = 1 ]; }
healthy_cluster() { # NODE_ASKED: one running leader, every other member a replica it streams to
  local leader m
  leader=$(members_json "$1" | python3 -c "
import json,sys
m=json.load(sys.stdin)
leaders=[x['Member'] for x in m if x['Role']=='Leader' and x['State']=='running']
reps=[x for x in m if x['Role'] in ('Replica','Sync Standby') and x['State'] in ('streaming','running')]
print(leaders[0] if len(leaders)==1 and len(reps)==len(m)-1 and len(m)==${#NODES[@]} else '')") || return 1
  [ -n "$leader" ] || return 1
  for m in "${NODES[@]}"; do [ "$m" = "$leader" ] || streams_from "$leader" "$m" || return 1; done
}
