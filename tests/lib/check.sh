# The shell tests' one library of results (sourced, bash): a check passes or fails, the counters,
# a poll, the closing count. Sourced on this host (tests/lab/lib.sh, scripts/test-release,
# scripts/test-vm-cloudinit) and inside the test VMs (tests/vm/*.sh: scripts/test-vm-disks and
# scripts/test-vm-selinux put this file on the payload disk as check.sh, beside run).
# The lines it prints, which the host side greps for (scripts/test-vm-*):
#   ${CHECK_PREFIX}PASS NAME
#   ${CHECK_PREFIX}FAIL NAME: WHY
#   [LABEL ]N passed, M failed
# CHECK_PREFIX: "" on this host, "VMTEST " in the VMs.
# CHECK_LOG: a file; when set, a check's own output goes there, and its last 15 lines are shown,
# indented, only when it fails.
# POLL_INTERVAL: seconds between two tries of poll [1].
pass=0
fail=0
ok() { echo "${CHECK_PREFIX:-}PASS $1"; pass=$((pass + 1)); }
bad() { echo "${CHECK_PREFIX:-}FAIL $1: $2"; fail=$((fail + 1)); }
# expect NAME WHY CMD...: passes when CMD succeeds, fails saying WHY otherwise.
expect() {
  local name=$1 what=$2; shift 2
  if [ -z "${CHECK_LOG:-}" ]; then
    if "$@"; then ok "$name"; else bad "$name" "$what"; fi
  elif "$@" > "$CHECK_LOG" 2>&1; then
    ok "$name"
  else
    bad "$name" "$what"; sed 's/^/    /' "$CHECK_LOG" | tail -15
  fi
}
check() { expect "$@"; }
# poll SECONDS CMD...: until CMD succeeds, or fail after SECONDS.
poll() { local end=$((SECONDS + $1)); shift; until "$@"; do [ "$SECONDS" -ge "$end" ] && return 1; sleep "${POLL_INTERVAL:-1}"; done; }
# summary [LABEL]: the closing count; fails when a check failed.
# shellcheck disable=SC2120 # LABEL is optional
summary() { echo "${1:+$1 }$pass passed, $fail failed"; [ "$fail" = 0 ]; }
# The counters across a reboot (the VM tests), in DIR/pass and DIR/fail.
counters_load() { pass=$(cat "$1/pass" 2>/dev/null || echo 0); fail=$(cat "$1/fail" 2>/dev/null || echo 0); }
counters_save() { echo "$pass" > "$1/pass"; echo "$fail" > "$1/fail"; }
# vmtest_begin: in the test VMs (tests/vm/*.sh), at every boot: results as "VMTEST ...", the
# state that survives a reboot in S=/var/lib/vmtest, the stage reached ($stage: 1 at first)
# and the counters so far.
vmtest_begin() {
  CHECK_PREFIX="VMTEST "
  S=/var/lib/vmtest
  mkdir -p "$S"
  # shellcheck disable=SC2034 # read by the VM scripts
  stage=$(cat "$S/stage" 2>/dev/null || echo 1)
  counters_load "$S"
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
