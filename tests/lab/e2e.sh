#!/usr/bin/env bash
# End-to-end: 3-node clusters built by hanode in the lab (scripts/lab) form, converge, fail over
# and take the old leader back, across the matrix the README claims:
#   v2      Debian 12, Patroni 3.0 from Debian's package, VIP (vip-manager 1.0.2: etcd's v2 API);
#           then a CA rotation rolled out over the running cluster, PostgreSQL settings with a
#           rolling restart, a replica taken out (3 -> 2) and a new host brought in (2 -> 3),
#           Patroni restarted on the leader after a switchover, and every member's PostgreSQL
#           restarted in turn (restart --rolling --all, as after a minor update)
#   v3      Debian 12, Patroni 4.0 from the pinned venv, no VIP (etcd's v3 API), synchronous
#           mode: no acknowledged commit lost; the old leader's host replaced by a new one; a
#           node cut off from its DCS fails init; client networks, roles and databases
#   trixie  Debian 13, etcd 3.5, PostgreSQL 17, Patroni 4.0 from Debian's package, v3 API, TLS
#           off; a replica's host replaced by a new one
# Prints PASS/FAIL per check, each cluster's time, and a closing count.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/lab/lib.sh
trap 'lab down > /dev/null 2>&1' EXIT
lab down > /dev/null 2>&1
out=$(mktemp -d)
# etcdctl on a node, as a client with that node's certificate and as etcd's root (with TLS on,
# etcd's authentication is on).
etcd_auth_on() { [ "${LAB_TLS:-1}" = 1 ]; }
etcdctl_on() {
  local n=$1 user=(); shift
  etcd_auth_on && user=(--user "root:$(secret root_password)")
  if [ "${LAB_TLS:-1}" = 1 ]; then
    lab exec "$n" etcdctl --endpoints=https://10.77.0.11:2379,https://10.77.0.12:2379,https://10.77.0.13:2379 \
      --cacert /etc/hanode/tls/ca.crt --cert /etc/hanode/tls/node.crt --key /etc/hanode/tls/node.key "${user[@]}" "$@"
  else
    lab exec "$n" etcdctl --endpoints=http://10.77.0.11:2379,http://10.77.0.12:2379,http://10.77.0.13:2379 "$@"
  fi
}
# etcdctl asks each member with a 5 s timeout: on a busy host one may answer late.
etcd_healthy() { [ "$(etcdctl_on pg1 endpoint health 2>&1 | grep -c 'is healthy')" = 3 ]; }

# One cluster's life: form, write, converge again, lose the leader, take it back.
# $1 names the run in the checks; `cycle NAME light` leaves out status, re-runs and the
# stopped Patroni (it proves the cluster forms, fails over and rejoins). LAB_VIP says whether
# there is a VIP, LAB_SYNC whether writes go on during the failover and must all survive it.
cycle() {
  local run=$1 full=1 vip=${LAB_VIP:-1} t0=$SECONDS
  [ "${2:-}" = light ] && full=0
  lab up > "$out/up-$run.log" 2>&1 || { cat "$out/up-$run.log"; bad "$run-lab-up" "scripts/lab up failed"; return; }
  grep '^lab:' "$out/up-$run.log"
  check "$run-etcd-3-healthy" "3 healthy etcd members (etcdctl endpoint health on pg1)" poll 30 etcd_healthy
  check "$run-patroni-leader-2-streaming" "one leader, two streaming replicas" poll 90 healthy_cluster pg1
  local leader; leader=$(lab leader)
  check "$run-app-role" "a client role for the tests (the superuser connects from members only)" poll 30 create_app_role
  [ "${LAB_TLS:-1}" = 1 ] && [ "$vip" = 1 ] && tls_on_every_wire "$run" "$leader"
  etcd_auth_on && etcd_logins "$run" "$leader"
  if [ "$vip" = 1 ]; then
    check "$run-dcs-v2" "Patroni on etcd's v2 API for vip-manager 1.x" lab exec "$leader" grep -q '^etcd:' /etc/patroni/patroni.yml
    check "$run-vip-on-leader-only" "VIP on $leader and on no other node" poll 30 bash -c "source tests/lab/lib.sh; [ \"\$(vip_holders)\" = '$leader' ]"
    check "$run-vip-manager-user" "vip-manager runs as its own user, not root" \
      bash -c "[ \"\$(scripts/lab exec $leader ps -o user= -C vip-manager | sort -u)\" = vip-manager ]"
    check "$run-unit-hash-key" "the units' hash key is root's alone (0600)" \
      bash -c "[ \"\$(scripts/lab exec $leader stat -c %U:%a /var/lib/hanode/unit-hash.key)\" = root:600 ]"
  else
    check "$run-dcs-v3" "Patroni on etcd's v3 API, etcd's v2 off" bash -c "scripts/lab exec $leader grep -q '^etcd3:' /etc/patroni/patroni.yml && scripts/lab exec $leader grep -q '^enable-v2: false' /etc/hanode/etcd.yml"
    check "$run-no-vip-manager" "no vip-manager unit without a VIP" lab exec "$leader" test ! -e /etc/systemd/system/vip-manager.service
  fi
  check "$run-write" "create and fill a table through the entry" sql "create table t (id int primary key, v text); insert into t select g, 'before' from generate_series(1, 100) g"
  local r
  for r in "${NODES[@]}"; do
    [ "$r" = "$leader" ] && continue
    check "$run-read-on-$r" "100 rows on replica $r" poll 30 bash -c "source tests/lab/lib.sh; [ \"\$(node_sql $r 'select count(*) from t')\" = 100 ]"
  done

  if [ "${LAB_SYNC:-0}" = 1 ]; then
    # The leader names its synchronous standby one HA loop after the replicas stream.
    check "$run-sync-standby" "a synchronous standby is chosen" poll 60 bash -c "source tests/lab/lib.sh; members_json pg1 | grep -q 'Sync Standby'"
  fi
  [ "$full" = 1 ] && converged "$run" "$leader" "$vip"
  failover "$run" "$leader" "$vip"
  echo "$run: cluster life $((SECONDS - t0)) s"
}

# What a stranger on the bridge gets from a cluster with TLS (the default): nothing without a
# certificate of the cluster CA, no change without the REST API's password, no plain text.
tls_on_every_wire() {
  local run=$1 leader=$2 ca=$LAB_DIR/ca.crt tls=$LAB_DIR/$1-tls addr; addr=$(node_addr "$leader")
  mkdir -p "$tls"
  cp "$LAB_DIR/$leader/merged/etc/hanode/tls/node.crt" "$LAB_DIR/$leader/merged/etc/hanode/tls/node.key" "$tls/"
  # A certificate of another CA (the stranger's own), for the leader's name and address.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=stranger \
    -addext "subjectAltName=IP:10.77.0.1" -keyout "$tls/other.key" -out "$tls/other.crt" 2> /dev/null
  # /version needs no etcd login: what is checked here is the TLS handshake.
  local version="https://$addr:2379/version"
  check "$run-etcd-with-cert" "etcd answers a client with the cluster CA's certificate" \
    curl -sf --max-time 3 --cacert "$ca" --cert "$tls/node.crt" --key "$tls/node.key" "$version" -o /dev/null
  check "$run-etcd-refuses-no-cert" "etcd refuses a client without a certificate" \
    bash -c "! curl -s --max-time 3 --cacert '$ca' '$version' -o /dev/null"
  check "$run-etcd-refuses-other-ca" "etcd refuses a certificate of another CA" \
    bash -c "! curl -s --max-time 3 --cacert '$ca' --cert '$tls/other.crt' --key '$tls/other.key' '$version' -o /dev/null"
  check "$run-etcd-no-plain-http" "etcd does not answer plain http" \
    bash -c "! curl -sf --max-time 3 'http://$addr:2379/version' -o /dev/null"
  local code
  code=$(curl -s --max-time 3 --cacert "$ca" --cert "$tls/node.crt" --key "$tls/node.key" -X PATCH -d '{"ttl": 31}' -o /dev/null -w '%{http_code}' "https://$addr:8008/config")
  check "$run-patroni-patch-needs-password" "PATCH /config without the REST API's password is refused (HTTP $code)" test "$code" = 401
  code=$(curl -s --max-time 3 --cacert "$ca" -u "patroni:$(secret rest_api_password)" -X PATCH -d '{"ttl": 31}' -o /dev/null -w '%{http_code}' "https://$addr:8008/config")
  check "$run-patroni-patch-needs-cert" "PATCH /config with the password but no client certificate is refused (HTTP $code)" test "$code" != 200
  check "$run-patroni-no-plain-http" "Patroni's REST API does not answer plain http" \
    bash -c "! curl -sf --max-time 3 'http://$addr:8008/health' -o /dev/null"
  check "$run-psql-verify-full-via-vip" "psql with sslmode=verify-full and the CA works through the VIP" \
    bash -c "[ \"\$(PGPASSWORD='$(password)' PGCONNECT_TIMEOUT=3 psql 'host=$VIP user=$APP_USER dbname=postgres sslmode=verify-full sslrootcert=$ca' -Atqc 'select ssl from pg_stat_ssl where pid = pg_backend_pid()')\" = t ]"
  check "$run-psql-refuses-plain" "psql with sslmode=disable is refused" \
    bash -c "! PGPASSWORD='$(password)' PGCONNECT_TIMEOUT=3 psql 'host=$VIP user=$APP_USER dbname=postgres sslmode=disable' -Atqc 'select 1' 2> /dev/null"
  check "$run-psql-superuser-only-from-members" "the superuser is refused from the bridge, even with TLS" \
    bash -c "! PGPASSWORD='$(password)' PGCONNECT_TIMEOUT=3 psql 'host=$VIP user=postgres dbname=postgres sslmode=verify-full sslrootcert=$ca' -Atqc 'select 1' 2> /dev/null"
  check "$run-replication-over-tls" "the replicas stream over TLS" \
    bash -c "[ \"\$(source tests/lab/lib.sh; node_sql $leader \"select count(*) from pg_stat_replication r join pg_stat_ssl s using (pid) where s.ssl\")\" = 2 ]"
  check "$run-status-shows-certificate" "hanode status shows the certificate's days left" \
    bash -c "scripts/lab exec $leader hanode status | grep -q 'TLS: node certificate expires in 39[67] days'"
}

# A CA rotation (`hanode secrets rotate-ca`, three steps), each step rolled out by re-running
# init on one node after another: after each node the cluster is healthy under the same leader
# (etcd restarts, Patroni only reloads), writes go through, and at the end the old CA is refused.
# pg3 skips step 2: the first node to take step 3 refuses until pg3 has caught up.
ca_rotation() {
  local run=$1 leader step n rc tls=$LAB_DIR/$1-rotation bin=${HANODE_BIN:-target/debug/hanode} addr
  leader=$(lab leader); addr=$(node_addr "$leader"); mkdir -p "$tls"
  cp "$LAB_DIR/ca.crt" "$tls/old-ca.crt"
  # A client certificate of the old CA, signed with its key: taken before, refused after.
  python3 -c "import tomllib; print(tomllib.load(open('$LAB_DIR/secrets.toml', 'rb'))['tls']['ca_key'], end='')" > "$tls/old-ca.key"
  printf 'subjectAltName=IP:10.77.0.1\nextendedKeyUsage=clientAuth\n' > "$tls/ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /O=hanode -keyout "$tls/old.key" -out "$tls/old.csr" 2> /dev/null
  openssl x509 -req -in "$tls/old.csr" -CA "$tls/old-ca.crt" -CAkey "$tls/old-ca.key" -days 1 -extfile "$tls/ext" -out "$tls/old.crt" 2> /dev/null
  local version="https://$addr:2379/version" old_client="--cert $tls/old.crt --key $tls/old.key"
  check "$run-rotation-before" "before the rotation, etcd takes a client certificate of the CA" \
    bash -c "curl -sf --max-time 3 --cacert '$tls/old-ca.crt' $old_client '$version' -o /dev/null"
  patroni_pids() { for n in "${NODES[@]}"; do lab exec "$n" systemctl show -p MainPID --value patroni; done | tr '\n' ' '; }
  local pids; pids=$(patroni_pids)
  for step in 1 2 3; do
    "$bin" secrets rotate-ca --file "$LAB_DIR/secrets.toml" > "$out/rotate-$run-$step.log" 2>&1
    check "$run-rotation-$step" "hanode secrets rotate-ca takes step $step" grep -q "step $step of 3" "$out/rotate-$run-$step.log"
    "$bin" secrets show-ca --file "$LAB_DIR/secrets.toml" > "$LAB_DIR/ca.crt"
    local order=("${NODES[@]}")
    # pg3 misses step 2: step 3 on pg1 must refuse (pg3 would be cut off) until pg3 has run.
    [ "$step" = 2 ] && order=(pg1 pg2)
    if [ "$step" = 3 ]; then
      install -m 0600 "$LAB_DIR/secrets.toml" "$LAB_DIR/pg1/merged/etc/hanode/secrets.toml"
      lab exec pg1 hanode init --role postgres > "$out/rotate-$run-3-refused.log" 2>&1; rc=$?
      check "$run-rotation-3-refused-while-pg3-lags" "init on pg1 refuses (exit 3, got $rc) to drop the old CA while pg3 presents a certificate of it" \
        bash -c "[ $rc = 3 ] && grep -q \"pg3's Patroni\" '$out/rotate-$run-3-refused.log'"
      order=(pg3 pg1 pg2)
    fi
    for n in "${order[@]}"; do
      install -m 0600 "$LAB_DIR/secrets.toml" "$LAB_DIR/$n/merged/etc/hanode/secrets.toml"
      lab exec "$n" hanode init --role postgres > "$out/rotate-$run-$step-$n.log" 2>&1; rc=$?
      check "$run-rotation-$step-$n" "init on $n exits 0 (got $rc) with a new certificate, etcd restarted, Patroni reloaded" bash -c "
        [ $rc = 0 ] && grep -q 'node.crt.*a new one' '$out/rotate-$run-$step-$n.log' &&
        grep -q 'systemctl restart etcd.service' '$out/rotate-$run-$step-$n.log' &&
        grep -q 'systemctl reload patroni.service' '$out/rotate-$run-$step-$n.log'"
      check "$run-rotation-$step-$n-healthy" "the cluster is healthy after $n" poll 60 healthy_cluster pg1
    done
    check "$run-rotation-$step-write" "a write through the entry after step $step" poll 30 sql "insert into t values ($((2000 + step)), 'rotated')"
  done
  local now_leader; now_leader=$(lab leader)
  check "$run-rotation-same-leader" "$leader leads throughout (now: $now_leader), no Patroni restarted" \
    test "$now_leader $(patroni_pids)" = "$leader $pids"
  check "$run-rotation-old-client-refused" "etcd refuses the old CA's client certificate" \
    bash -c "! curl -s --max-time 3 --cacert '$LAB_DIR/ca.crt' $old_client '$version' -o /dev/null"
  # etcd is asked with the node's own (new) client certificate: only its server certificate
  # decides whether the old CA verifies it.
  local node_client="--cert $LAB_DIR/$leader/merged/etc/hanode/tls/node.crt --key $LAB_DIR/$leader/merged/etc/hanode/tls/node.key"
  check "$run-rotation-servers-new-ca" "etcd, Patroni and PostgreSQL present certificates of the new CA, not of the old" bash -c "
    curl -sf --max-time 3 --cacert '$LAB_DIR/ca.crt' https://$addr:8008/health -o /dev/null &&
    ! curl -s --max-time 3 --cacert '$tls/old-ca.crt' https://$addr:8008/health -o /dev/null &&
    curl -sf --max-time 3 --cacert '$LAB_DIR/ca.crt' $node_client https://$addr:2379/version -o /dev/null &&
    ! curl -s --max-time 3 --cacert '$tls/old-ca.crt' $node_client https://$addr:2379/version -o /dev/null &&
    PGPASSWORD='$(password)' PGCONNECT_TIMEOUT=3 psql 'host=$VIP user=$APP_USER dbname=postgres sslmode=verify-full sslrootcert=$LAB_DIR/ca.crt' -Atqc 'select 1' > /dev/null &&
    ! PGPASSWORD='$(password)' PGCONNECT_TIMEOUT=3 psql 'host=$VIP user=$APP_USER dbname=postgres sslmode=verify-full sslrootcert=$tls/old-ca.crt' -Atqc 'select 1' 2> /dev/null"
}

# PostgreSQL settings from the site file, through Patroni's dynamic configuration: one re-run
# sets them for every member; one that needs a restart is pending until `hanode restart
# --rolling`, which restarts the replicas, switches over and restarts the old leader, while a
# writer through the VIP measures the longest time without a successful write.
# patroni_get NODE PATH: a read of a member's REST API from the bridge (over TLS with the CA).
patroni_get() {
  if [ "${LAB_TLS:-1}" = 1 ]; then curl -sf --max-time 2 --cacert "$LAB_DIR/ca.crt" "https://$(node_addr "$1"):8008$2"
  else curl -sf --max-time 2 "http://$(node_addr "$1"):8008$2"; fi
}

# A writer through the entry, one connection per insert, each acknowledged insert's time
# recorded: timed_writer_start TABLE; then timed_writer_stop CHECK WHAT checks that writes go
# on, stops it and prints the longest time without a write.
timed_writer_start() {
  rm -f "$out/stop" "$out/written"; sql "create table $1 (id int primary key)"
  ( i=0; while [ ! -f "$out/stop" ]; do i=$((i + 1)); sql "insert into $1 values ($i)" > /dev/null && date +%s.%N >> "$out/written"; done ) &
  timed_writer=$!
  poll 30 bash -c "[ -s '$out/written' ]"
}
timed_writer_stop() {
  local n0 gap; n0=$(wc -l < "$out/written")
  check "$1" "writes through the entry go on afterwards" poll 60 bash -c "[ \$(wc -l < '$out/written') -gt $n0 ]"
  touch "$out/stop"; wait "$timed_writer"
  gap=$(awk 'NR > 1 && $1 - p > m { m = $1 - p } { p = $1 } END { printf "%.1f", m }' "$out/written")
  echo "$2: longest time without a write through the entry $gap s ($(wc -l < "$out/written") writes)"
}

parameters() {
  local run=$1 n rc bin=${HANODE_BIN:-target/debug/hanode} leader
  leader=$(lab leader)
  set_parameters() { for n in "${NODES[@]}"; do
    sed -i '/^\[postgresql\]/,$d' "$LAB_DIR/$n/merged/etc/hanode/hanode.toml"
    printf '[postgresql]\nparameters = { %s }\n' "$1" >> "$LAB_DIR/$n/merged/etc/hanode/hanode.toml"
  done; }
  set_parameters 'wrok_mem = "8MB"'
  lab exec pg1 hanode init --role postgres > "$out/param-$run-typo.log" 2>&1; rc=$?
  check "$run-param-unknown-exit-2" "an unknown parameter name is refused (exit $rc) before anything changes" \
    bash -c "[ $rc = 2 ] && grep -q 'no parameter wrok_mem' '$out/param-$run-typo.log'"
  set_parameters 'work_mem = "8MB", max_connections = 150'
  # A Patroni timing changes on the running cluster too (and stays for the scripts/lab site
  # files written from here on: the host that replaces one in shrink_grow).
  for n in "${NODES[@]}"; do sed -i 's/^ttl = 30$/ttl = 40/' "$LAB_DIR/$n/merged/etc/hanode/hanode.toml"; done
  export LAB_TTL=40
  lab exec pg1 hanode plan --role postgres > "$out/param-$run-plan.log" 2>&1
  check "$run-param-plan" "plan shows both settings, max_connections as needing a restart" \
    bash -c "grep -q 'set postgresql.parameters.work_mem to \"8MB\"' '$out/param-$run-plan.log' && grep 'postgresql.parameters.max_connections' '$out/param-$run-plan.log' | grep -q 'must restart'"
  lab exec pg1 hanode init --role postgres > "$out/param-$run-init.log" 2>&1; rc=$?
  check "$run-param-init" "init on pg1 exits 0 (got $rc), setting both and ttl for the cluster in one PATCH" bash -c "[ $rc = 0 ] &&
    grep -q 'Patroni: 3 settings of the dynamic configuration' '$out/param-$run-init.log' &&
    [ \$(grep -c 'set postgresql.parameters.\(work_mem\|max_connections\) to' '$out/param-$run-init.log') = 2 ] &&
    grep -q 'set ttl to 40 (was 30)' '$out/param-$run-init.log'"
  for n in "${NODES[@]}"; do
    check "$run-param-ttl-$n" "$n's Patroni works with ttl 40" poll 60 bash -c "source tests/lab/lib.sh; $(declare -f patroni_get); [ \"\$(patroni_get $n /config | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"ttl\"])')\" = 40 ]"
  done
  for n in "${NODES[@]}"; do
    check "$run-param-live-$n" "work_mem is 8MB on $n without a restart" poll 60 bash -c "source tests/lab/lib.sh; [ \"\$(node_sql $n 'show work_mem')\" = 8MB ]"
  done
  check "$run-param-pending" "hanode status --cluster shows the restart pending on every member" \
    poll 60 bash -c "[ \$(scripts/lab exec pg1 hanode status --cluster | grep -c 'restart pending') = 3 ]"
  # The other members: their patroni.yml (bootstrap.dcs) is written anew and Patroni reloaded,
  # nothing is set again; then a re-run finds nothing at all.
  for n in pg2 pg3; do
    lab exec "$n" hanode init --role postgres > "$out/param-$run-$n.log" 2>&1; rc=$?
    check "$run-param-other-$n" "init on $n exits 0 (got $rc), reloads Patroni, sets nothing in the DCS" bash -c "[ $rc = 0 ] &&
      grep -q 'systemctl reload patroni.service' '$out/param-$run-$n.log' && ! grep -q 'dynamic configuration' '$out/param-$run-$n.log'"
    lab exec "$n" hanode init --role postgres > "$out/param-$run-$n-again.log" 2>&1
    check "$run-param-rerun-$n" "init on $n again: no changes" grep -q "no changes" "$out/param-$run-$n-again.log"
  done
  timed_writer_start rolling
  lab exec pg1 hanode restart --rolling > "$out/param-$run-restart.log" 2>&1; rc=$?
  timed_writer_stop "$run-param-writes-go-on" "$run: rolling restart"
  sed 's/^/  /' "$out/param-$run-restart.log"
  check "$run-param-rolling-exit-0" "hanode restart --rolling exits 0 (got $rc)" test "$rc" = 0
  check "$run-param-switched-over" "the leader changed ($leader -> $(lab leader))" bash -c "[ \"\$(scripts/lab leader)\" != '$leader' ]"
  for n in "${NODES[@]}"; do
    check "$run-param-applied-$n" "max_connections is 150 on $n" bash -c "source tests/lab/lib.sh; [ \"\$(node_sql $n 'show max_connections')\" = 150 ]"
  done
  check "$run-param-none-pending" "no restart pending afterwards" bash -c "! scripts/lab exec pg1 hanode status --cluster | grep -q 'restart pending'"
  check "$run-param-healthy" "the cluster is healthy" poll 60 healthy_cluster pg1
}

# Client access from the site file: a client network (this host on the bridge) admitted to one
# database as one user, both created by the leader's run with the secrets file's password;
# the superuser and plain text turned away; a changed password set again.
client_access() {
  local run=$1 n rc leader; leader=$(lab leader)
  local pw=shop-secret-1 ca=$LAB_DIR/ca.crt
  as_client() { # NODE USER DB PASSWORD [SSLMODE]: one query from this host, over the bridge
    PGPASSWORD=$4 PGCONNECT_TIMEOUT=3 psql "host=$(node_addr "$1") user=$2 dbname=$3 sslmode=${5:-verify-full} sslrootcert=$ca" \
      -Atqc "select current_user || ' ' || current_database() || ' ' || pg_is_in_recovery()" 2>&1
  }
  check "$run-clients-refused-before" "before: this host's network is not admitted" \
    bash -c "source tests/lab/lib.sh; $(declare -f as_client); ca=$ca; as_client $leader shop shop x | grep -q 'no pg_hba.conf entry'"
  for n in "${NODES[@]}"; do
    printf '\n[postgresql]\nusers = ["shop"]\ndatabases = [{ name = "shop", owner = "shop" }]\nclients = [{ network = "10.77.0.1/32", databases = ["shop"], users = ["shop"] }]\n' >> "$LAB_DIR/$n/merged/etc/hanode/hanode.toml"
    printf '\n[users]\nshop = "%s"\n' "$pw" >> "$LAB_DIR/$n/merged/etc/hanode/secrets.toml"
  done
  lab exec "$leader" hanode plan --role postgres > "$out/clients-$run-plan.log" 2>&1
  check "$run-clients-plan" "plan on the leader: the role, the database, patroni.yml" bash -c "grep -q 'create role shop' '$out/clients-$run-plan.log' &&
    grep -q 'create database shop owned by shop' '$out/clients-$run-plan.log' && grep -q 'update /etc/patroni/patroni.yml' '$out/clients-$run-plan.log'"
  for n in "${NODES[@]}"; do
    lab exec "$n" hanode init --role postgres > "$out/clients-$run-$n.log" 2>&1; rc=$?
    if [ "$n" = "$leader" ]; then
      check "$run-clients-init-$n" "init on the leader $n exits 0 (got $rc): role and database created, Patroni reloaded" bash -c "[ $rc = 0 ] &&
        grep -q 'create role shop' '$out/clients-$run-$n.log' && grep -q 'create database shop' '$out/clients-$run-$n.log' && grep -q 'systemctl reload patroni.service' '$out/clients-$run-$n.log'"
    else
      check "$run-clients-init-$n" "init on the replica $n exits 0 (got $rc): Patroni reloaded, nothing created" bash -c "[ $rc = 0 ] &&
        grep -q 'systemctl reload patroni.service' '$out/clients-$run-$n.log' && ! grep -q 'create role' '$out/clients-$run-$n.log'"
    fi
  done
  for n in "${NODES[@]}"; do
    local want="shop shop false"; [ "$n" = "$leader" ] || want="shop shop true"
    check "$run-clients-connect-$n" "this host connects to $n as shop over TLS ($want)" poll 30 bash -c "source tests/lab/lib.sh; $(declare -f as_client); ca=$ca; [ \"\$(as_client $n shop shop $pw)\" = '$want' ]"
  done
  check "$run-clients-other-db-refused" "shop may not reach the postgres database from its network" \
    bash -c "source tests/lab/lib.sh; $(declare -f as_client); ca=$ca; as_client $leader shop postgres $pw | grep -q 'no pg_hba.conf entry'"
  check "$run-clients-superuser-refused" "the superuser, with its password, is turned away from the client network" \
    bash -c "source tests/lab/lib.sh; $(declare -f as_client); ca=$ca; as_client $leader postgres postgres '$(password)' | grep -q 'rejects connection'"
  check "$run-clients-plain-refused" "plain text is turned away (hostssl only)" \
    bash -c "source tests/lab/lib.sh; $(declare -f as_client); ca=$ca; as_client $leader shop shop $pw disable | grep -q 'no pg_hba.conf entry'"
  for n in "${NODES[@]}"; do lab exec "$n" hanode init --role postgres > "$out/clients-$run-$n-again.log" 2>&1; done
  check "$run-clients-rerun-no-changes" "init again on every member: no changes" bash -c "for n in ${NODES[*]}; do grep -q 'no changes' '$out/clients-$run-'\$n'-again.log' || exit 1; done"
  # A new password in the secrets file: the leader's run sets it; the old one stops working.
  for n in "${NODES[@]}"; do sed -i "s/^shop = .*/shop = \"shop-secret-2\"/" "$LAB_DIR/$n/merged/etc/hanode/secrets.toml"; done
  lab exec "$leader" hanode init --role postgres > "$out/clients-$run-password.log" 2>&1; rc=$?
  check "$run-clients-password-set" "a changed password is set again by the leader's run (exit $rc)" bash -c "[ $rc = 0 ] && grep -q 'set the password of role shop' '$out/clients-$run-password.log'"
  check "$run-clients-new-password" "the new password connects, the old one does not" \
    bash -c "source tests/lab/lib.sh; $(declare -f as_client); ca=$ca; [ \"\$(as_client $leader shop shop shop-secret-2)\" = 'shop shop false' ] && as_client $leader shop shop $pw | grep -q 'password authentication failed'"
}

# etcd's authentication (on with TLS): a certificate of the cluster CA alone may not write
# Patroni's keys; Patroni's login may, under its scope only. On the v2 path (the VIP:
# vip-manager 1.x) the clients' users are v2's, and v3 has root alone.
etcd_logins() {
  local run=$1 leader=$2 ca=$LAB_DIR/ca.crt tls=$LAB_DIR/$1-tls addr; addr=$(node_addr "$leader")
  mkdir -p "$tls"
  cp "$LAB_DIR/$leader/merged/etc/hanode/tls/node.crt" "$LAB_DIR/$leader/merged/etc/hanode/tls/node.key" "$tls/"
  local c=(curl -s --max-time 3 --cacert "$ca" --cert "$tls/node.crt" --key "$tls/node.key")
  local put="https://$addr:2379/v3/kv/put" probe; probe=$(printf /service/lab/e2e-probe | base64)
  local body="{\"key\":\"$probe\",\"value\":\"eA==\"}" token
  check "$run-etcd-cert-alone-cannot-write-v3" "a v3 write to /service/lab/ with a valid certificate and no etcd login is refused" \
    bash -c "! $(printf '%q ' "${c[@]}") -f -d '$body' '$put' -o /dev/null"
  if [ "${LAB_VIP:-1}" = 1 ]; then
    local v2="https://$addr:2379/v2/keys/service" patroni="patroni:$(secret patroni_password)"
    check "$run-etcd-cert-alone-cannot-write-v2" "a v2 write to /service/lab/ with a valid certificate and no etcd login is refused" \
      bash -c "! $(printf '%q ' "${c[@]}") -f -X PUT -d value=x '$v2/lab/e2e-probe' -o /dev/null"
    check "$run-etcd-anonymous-v2-read-refused" "an anonymous v2 read of the leader key is refused" \
      bash -c "! $(printf '%q ' "${c[@]}") -f '$v2/lab/leader' -o /dev/null"
    check "$run-etcd-patroni-login-writes" "Patroni's v2 login writes under /service/lab/" \
      bash -c "$(printf '%q ' "${c[@]}") -f -u '$patroni' -X PUT -d value=x '$v2/lab/e2e-probe' -o /dev/null"
    check "$run-etcd-patroni-scope-only" "Patroni's v2 login may not write outside its scope" \
      bash -c "! $(printf '%q ' "${c[@]}") -f -u '$patroni' -X PUT -d value=x '$v2/other/x' -o /dev/null"
    check "$run-etcd-vip-manager-reads-only" "vip-manager's v2 login reads the leader key and may not write it" \
      bash -c "$(printf '%q ' "${c[@]}") -f -u 'vip-manager:$(secret vip_manager_password)' '$v2/lab/leader' -o /dev/null &&
        ! $(printf '%q ' "${c[@]}") -f -u 'vip-manager:$(secret vip_manager_password)' -X PUT -d value=x '$v2/lab/leader' -o /dev/null"
    return
  fi
  token=$("${c[@]}" -d "{\"name\":\"patroni\",\"password\":\"$(secret patroni_password)\"}" "https://$addr:2379/v3/auth/authenticate" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin).get("token", ""))')
  check "$run-etcd-patroni-login-writes" "Patroni's login writes under /service/lab/" \
    bash -c "$(printf '%q ' "${c[@]}") -f -H 'Authorization: $token' -d '$body' '$put' -o /dev/null"
  local other; other=$(printf /service/other/x | base64)
  check "$run-etcd-patroni-scope-only" "Patroni's login may not write outside its scope" \
    bash -c "! $(printf '%q ' "${c[@]}") -f -H 'Authorization: $token' -d '{\"key\":\"$other\",\"value\":\"eA==\"}' '$put' -o /dev/null"
}

writer_start() {
  rm -f "$out/stop" "$out/acked"; sql "create table acked (id int primary key)"
  ( i=0; while [ ! -f "$out/stop" ]; do i=$((i + 1)); if sql "insert into acked values ($i)" > /dev/null; then echo "$i" >> "$out/acked"; fi; done ) &
  writer=$!
  # Writes in flight when the plug is pulled: wait until 20 have been acknowledged.
  poll 60 bash -c "[ -s '$out/acked' ] && [ \$(wc -l < '$out/acked') -ge 20 ]"
}
writer_check() { # RUN WHAT: the writer stopped once it writes again; every acked row there
  local n_before; n_before=$(wc -l < "$out/acked")
  check "$1-writes-go-on" "writes are acknowledged again ($2)" poll 90 bash -c "[ \$(wc -l < '$out/acked') -gt $n_before ]"
  touch "$out/stop"; wait "$writer"
  local acked present
  acked=$(wc -l < "$out/acked")
  present=$(sql "select count(*) from acked where id in ($(paste -sd, "$out/acked"))")
  echo "$1: $2: $acked commits acknowledged, $present of them present"
  check "$1-no-acked-write-lost" "every acknowledged commit survived ($2)" test "$acked" = "$present"
}

# status, re-runs that change nothing, and a stopped Patroni started again.
converged() {
  local run=$1 leader=$2 vip=$3
  # hanode status on the leader: services, DCS, Patroni's role, the VIP, every member; exit 0.
  lab exec "$leader" hanode status --cluster --output json > "$out/status-$run.json" 2>/dev/null
  check "$run-status-exit-0" "hanode status exits 0 on a healthy node" bash -c "scripts/lab exec $leader hanode status > /dev/null"
  check "$run-status-json" "status: services healthy, etcd quorum, primary, the VIP, 3 members" python3 -c "
import json,sys
s=json.load(open('$out/status-$run.json'))
assert s['healthy'] is True and s['schema'] == 1, s
assert all(x['active'] and x['healthy'] and x['main_pid'] > 0 for x in s['services']) and len(s['services']) == (3 if $vip else 2), s['services']
assert 'Ok' in s['dcs'] and '3 of 3' in s['dcs']['Ok'], s['dcs']
assert s['patroni']['role'] in ('master', 'primary') and s['holds_vip'] is ($vip == 1 or None), (s['patroni'], s['holds_vip'])
assert len(s['cluster']['members']) == 3
"

  # Re-run init: no changes, no restarts.
  local n u
  pids() { for n in "${NODES[@]}"; do for u in etcd patroni vip-manager; do echo "$n $u $(lab exec "$n" systemctl show -p MainPID --value "$u")"; done; done; }
  pids > "$out/pids.before"
  for n in "${NODES[@]}"; do lab exec "$n" hanode init --role postgres > "$out/rerun-$run-$n.log" 2>&1 & done; wait
  for n in "${NODES[@]}"; do check "$run-rerun-$n-no-changes" "hanode init said no changes" grep -q "no changes" "$out/rerun-$run-$n.log"; done
  pids > "$out/pids.after"
  check "$run-rerun-no-restart" "main PIDs unchanged" diff "$out/pids.before" "$out/pids.after"

  # A replica's Patroni stopped by hand: init starts it again and says so.
  local rep; for rep in "${NODES[@]}"; do [ "$rep" != "$leader" ] && break; done
  lab exec "$rep" systemctl stop patroni
  lab exec "$rep" hanode init --role postgres > "$out/restart-$run.log" 2>&1; local rc=$?
  check "$run-init-starts-stopped-patroni" "init on $rep started patroni.service and reported it (exit $rc)" \
    bash -c "[ $rc = 0 ] && grep -q 'systemctl start patroni.service' '$out/restart-$run.log' && grep -q '1 change applied' '$out/restart-$run.log' && scripts/lab exec $rep systemctl is-active --quiet patroni"
  check "$run-restarted-replica-streams" "$rep streams again" poll 90 healthy_cluster pg1

  # A Patroni that cannot start (a drop-in runs /bin/false instead): init ends its wait when
  # systemd gives up on the unit, not at the 600 s deadline; fixed, the failed unit is reset
  # and started.
  lab exec "$rep" sh -c 'mkdir -p /etc/systemd/system/patroni.service.d && printf "[Service]\nExecStart=\nExecStart=/bin/false\n" > /etc/systemd/system/patroni.service.d/e2e.conf && systemctl daemon-reload && systemctl stop patroni'
  lab exec "$rep" hanode init --role postgres > "$out/broken-$run.log" 2>&1; rc=$?
  check "$run-broken-patroni-ends-wait" "init exits 1 (got $rc) as soon as patroni.service fails or loops, not at its deadline" \
    bash -c "[ $rc = 1 ] && grep -Eq 'patroni.service (is failed|is inactive|was restarted [0-9]+ times)' '$out/broken-$run.log'"
  # Fixed, then: a unit systemd gave up on is reset and started; one still in its restart loop
  # picks the real program up by itself.
  lab exec "$rep" sh -c 'rm -r /etc/systemd/system/patroni.service.d && systemctl daemon-reload'
  local state; state=$(lab exec "$rep" systemctl show -p ActiveState --value patroni)
  lab exec "$rep" hanode init --role postgres > "$out/fixed-$run.log" 2>&1; rc=$?
  check "$run-fixed-patroni-started" "init on the fixed $rep exits $rc (unit was $state), reset-failed when it had failed" \
    bash -c "[ $rc = 0 ] && { [ '$state' != failed ] || grep -q 'systemctl reset-failed patroni.service' '$out/fixed-$run.log'; }"
  check "$run-fixed-replica-streams" "$rep streams again" poll 90 healthy_cluster pg1
}

failover() {
  local run=$1 leader=$2 vip=$3
  # The leader loses power: a new leader, the entry follows, writes resume, rows kept.
  local old=$leader new t0 sync=${LAB_SYNC:-0}
  [ "$sync" = 1 ] && writer_start
  t0=$(date +%s.%N)
  lab kill "$old"
  check "$run-new-leader" "a new leader is elected" poll 120 bash -c "l=\$(scripts/lab leader) && [ \"\$l\" != '$old' ]"
  new=$(lab leader)
  [ "$vip" = 1 ] && check "$run-vip-moves" "VIP on the new leader $new" poll 60 bash -c "source tests/lab/lib.sh; [ \"\$(vip_holders)\" = '$new' ]"
  check "$run-write-after-failover" "a write through the entry succeeds" poll 60 sql "insert into t values (1000, 'after')"
  echo "$run: failover (leader killed -> write through the entry): $(echo "$(date +%s.%N) - $t0" | bc) s"
  [ "$sync" = 1 ] && writer_check "$run" "synchronous mode, after the failover"
  check "$run-rows-kept" "the 100 rows from before are there" bash -c "source tests/lab/lib.sh; [ \"\$(sql 'select count(*) from t where id <= 100')\" = 100 ]"
  if [ "$vip" = 1 ]; then
    lab exec "$new" systemctl stop vip-manager
    check "$run-vip-released-on-stop" "systemctl stop vip-manager removes the VIP" poll 10 bash -c "source tests/lab/lib.sh; [ -z \"\$(vip_holders)\" ]"
    lab exec "$new" hanode status > "$out/status-novip-$run.log" 2>&1; local src=$?
    check "$run-status-leader-without-vip" "status on a leader with vip-manager stopped exits 1 (got $src), naming it" \
      bash -c "[ $src = 1 ] && grep -q 'vip-manager.service: NOT healthy' '$out/status-novip-$run.log'"
    lab exec "$new" hanode init --role postgres > "$out/vip-back-$run.log" 2>&1
    check "$run-init-brings-vip-back" "init starts vip-manager and waits until the VIP is on the leader" \
      bash -c "grep -q 'systemctl start vip-manager.service' '$out/vip-back-$run.log' && source tests/lab/lib.sh && [ \"\$(vip_holders)\" = '$new' ]"
    # An active vip-manager unit is not a working VIP: one that runs but never adds the address
    # (a drop-in puts a sleep in its place) fails init on the leader, naming the VIP.
    lab exec "$new" sh -c 'mkdir -p /etc/systemd/system/vip-manager.service.d && printf "[Service]\nExecStart=\nExecStart=/bin/sleep infinity\n" > /etc/systemd/system/vip-manager.service.d/e2e.conf && systemctl daemon-reload && systemctl restart vip-manager'
    lab exec "$new" env HANODE_HEALTH_TIMEOUT=10 hanode init --role postgres > "$out/vip-nowhere-$run.log" 2>&1; local rc=$?
    check "$run-vip-nowhere-init-exit-1" "init exits 1 while vip-manager is active but the leader has no VIP (got $rc)" \
      bash -c "[ $rc = 1 ] && grep -q 'VIP 10.77.0.100 is on none of its interfaces' '$out/vip-nowhere-$run.log'"
    lab exec "$new" sh -c 'rm -r /etc/systemd/system/vip-manager.service.d && systemctl daemon-reload && systemctl restart vip-manager'
    check "$run-vip-back-after-fix" "with vip-manager itself again, the VIP is back on $new" poll 20 bash -c "source tests/lab/lib.sh; [ \"\$(vip_holders)\" = '$new' ]"
  fi

  # The old leader comes back and rejoins as a replica, with the rows written since; or
  # (OLD_LEADER=replace) its host is dead for good and a new one takes its place.
  if [ "${OLD_LEADER:-boot}" = replace ]; then
    replaced "$run" "$old" "$new"
  else
    lab boot "$old" > /dev/null
    check "$run-old-leader-rejoins" "$old streams from $new as a replica" poll 240 bash -c "source tests/lab/lib.sh; streams_from $new $old"
  fi
  check "$run-old-leader-has-new-rows" "the row written after failover is on $old" poll 60 bash -c "source tests/lab/lib.sh; [ \"\$(node_sql $old 'select v from t where id = 1000')\" = after ]"
}

# A dead host replaced (scripts/lab replace): a new machine with NODE's name and address and an
# empty disk joins by its first boot alone. etcd's dead member goes, the new one is added (3
# healthy members, the old ID gone), and Patroni builds the replica from the leader.
replaced() {
  local run=$1 n=$2 leader=$3 old_id t0
  old_id=$(etcdctl_on "$leader" member list | awk -F', ' -v n="$n" '$3 == n { print $1 }')
  t0=$(date +%s.%N)
  lab replace "$n" > /dev/null
  poll 300 test -e "$LAB_DIR/$n/merged/var/lib/hanode/firstboot.done"; local booted=$?
  check "$run-replaced-$n-first-boot" "the new $n's first boot converges (old etcd member ID ${old_id:-none})" test "$booted" = 0
  [ "$booted" = 0 ] || lab exec "$n" journalctl -u hanode-firstboot --no-pager -n 40 | sed 's/^/    /'
  check "$run-replaced-$n-streams" "the new $n streams from $leader" poll 240 bash -c "source tests/lab/lib.sh; streams_from $leader $n"
  echo "$run: $n replaced (power-on to streaming replica): $(echo "$(date +%s.%N) - $t0" | bc) s"
  check "$run-replaced-$n-etcd-3-healthy" "3 healthy etcd members after the replacement" poll 30 etcd_healthy
  local gone=no; [ -n "$old_id" ] && ! etcdctl_on "$leader" member list | grep -q "^$old_id," && gone=yes
  check "$run-replaced-$n-old-id-gone" "the dead member's ID ${old_id:-?} is no longer listed" test "$gone" = yes
  check "$run-replaced-$n-has-rows" "the 100 rows are on the new $n" poll 60 bash -c "source tests/lab/lib.sh; [ \"\$(node_sql $n 'select count(*) from t where id <= 100')\" = 100 ]"
}

# A Patroni restart on the leader (its unit changed: here by hand, as a hanode upgrade with a
# new template or a switch of patroni.install would): init switches over first, so writes
# through the VIP stop for a switchover's time, not a failover's.
leader_restart() {
  local run=$1 leader rc; leader=$(lab leader)
  lab exec "$leader" sh -c 'echo "# changed by the e2e test" >> /etc/systemd/system/patroni.service'
  timed_writer_start handover
  lab exec "$leader" hanode init --role postgres > "$out/handover-$run.log" 2>&1; rc=$?
  timed_writer_stop "$run-handover-writes-go-on" "$run: Patroni restarted on the leader"
  sed 's/^/  /' "$out/handover-$run.log" | grep -E 'switch|restart patroni' || true
  check "$run-handover-exit-0" "init on the leader $leader exits 0 (got $rc): a switchover, then Patroni restarted" bash -c "[ $rc = 0 ] &&
    grep -q 'switching over from $leader before its Patroni restarts' '$out/handover-$run.log' && grep -q 'systemctl restart patroni.service' '$out/handover-$run.log'"
  check "$run-handover-leader-changed" "another member leads ($leader -> $(lab leader))" bash -c "[ \"\$(scripts/lab leader)\" != '$leader' ]"
  check "$run-handover-healthy" "the cluster is healthy, $leader a replica" poll 90 healthy_cluster pg1
}

# `hanode restart --rolling --all` (what a PostgreSQL minor update needs once the new packages
# are in): every member's PostgreSQL started anew, the leader's through a switchover.
restart_all() {
  local run=$1 leader rc n; leader=$(lab leader)
  started_at() { for n in "${NODES[@]}"; do echo "$n $(patroni_get "$n" /patroni | python3 -c 'import json,sys; print(json.load(sys.stdin)["postmaster_start_time"])')"; done; }
  started_at > "$out/all-$run.before"
  timed_writer_start rolling_all
  lab exec "$leader" hanode restart --rolling --all > "$out/all-$run.log" 2>&1; rc=$?
  timed_writer_stop "$run-restart-all-writes-go-on" "$run: restart --rolling --all"
  started_at > "$out/all-$run.after"
  check "$run-restart-all-exit-0" "hanode restart --rolling --all exits 0 (got $rc)" test "$rc" = 0
  check "$run-restart-all-every-member" "every member's PostgreSQL started anew" bash -c "! grep -Fxf '$out/all-$run.before' '$out/all-$run.after' && [ \$(wc -l < '$out/all-$run.after') = 3 ]"
  check "$run-restart-all-leader-changed" "the leader changed ($leader -> $(lab leader))" bash -c "[ \"\$(scripts/lab leader)\" != '$leader' ]"
  check "$run-restart-all-healthy" "the cluster is healthy" poll 90 healthy_cluster pg1
}

# Shrink and grow: a replica leaves for good (refusals first: still in the site file, the
# leader, still running), is removed with `hanode member remove`, and the others' re-runs only
# reload; then a new host of that name joins again. Writes go on throughout; none is lost.
shrink_grow() {
  local run=$1 leader gone stay n rc
  leader=$(lab leader)
  for gone in "${NODES[@]}"; do [ "$gone" != "$leader" ] && break; done
  for stay in "${NODES[@]}"; do [ "$stay" != "$leader" ] && [ "$stay" != "$gone" ] && break; done
  site_of() { echo "$LAB_DIR/$1/merged/etc/hanode/hanode.toml"; }
  without() { sed -i "/{ name = \"$2\",/d" "$(site_of "$1")"; }
  # reload_only STEP WHAT: init on the leader and the other replica with the new site file
  # reloads Patroni, restarts neither etcd nor Patroni, and both keep their PIDs.
  reload_only() {
    local step=$1 what=$2 n u rc
    pids2() { for n in "$leader" "$stay"; do for u in etcd patroni; do echo "$n $u $(lab exec "$n" systemctl show -p MainPID --value "$u")"; done; done; }
    pids2 > "$out/$step-pids.before"
    for n in "$leader" "$stay"; do
      lab exec "$n" hanode init --role postgres > "$out/$step-$run-$n.log" 2>&1; rc=$?
      check "$run-$step-init-$n" "init on $n $what exits 0 (got $rc): Patroni reloaded, etcd and Patroni not restarted" bash -c "[ $rc = 0 ] &&
        grep -q 'systemctl reload patroni.service' '$out/$step-$run-$n.log' && ! grep -Eq 'systemctl restart (etcd|patroni)' '$out/$step-$run-$n.log'"
    done
    pids2 > "$out/$step-pids.after"
    check "$run-$step-pids-kept" "etcd and Patroni kept their PIDs on $leader and $stay" diff "$out/$step-pids.before" "$out/$step-pids.after"
  }
  writer_start
  lab exec "$leader" hanode member remove "$gone" > "$out/shrink-$run-listed.log" 2>&1; rc=$?
  check "$run-remove-listed-exit-2" "remove refused (exit $rc) while $gone is in the site file" bash -c "[ $rc = 2 ] && grep -q 'still in cluster.members' '$out/shrink-$run-listed.log'"
  without "$stay" "$leader"
  lab exec "$stay" hanode member remove "$leader" > "$out/shrink-$run-leader.log" 2>&1; rc=$?
  check "$run-remove-leader-exit-3" "remove of the leader refused (exit $rc), switchover named" bash -c "[ $rc = 3 ] && grep -q 'switch over first' '$out/shrink-$run-leader.log'"
  lab site > "$(site_of "$stay")"
  without "$leader" "$gone"
  lab exec "$leader" hanode member remove "$gone" > "$out/shrink-$run-alive.log" 2>&1; rc=$?
  check "$run-remove-alive-exit-3" "remove of a running $gone refused (exit $rc): etcd has a live connection to it" bash -c "[ $rc = 3 ] && grep -q 'live connection' '$out/shrink-$run-alive.log'"
  check "$run-remove-alive-kept" "nothing removed: 3 etcd members" bash -c "[ \$(source tests/lab/lib.sh; $(declare -f etcdctl_on etcd_auth_on); etcdctl_on $leader member list | wc -l) = 3 ]"
  lab kill "$gone"
  lab exec "$leader" hanode member remove "$gone" > "$out/shrink-$run-remove.log" 2>&1; rc=$?
  sed 's/^/  /' "$out/shrink-$run-remove.log"
  check "$run-remove-exit-0" "hanode member remove $gone exits 0 (got $rc) once it is off" test "$rc" = 0
  check "$run-shrunk-etcd" "etcd: 2 members, both healthy" bash -c "source tests/lab/lib.sh; $(declare -f etcdctl_on etcd_auth_on);
    [ \$(etcdctl_on $leader member list | wc -l) = 2 ] && [ \$(etcdctl_on $leader endpoint health 2>&1 | grep -c 'is healthy') = 2 ]"
  check "$run-shrunk-patroni" "Patroni: 2 members" poll 30 bash -c "source tests/lab/lib.sh; [ \$(members_json $leader | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') = 2 ]"
  # Patroni before 4.0 drops a departed member's slot with its key; 4.0 keeps it member_slots_ttl.
  if lab exec "$leader" patroni --version | grep -q 'patroni 3\.'; then
    check "$run-shrunk-slot-dropped" "Patroni 3 dropped $gone's replication slot on the leader" poll 60 bash -c "source tests/lab/lib.sh; [ \"\$(node_sql $leader \"select count(*) from pg_replication_slots where slot_name = '$gone'\")\" = 0 ]"
  fi
  # The others take the new site file: reloads only, every daemon keeps its PID.
  without "$stay" "$gone"
  reload_only shrunk "without $gone"
  # Grow: the site file with $gone again on the others first (pg_hba must admit the new host
  # before it asks for its base backup), then a new host of that name.
  for n in "$leader" "$stay"; do lab site > "$(site_of "$n")"; done
  reload_only grown "with $gone back"
  lab replace "$gone" > /dev/null
  check "$run-grown-first-boot" "the new $gone's first boot converges" poll 300 test -e "$LAB_DIR/$gone/merged/var/lib/hanode/firstboot.done"
  check "$run-grown-member-add" "it joined etcd by member add (nothing to remove)" bash -c "scripts/lab exec $gone journalctl -u hanode-firstboot --no-pager > '$out/grow-$run-firstboot.log';
    grep -q 'etcd: add member $gone' '$out/grow-$run-firstboot.log' && ! grep -q 'remove the dead member' '$out/grow-$run-firstboot.log'"
  check "$run-grown-streams" "the new $gone streams from $leader" poll 240 bash -c "source tests/lab/lib.sh; streams_from $leader $gone"
  check "$run-grown-etcd-3-healthy" "3 healthy etcd members again" poll 60 etcd_healthy
  writer_check "$run" "writes through shrink and grow"
}

# A node cut off from its DCS peers (routes to them blackholed), Patroni stopped: init must
# not call it converged — exit 1 twice (the second time nothing is left to change), no
# first-boot marker; once the network is back, exit 0 and the marker.
dcs_cut_off() {
  local run=$1 n=$2 m rc
  lab exec "$n" systemctl stop patroni
  lab exec "$n" rm -f /var/lib/hanode/firstboot.done
  for m in "${NODES[@]}"; do [ "$m" = "$n" ] || ip -n "hn-$n" route add blackhole "$(node_addr "$m")/32"; done
  for i in 1 2; do
    lab exec "$n" env HANODE_HEALTH_TIMEOUT=20 hanode init --role postgres --stage firstboot > "$out/cut-$run-$i.log" 2>&1; rc=$?
    check "$run-cut-off-init-$i-exit-1" "init #$i on $n without its DCS peers exits 1 (got $rc)" test "$rc" = 1
    check "$run-cut-off-init-$i-names-service" "init #$i names the unhealthy service" \
      grep -Eq "(patroni|etcd).service (did not become healthy|is (failed|inactive)|was restarted)|services? (is|are) not healthy" "$out/cut-$run-$i.log"
  done
  check "$run-cut-off-no-marker" "no firstboot.done while unhealthy" lab exec "$n" test ! -e /var/lib/hanode/firstboot.done
  lab exec "$n" hanode plan --role postgres > "$out/cut-$run-plan.log" 2>&1
  check "$run-cut-off-plan-finding" "plan shows the unhealthy service as a finding" grep -q "health .*service" "$out/cut-$run-plan.log"
  for m in "${NODES[@]}"; do [ "$m" = "$n" ] || ip -n "hn-$n" route del blackhole "$(node_addr "$m")/32"; done
  lab exec "$n" hanode init --role postgres --stage firstboot > "$out/cut-$run-3.log" 2>&1; rc=$?
  check "$run-reconnected-init-exit-0" "init on $n exits 0 once its peers are reachable (got $rc)" test "$rc" = 0
  check "$run-reconnected-marker" "firstboot.done written after a healthy run" lab exec "$n" test -e /var/lib/hanode/firstboot.done
  check "$run-reconnected-streams" "$n streams again" poll 90 healthy_cluster pg1
}

# 1. Debian 12's Patroni 3.0 package, the VIP: vip-manager 1.0.2, Patroni on etcd's v2 API.
export LAB_PATRONI=package
cycle v2
check v2-patroni-3-package "Patroni 3.0 from Debian 12's package, run from /usr/bin" bash -c "
  scripts/lab exec pg1 /usr/bin/patroni --version | grep -q 'patroni 3\.0' &&
  scripts/lab exec pg1 grep -q '^ExecStart=/usr/bin/patroni ' /etc/systemd/system/patroni.service"
ca_rotation v2
parameters v2
shrink_grow v2
leader_restart v2
restart_all v2
lab down > /dev/null 2>&1
unset LAB_TTL
unset LAB_PATRONI

# 2. Patroni 4.0 from the pinned venv, no VIP (etcd's v3 API through the gRPC gateway),
#    synchronous mode; then a replica cut off from its DCS peers.
export LAB_VIP=0 LAB_SYNC=1
# The old leader's host does not come back: a new one replaces it.
OLD_LEADER=replace cycle v3
check v3-patroni-4-venv "Patroni 4.0 from the venv" bash -c "scripts/lab exec pg1 /usr/local/bin/patroni --version | grep -q 'patroni 4\.0'"
leader=$(lab leader)
for rep in "${NODES[@]}"; do [ "$rep" != "$leader" ] && break; done
dcs_cut_off v3 "$rep"
client_access v3
lab down > /dev/null 2>&1
unset LAB_SYNC

# 3. Debian 13: etcd 3.5 (trixie's, re-packed), PostgreSQL 17, Patroni 4.0 from Debian's
#    package, on etcd's v3 API; TLS off ([tls] enabled = false), the lab's opt-out.
export LAB_SUITE=trixie LAB_PATRONI=package LAB_TLS=0
cycle trixie light
check trixie-versions "Debian 13 nodes run etcd 3.5, Patroni 4.0 from /usr/bin, PostgreSQL 17" bash -c "
  scripts/lab exec pg1 grep -q '^VERSION_ID=\"13\"' /etc/os-release &&
  scripts/lab exec pg1 etcd --version | grep -q 'etcd Version: 3.5' &&
  scripts/lab exec pg1 /usr/bin/patroni --version | grep -q 'patroni 4\.0' &&
  scripts/lab exec pg1 grep -q '^ExecStart=/usr/bin/patroni ' /etc/systemd/system/patroni.service &&
  [ \"\$(source tests/lab/lib.sh; node_sql pg1 'show server_version_num' | cut -c1-2)\" = 17 ]"
leader=$(lab leader)
for rep in "${NODES[@]}"; do [ "$rep" != "$leader" ] && break; done
replaced trixie "$rep" "$leader"
check trixie-tls-off-plain "with [tls] enabled = false, etcd and Patroni speak plain http" bash -c "
  scripts/lab exec pg1 grep -q '^listen-client-urls: http://' /etc/hanode/etcd.yml &&
  curl -sf --max-time 3 http://10.77.0.11:8008/health -o /dev/null"
lab down > /dev/null 2>&1
unset LAB_VIP LAB_SUITE LAB_PATRONI LAB_TLS

echo "lab e2e:"
summary
