# The one chroot helper (sourced, bash) for the scripts that run apt and hanode in a Debian tree:
# scripts/build-image, scripts/vm-image, scripts/test-apt-chroot.
#   chroot_enter ROOT        mounts proc, sys, /dev and /dev/pts in ROOT, copies this host's
#                            resolv.conf there, and adds a policy-rc.d: no package starts a daemon
#   chroot_leave ROOT        removes the policy-rc.d and unmounts, in the reverse order; what is
#                            not mounted is skipped, so it may run twice (a trap after a step)
#   chroot_cleanup ROOT DIR  chroot_leave ROOT, then rm -rf --one-file-system DIR (which holds
#                            ROOT) only when nothing under ROOT is mounted any more: for traps
chroot_mounts=(proc sys dev dev/pts)
chroot_enter() {
  local r=$1
  mount -t proc proc "$r/proc"
  mount -t sysfs sys "$r/sys"
  mount --bind /dev "$r/dev"
  mount --bind /dev/pts "$r/dev/pts"
  cp -L /etc/resolv.conf "$r/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' > "$r/usr/sbin/policy-rc.d"
  chmod +x "$r/usr/sbin/policy-rc.d"
}
chroot_leave() {
  local r=$1 i m rc=0
  rm -f "$r/usr/sbin/policy-rc.d"
  for ((i = ${#chroot_mounts[@]} - 1; i >= 0; i--)); do
    m=$r/${chroot_mounts[i]}
    if mountpoint -q "$m"; then umount -l "$m" || rc=1; fi
  done
  return "$rc"
}
# chroot_mounted ROOT: something is mounted at or under ROOT.
chroot_mounted() { findmnt -rn -o TARGET | awk -v r="$1" '$0 == r || index($0, r "/") == 1 { m = 1 } END { exit !m }'; }
chroot_cleanup() {
  chroot_leave "$1" || true
  if chroot_mounted "$1"; then
    echo "$1 still has mounts under it: $2 is left in place" >&2
    return 1
  fi
  rm -rf --one-file-system "$2"
}
