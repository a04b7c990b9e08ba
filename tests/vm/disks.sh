#!/bin/bash
# Runs inside the test VM as /payload/run (see scripts/test-vm-disks): the disks phase on real
# LVM. Prints `VMTEST PASS|FAIL name` per check and a summary; state survives the reboot in
# /var/lib/vmtest. The checks are tests/lib/check.sh's, on the payload disk as check.sh.
set -u
P=/payload
# shellcheck source=tests/lib/check.sh
source "$P/check.sh"
vmtest_begin
hanode() { "$P/hanode" "$@"; }
init() { hanode init phase disks --role postgres --config "${1:-$P/site.toml}" --node pg1; }

DATA=$(readlink -f /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_pgdata)
WAL=$(readlink -f /dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_pgwal)
uuid() { blkid -s UUID -o value "$1"; }

reset_disks() {
  umount /pgdata /pgwal /mnt 2>/dev/null
  sed -i '\#[[:space:]]/pgdata[[:space:]]#d; \#[[:space:]]/pgwal[[:space:]]#d' /etc/fstab
  vgremove -ff -y pg other > /dev/null 2>&1
  pvremove -ff -y "$DATA" "$WAL" > /dev/null 2>&1
  wipefs -a -q "$DATA" "$WAL"
  rm -f /var/lib/hanode/disks.json
  rmdir /pgdata /pgwal 2>/dev/null
  systemctl daemon-reload
}

state_is_converged() { # the expected volumes, filesystems, fstab lines and owners, once each
  [ "$(lvs --noheadings -o lv_name,devices pg 2>/dev/null | awk '{print $1, $2}' | sort | tr '\n' ' ')" = "pg_data $DATA(0) pg_wal $WAL(0) " ] || return 1
  [ "$(findmnt -n -o SOURCE,FSTYPE /pgdata)" = "/dev/mapper/pg-pg_data ext4" ] || return 1
  [ "$(findmnt -n -o SOURCE,FSTYPE /pgwal)" = "/dev/mapper/pg-pg_wal ext4" ] || return 1
  [ "$(grep -c "^UUID=$(uuid /dev/pg/pg_data) /pgdata ext4 noatime 0 2$" /etc/fstab)" = 1 ] || return 1
  [ "$(grep -c "^UUID=$(uuid /dev/pg/pg_wal) /pgwal ext4 noatime 0 2$" /etc/fstab)" = 1 ] || return 1
  [ "$(grep -c '/pgdata\|/pgwal' /etc/fstab)" = 2 ] || return 1
  for d in /pgdata /pgdata/data /pgwal /pgwal/wal; do [ "$(stat -c '%U:%G %a' "$d")" = "postgres:postgres 700" ] || return 1; done
}

if [ "$stage" = 1 ]; then
  echo "VMTEST disks: data=$DATA wal=$WAL"
  t0=$(now_ms); init > "$S/fresh.log" 2>&1; rc=$?; t1=$(now_ms)
  echo "VMTEST TIME disks-phase-ms $((t1 - t0))"
  [ "$rc" = 0 ] || cat "$S/fresh.log"
  expect fresh-exit-0 "init exited $rc" test "$rc" = 0
  expect fresh-state "volumes, mounts, fstab, owners" state_is_converged
  expect fresh-blkid "pg_data is ext4" test "$(blkid -s TYPE -o value /dev/pg/pg_data)" = ext4
  # disks.mkfs_options = ["-m", "1"]: 1 % of each filesystem's blocks reserved (mkfs.ext4's default is 5 %).
  reserved_pct() { tune2fs -l "$1" | awk -F: '/^Block count/ { b = $2 } /^Reserved block count/ { r = $2 } END { printf "%d", r * 100 / b + 0.5 }'; }
  expect fresh-mkfs-options "1 % reserved on pg_data ($(reserved_pct /dev/pg/pg_data)) and pg_wal ($(reserved_pct /dev/pg/pg_wal))" \
    bash -c "[ '$(reserved_pct /dev/pg/pg_data)' = 1 ] && [ '$(reserved_pct /dev/pg/pg_wal)' = 1 ]"
  { uuid /dev/pg/pg_data; uuid /dev/pg/pg_wal; tune2fs -l /dev/pg/pg_data | grep 'Filesystem created'; } > "$S/before"
  echo 2 > "$S/stage"; counters_save "$S"
  touch /run/hanode-reboot
  exit 0
fi

# Stage 2: after a reboot.
expect reboot-mounts "mounts back after reboot" state_is_converged
t0=$(now_ms); init > "$S/rerun.log" 2>&1; rc=$?; t1=$(now_ms)
echo "VMTEST TIME rerun-ms $((t1 - t0))"
expect rerun-no-changes "second run planned nothing" grep -q "no changes" "$S/rerun.log"
expect rerun-no-mkfs "no mkfs ran" bash -c "! grep -q mkfs '$S/rerun.log'"
expect rerun-same-fs "UUIDs and creation time unchanged" bash -c "diff <({ blkid -s UUID -o value /dev/pg/pg_data; blkid -s UUID -o value /dev/pg/pg_wal; tune2fs -l /dev/pg/pg_data | grep 'Filesystem created'; }) '$S/before'"
hanode status --config "$P/site.toml" --node pg1 > "$S/status.log" 2>&1
expect status "status shows the volumes" grep -q "/dev/pg/pg_data .* mounted at /pgdata, .* used" "$S/status.log"
cat "$S/status.log"

# The data directory replaced by a link to /etc (what its owner, postgres, could do): the next
# run refuses, and /etc keeps its owner and mode.
etc_before=$(stat -c '%U:%G %a' /etc)
mv /pgdata/data /pgdata/data.moved && ln -s /etc /pgdata/data
init > "$S/link.log" 2>&1; rc=$?
expect refuse-symlink "exit 3, /etc keeps $etc_before ($rc)" bash -c "[ $rc = 3 ] && [ \"\$(stat -c '%U:%G %a' /etc)\" = '$etc_before' ] && grep -q 'is a symbolic link' '$S/link.log'"
rm /pgdata/data && mv /pgdata/data.moved /pgdata/data

# Refusals: exit 3, nothing touched.
reset_disks
mkfs.ext4 -q "$DATA"; mount "$DATA" /mnt; echo precious > /mnt/file; umount /mnt
init > "$S/r1.log" 2>&1; rc=$?
# (bash -c sees none of this script's functions: the whole check is spelled out.)
mount -o ro "$DATA" /mnt; expect refuse-ext4 "exit 3, file intact, no VG pg, no fstab line ($rc)" bash -c "[ $rc = 3 ] && [ \"\$(cat /mnt/file)\" = precious ] && grep -q 'ext4' '$S/r1.log' && ! vgs pg > /dev/null 2>&1 && ! grep -q /pgdata /etc/fstab"; umount /mnt
grep -A3 "refusing" "$S/r1.log" | head -4

reset_disks
echo 'label: gpt' | sfdisk -q "$DATA" > /dev/null 2>&1
init > "$S/r2.log" 2>&1; rc=$?
expect refuse-partition-table "exit 3, GPT kept ($rc)" bash -c "[ $rc = 3 ] && [ \"\$(blkid -p -s PTTYPE -o value $DATA)\" = gpt ] && ! vgs pg >/dev/null 2>&1"

reset_disks
pvcreate -q "$DATA" > /dev/null; vgcreate -q other "$DATA" > /dev/null
init > "$S/r3.log" 2>&1; rc=$?
expect refuse-other-vg "exit 3, VG other kept ($rc)" bash -c "[ $rc = 3 ] && vgs other >/dev/null 2>&1 && ! vgs pg >/dev/null 2>&1 && grep -q 'volume group .other.' '$S/r3.log'"

reset_disks
mkfs.ext4 -q "$WAL"; mount "$WAL" /mnt; echo precious > /mnt/file
init > "$S/r4.log" 2>&1; rc=$?
expect refuse-mounted "exit 3, mount kept ($rc)" bash -c "[ $rc = 3 ] && findmnt /mnt >/dev/null && [ \"\$(cat /mnt/file)\" = precious ] && grep -q 'mounted at /mnt' '$S/r4.log' && ! pvs $DATA >/dev/null 2>&1"
umount /mnt

# The root disk under the name the config gives for the data disk.
reset_disks
root_src=$(findmnt -n -o SOURCE /)
root_disk=$root_src
[ "$(lsblk -n -d -o TYPE "$root_src")" = disk ] || root_disk=/dev/$(lsblk -n -o PKNAME "$root_src")
root_uuid=$(uuid "$root_src")
sed "s#/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_pgdata#$root_disk#" "$P/site.toml" > "$S/root-as-data.toml"
echo "VMTEST root disk is $root_disk"
init "$S/root-as-data.toml" > "$S/r5.log" 2>&1; rc=$?
expect refuse-root-disk "exit 3, root untouched ($rc)" bash -c "[ $rc = 3 ] && grep -q 'carries /' '$S/r5.log' && [ \"\$(blkid -s UUID -o value $root_src)\" = '$root_uuid' ] && ! pvs $WAL >/dev/null 2>&1"

# SIGKILL after every change in turn; a re-run converges, nothing is created twice.
killed=0
for n in $(seq 1 40); do
  reset_disks
  HANODE_KILL_AFTER=$n init > "$S/kill.log" 2>&1; rc=$?
  if [ "$rc" = 0 ]; then break; fi
  killed=$((killed + 1))
  if [ "$rc" != 137 ]; then bad "kill-after-$n" "expected SIGKILL (137), got $rc"; cat "$S/kill.log"; continue; fi
  init > "$S/resume.log" 2>&1; rc=$?
  if [ "$rc" = 0 ] && state_is_converged && init | grep -q "no changes"; then ok "kill-after-$n"; else bad "kill-after-$n" "re-run exit $rc"; tail -20 "$S/resume.log"; fi
done
echo "VMTEST killed at $killed points"
expect kill-points "killed at 10 or more points" test "$killed" -ge 10

echo "VMTEST SUMMARY"
summary
rm -f "$S/stage"
