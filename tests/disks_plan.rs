//! The disks phase's plan from canned observations (lsblk, wipefs, LVM reports): the same
//! LVM commands on Debian and RED OS. The real thing runs in a VM: scripts/test-vm-disks.

mod common;

use std::sync::Arc;

use hanode::context::{Context, Options};
use hanode::engine::{self, Action, Report};
use hanode::exec::{Output, Recording};

const SITE: &str = r#"[cluster]
name = "main"
members = [{ name = "pg1", address = "10.0.0.11" }]
[disks]
data = { device = "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_pgdata" }
wal = { device = "/dev/sdc", size = "20G" }
"#;

const LSBLK: &str = r#"{"blockdevices": [
 {"name": "sda", "path": "/dev/sda", "type": "disk", "size": 10737418240, "fstype": "ext4", "mountpoint": "/", "serial": "root", "wwn": null},
 {"name": "sdb", "path": "/dev/sdb", "type": "disk", "size": "53687091200", "fstype": null, "mountpoint": null, "serial": "pgdata", "wwn": null},
 {"name": "sdc", "path": "/dev/sdc", "type": "disk", "size": 53687091200, "fstype": null, "mountpoint": null, "serial": "pgwal", "wwn": "0x5000c500a1b2c3d4"}
]}"#;

fn ok(stdout: &str) -> Output {
    Output { code: Some(0), stdout: stdout.into(), stderr: String::new() }
}

/// Canned LVM and wipefs answers beyond the defaults (no PVs, no LVs, no signatures).
#[derive(Default)]
struct Lvm {
    site: Option<String>,
    pvs: Option<&'static str>,
    lvs: Option<&'static str>,
    /// (device, wipefs's JSON for it)
    wipefs: Option<(&'static str, &'static str)>,
}

fn plan(fixture: &str, lsblk: &str) -> anyhow::Result<Vec<String>> {
    plan_with(fixture, lsblk, Lvm::default())
}

fn plan_with(fixture: &str, lsblk: &str, lvm: Lvm) -> anyhow::Result<Vec<String>> {
    let root = common::fixture_root(fixture);
    for dev in ["dev/sda", "dev/sdb", "dev/sdc"] {
        std::fs::create_dir_all(root.path().join("dev")).unwrap();
        std::fs::write(root.path().join(dev), "").unwrap();
    }
    std::fs::create_dir_all(root.path().join("dev/disk/by-id")).unwrap();
    std::os::unix::fs::symlink("../../sdb", root.path().join("dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_pgdata"))
        .unwrap();
    let rec = Arc::new(Recording::default());
    rec.reply(&["lsblk"], ok(lsblk));
    if let Some((dev, json)) = lvm.wipefs {
        rec.reply(&["wipefs", "--no-act", "-J", dev], ok(json));
    }
    rec.reply(&["wipefs"], ok(""));
    rec.reply(&["pvs"], ok(lvm.pvs.unwrap_or(r#"{"report": [{"pv": []}]}"#)));
    rec.reply(&["lvs"], ok(lvm.lvs.unwrap_or(r#"{"report": [{"lv": []}]}"#)));
    rec.reply(&["blkid"], Output { code: Some(2), ..Default::default() });
    let site = common::write(root.path(), "site.toml", lvm.site.as_deref().unwrap_or(SITE), 0o644);
    let opts = Options { root: root.path().into(), config: Some(site), node: Some("pg1".into()), ..Options::default() };
    let mut cx = Context::load(&opts, Box::new(rec)).unwrap();
    cx.dry_run = true;
    let phases = hanode::phases::select(cx.role, engine::Stage::All, &[], Some("disks")).unwrap();
    let mut report = Report::default();
    engine::preflight(&cx, &phases, &mut report)?;
    engine::converge(&cx, &phases, true, &mut report)?;
    Ok(report
        .changes
        .iter()
        .filter_map(|c| match &c.action {
            Action::Run(cmd) | Action::Guarded { cmd, .. } => Some(cmd.argv.join(" ")),
            _ => None,
        })
        .collect())
}

#[test]
fn debian_and_red_os_plan_the_same_lvm_commands() {
    let expected = vec![
        "pvcreate /dev/sdb",
        "pvcreate /dev/sdc",
        "vgcreate pg /dev/sdb /dev/sdc",
        "lvcreate --yes -n pg_data -l 100%PVS pg /dev/sdb",
        "lvcreate --yes -n pg_wal -L 21474836480b pg /dev/sdc",
        "mkfs.ext4 -q -L pg_data /dev/pg/pg_data",
        "mkfs.ext4 -q -L pg_wal /dev/pg/pg_wal",
        "mount /pgdata",
        "mount /pgwal",
    ];
    for fixture in ["debian-12", "debian-13", "redos-7.3", "redos-8"] {
        assert_eq!(plan(fixture, LSBLK).unwrap(), expected, "{fixture}");
    }
}

#[test]
fn a_disk_with_a_filesystem_is_refused_with_what_was_found() {
    let lsblk = LSBLK.replace(
        r#""fstype": null, "mountpoint": null, "serial": "pgdata""#,
        r#""fstype": "xfs", "mountpoint": "/srv", "serial": "pgdata""#,
    );
    let err = plan("redos-8", &lsblk).unwrap_err();
    assert_eq!(hanode::error::kind_of(&err), hanode::error::Kind::Refused);
    let msg = format!("{err:#}");
    assert!(msg.contains("/dev/sdb is mounted at /srv"), "{msg}");
    assert!(msg.contains("wipefs --all DEVICE"), "{msg}");
}

#[test]
fn the_system_disk_is_refused_whatever_it_is_called() {
    // The WAL disk's name now points at the disk that carries `/`.
    let lsblk = LSBLK.replace(
        r#""path": "/dev/sdc", "type": "disk", "size": 53687091200, "fstype": null, "mountpoint": null"#,
        r#""path": "/dev/sdc", "type": "disk", "size": 53687091200, "fstype": "ext4", "mountpoint": "/""#,
    );
    let err = plan("debian-12", &lsblk).unwrap_err();
    assert!(format!("{err:#}").contains("it carries /: this is a system disk"), "{err:#}");
}

#[test]
fn one_disk_under_two_names_is_refused() {
    // The by-id link of the data disk points at /dev/sdb; the WAL disk is /dev/sdb by name.
    let site = SITE.replace(r#"wal = { device = "/dev/sdc""#, r#"wal = { device = "/dev/sdb""#);
    let err = plan_with("debian-12", LSBLK, Lvm { site: Some(site), ..Lvm::default() }).unwrap_err();
    assert_eq!(hanode::error::kind_of(&err), hanode::error::Kind::BadInput, "{err:#}");
    assert!(format!("{err:#}").contains("are the same disk (/dev/sdb)"), "{err:#}");
}

#[test]
fn a_volume_of_the_group_on_another_disk_is_not_adopted() {
    let lvs = r#"{"report": [{"lv": [
        {"lv_name": "pg_data", "vg_name": "pg", "lv_size": "1073741824", "devices": "/dev/sdd(0)"},
        {"lv_name": "pg_wal", "vg_name": "pg", "lv_size": "1073741824", "devices": "/dev/sdc(0)"}]}]}"#;
    let err = plan_with("debian-12", LSBLK, Lvm { lvs: Some(lvs), ..Lvm::default() }).unwrap_err();
    assert_eq!(hanode::error::kind_of(&err), hanode::error::Kind::Refused, "{err:#}");
    let msg = format!("{err:#}");
    assert!(msg.contains("pg/pg_data lies on /dev/sdd, not on the data disk /dev/sdb"), "{msg}");
    // On its own disks the same volumes are adopted: nothing is created.
    let lvs_ok = lvs.replace("/dev/sdd(0)", "/dev/sdb(0)");
    let lvs_ok: &'static str = Box::leak(lvs_ok.into_boxed_str());
    let cmds = plan_with("debian-12", LSBLK, Lvm { lvs: Some(lvs_ok), ..Lvm::default() }).unwrap();
    assert!(!cmds.iter().any(|c| c.starts_with("pvcreate") || c.starts_with("lvcreate")), "{cmds:?}");
}

#[test]
fn an_orphan_physical_volume_is_judged_like_a_bare_disk() {
    let pvs = r#"{"report": [{"pv": [{"pv_name": "/dev/sdb", "vg_name": ""}]}]}"#;
    // Only its LVM signature: taken into the group without a second pvcreate.
    let lvm2 =
        r#"{"signatures": [{"device": "sdb", "offset": "0x218", "type": "LVM2_member", "uuid": "x", "label": null}]}"#;
    let cmds =
        plan_with("debian-12", LSBLK, Lvm { pvs: Some(pvs), wipefs: Some(("/dev/sdb", lvm2)), ..Lvm::default() })
            .unwrap();
    assert!(cmds.contains(&"vgcreate pg /dev/sdb /dev/sdc".to_string()), "{cmds:?}");
    assert!(!cmds.contains(&"pvcreate /dev/sdb".to_string()), "{cmds:?}");
    // Smaller than min_size: refused, as a bare disk would be.
    let site = SITE.replace("[disks]\n", "[disks]\nmin_size = \"100G\"\n");
    let err = plan_with(
        "debian-12",
        LSBLK,
        Lvm { site: Some(site), pvs: Some(pvs), wipefs: Some(("/dev/sdb", lvm2)), ..Lvm::default() },
    )
    .unwrap_err();
    assert_eq!(hanode::error::kind_of(&err), hanode::error::Kind::Refused, "{err:#}");
    assert!(format!("{err:#}").contains("smaller than disks.min_size"), "{err:#}");
}

/// The fstab merge, a pure function: the operator's lines and comments stay, in order; a line
/// for one of hanode's mount points is replaced by hanode's; a second merge changes nothing.
#[test]
fn fstab_merge_keeps_the_operators_lines_and_replaces_ours() {
    use hanode::phases::disks::fstab_merge;
    let current = "# /etc/fstab\nUUID=aaaa / ext4 defaults 0 1\nUUID=old /pgdata xfs defaults 0 2\n\n# swap\n/swap none swap sw 0 0\n";
    let ours = vec![
        ("/pgdata".to_string(), "UUID=1111 /pgdata ext4 noatime 0 2".to_string()),
        ("/pgwal".to_string(), "UUID=2222 /pgwal ext4 noatime 0 2".to_string()),
    ];
    let merged = fstab_merge(current, &ours);
    assert_eq!(
        merged,
        "# /etc/fstab\nUUID=aaaa / ext4 defaults 0 1\n\n# swap\n/swap none swap sw 0 0\nUUID=1111 /pgdata ext4 noatime 0 2\nUUID=2222 /pgwal ext4 noatime 0 2\n"
    );
    assert_eq!(fstab_merge(&merged, &ours), merged, "a second merge is a no-op");
    assert_eq!(fstab_merge("", &ours), "UUID=1111 /pgdata ext4 noatime 0 2\nUUID=2222 /pgwal ext4 noatime 0 2\n");
    // A commented-out line for the same mount point is the operator's note: kept.
    let noted = "#UUID=x /pgdata ext4 defaults 0 2\n";
    assert!(fstab_merge(noted, &ours).starts_with(noted));
}
