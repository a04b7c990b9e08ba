//! The `disks` phase: LVM volume group `pg` with `pg_data` on the data disk and `pg_wal` on the
//! WAL disk, a filesystem on each, fstab entries by UUID, mounted, owned by postgres.
//!
//! A disk is used only when it is provably empty; anything else is exit 3 with what was found.
//! Volumes that exist are found by LVM metadata and adopted; a filesystem is never recreated.
//! Every destructive command re-checks the disk's identity and emptiness right before it runs.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{Disks as DiskConfig, Role, Size, Volume};
use crate::context::Context;
use crate::disks::{self, BlockDev, Identity};
use crate::engine::{Action, Change, Check, Expect, Phase, Stage, Step, Steps};
use crate::error::{Kind, not_yet, refused};
use crate::exec::Cmd;
use crate::files::FileSpec;
use crate::node;

pub const RECORD: &str = "/var/lib/hanode/disks.json";

pub const PHASE: Phase = Phase::new(
    "disks",
    "LVM volumes pg_data and pg_wal on empty disks, filesystems, fstab, mounts",
    Stage::Firstboot,
    &[Role::Postgres],
    steps,
)
.with_checks(checks);

fn checks(cx: &Context) -> Vec<Check> {
    let Some(d) = &cx.site.disks else {
        return vec![Check::ok("disks", "no [disks] in the site file: PostgreSQL stays on the root filesystem")];
    };
    let devices = match disks::lsblk(cx) {
        Ok(d) => d,
        Err(e) => return vec![Check::error("disks", Kind::Failed, format!("{e:#}"))],
    };
    if let (Ok(a), Ok(b)) = (disks::resolve(cx, &d.data.device, &devices), disks::resolve(cx, &d.wal.device, &devices))
    {
        if a.dev_path() == b.dev_path() {
            return vec![Check::error(
                "disks",
                Kind::BadInput,
                format!(
                    "disks.data.device {} and disks.wal.device {} are the same disk ({}): give two different disks",
                    d.data.device.display(),
                    d.wal.device.display(),
                    a.dev_path().display()
                ),
            )];
        }
    }
    [("data disk", &d.data), ("WAL disk", &d.wal)]
        .into_iter()
        .map(|(what, v)| match disks::resolve(cx, &v.device, &devices) {
            Ok(disk) => Check::ok(
                what,
                format!("{} is {} ({})", v.device.display(), disk.dev_path().display(), Identity::of(disk).describe()),
            ),
            // A disk that is gone is fine once its volume exists (found by LVM metadata).
            Err(e) => Check::blocking(what, crate::error::kind_of(&e), format!("{e:#}")),
        })
        .collect()
}

fn steps(cx: &Context) -> Steps {
    if cx.site.disks.is_none() {
        return Ok(Vec::new());
    }
    Ok(vec![Box::new(Volumes), Box::new(Filesystems), Box::new(Fstab), Box::new(Mounts), Box::new(Ownership)])
}

fn config(cx: &Context) -> &DiskConfig {
    cx.site.disks.as_ref().expect("the disks phase runs only with [disks]")
}

/// The disks chosen on the first run, so that a later run finds them whatever their names.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    pub volume_group: String,
    pub disks: std::collections::BTreeMap<String, Identity>,
}

fn read_record(cx: &Context) -> anyhow::Result<Option<Record>> {
    let path = cx.host_path(Path::new(RECORD));
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(serde_json::from_str(&t).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
}

/// The configured disk, or the one recorded on an earlier run if the name now points elsewhere.
fn find_disk<'a>(
    cx: &Context,
    role: &str,
    v: &Volume,
    devices: &'a [BlockDev],
    record: Option<&Record>,
) -> anyhow::Result<&'a BlockDev> {
    let all: Vec<&BlockDev> = devices.iter().collect();
    let recorded = record.and_then(|r| r.disks.get(role));
    let named = disks::resolve(cx, &v.device, devices);
    match (named, recorded) {
        (Ok(d), Some(id)) if !Identity::of(d).matches(id) => {
            let moved = all.into_iter().find(|d| Identity::of(d).matches(id));
            match moved {
                Some(m) => {
                    crate::ui::info(&format!(
                        "{} now names another disk; the {role} disk chosen earlier ({}) is {}",
                        v.device.display(),
                        id.describe(),
                        m.dev_path().display()
                    ));
                    Ok(m)
                }
                None => Err(refused(format!(
                    "{} is not the {role} disk chosen on an earlier run ({}), and that disk is gone; check the hardware or remove {RECORD} if the disks were replaced on purpose",
                    v.device.display(),
                    id.describe()
                ))),
            }
        }
        (Ok(d), _) => Ok(d),
        (Err(e), _) => Err(e),
    }
}

fn size_args(size: Size) -> Vec<String> {
    match size {
        Size::Percent(p) => vec!["-l".into(), format!("{p}%PVS")],
        Size::Bytes(b) => vec!["-L".into(), format!("{b}b")],
    }
}

/// Physical volumes, the volume group, the logical volumes.
struct Volumes;

impl Step for Volumes {
    fn name(&self) -> String {
        "volumes".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let d = config(cx);
        let vg = &d.volume_group;
        let lvs = disks::lvs(cx)?;
        let lv = |name: &str| lvs.iter().find(|l| &l.vg_name == vg && l.lv_name == name);
        let has_lv = |name: &str| lv(name).is_some();
        let devices = disks::lsblk(cx)?;
        let record = read_record(cx)?;
        let vols = node::volumes(cx);
        let disks_now: Vec<_> =
            vols.iter().map(|v| find_disk(cx, v.kind.as_str(), v.config, &devices, record.as_ref())).collect();
        if let [Ok(a), Ok(b)] = disks_now.as_slice() {
            if a.dev_path() == b.dev_path() {
                return Err(crate::error::bad_input(format!(
                    "disks.data.device {} and disks.wal.device {} are the same disk ({}): give two different disks in {}",
                    d.data.device.display(),
                    d.wal.device.display(),
                    a.dev_path().display(),
                    cx.site.path.display()
                )));
            }
        }
        // A volume of the group is adopted only where it lies on its configured disk: one on
        // another disk (left by someone else, or by a site file that named other disks) is
        // not hanode's to format.
        for (vol, disk) in vols.iter().zip(&disks_now) {
            let (role, v) = (vol.kind.as_str(), vol.config);
            let (Some(l), Ok(disk)) = (lv(&v.volume), disk) else { continue };
            let elsewhere: Vec<&str> = l.pv_paths().filter(|p| Path::new(p) != disk.dev_path()).collect();
            if !elsewhere.is_empty() {
                return Err(refused(format!(
                    "the {role} volume {vg}/{} lies on {}, not on the {role} disk {} ({}): hanode adopts only volumes on the configured disks; correct disks.{role}.device in {} or move the volume yourself (pvmove)",
                    v.volume,
                    elsewhere.join(", "),
                    disk.dev_path().display(),
                    v.device.display(),
                    cx.site.path.display()
                )));
            }
        }
        if has_lv(&d.data.volume) && has_lv(&d.wal.volume) {
            return Ok(record_change(cx, None)?.into_iter().collect());
        }
        let pvs = disks::pvs(cx)?;
        let vg_exists = pvs.iter().any(|p| &p.vg_name == vg);
        let (mut pv_changes, mut vg_members, mut vg_changes, mut lv_changes, mut refusals) =
            (vec![], vec![], vec![], vec![], vec![]);
        let mut chosen = std::collections::BTreeMap::new();
        for vol in node::volumes(cx) {
            let (role, v) = (vol.kind.as_str(), vol.config);
            if has_lv(&v.volume) {
                continue;
            }
            let disk = find_disk(cx, role, v, &devices, record.as_ref())?;
            let path = disk.dev_path();
            let id = Identity::of(disk);
            chosen.insert(role.to_string(), id.clone());
            let shown = format!("{} ({}, {})", path.display(), v.device.display(), id.describe());
            let join_vg = match pvs.iter().find(|p| Path::new(&p.pv_name) == path) {
                Some(p) if &p.vg_name == vg => false,
                // A physical volume in no group: an earlier run stopped after pvcreate. Judged
                // like a bare disk (size, mounts, holders, other signatures) before it is used.
                Some(p) if p.vg_name.is_empty() => {
                    let found = disks::findings(cx, disk, d.min_size, true)?;
                    if !found.is_empty() {
                        refusals.push(format!("the {role} disk {shown}: {}", disks::describe(&found)));
                        continue;
                    }
                    true
                }
                Some(p) => {
                    refusals.push(format!(
                        "the {role} disk {shown}: it is an LVM physical volume of volume group `{}`, not `{vg}`",
                        p.vg_name
                    ));
                    continue;
                }
                None => {
                    let found = disks::findings(cx, disk, d.min_size, false)?;
                    if !found.is_empty() {
                        refusals.push(format!("the {role} disk {shown}: {}", disks::describe(&found)));
                        continue;
                    }
                    let cmd = Cmd::new(format!("making {} an LVM physical volume", path.display()), "pvcreate")
                        .arg(path.display().to_string());
                    pv_changes.push(guarded(
                        format!("pvcreate {}", path.display()),
                        cmd,
                        &path,
                        &id,
                        Expect::EmptyDisk,
                    ));
                    true
                }
            };
            if join_vg && vg_exists {
                let cmd = Cmd::new(format!("adding {} to volume group {vg}", path.display()), "vgextend")
                    .args([vg.as_str(), &path.display().to_string()]);
                vg_changes.push(guarded(
                    format!("vgextend {vg} {}", path.display()),
                    cmd,
                    &path,
                    &id,
                    Expect::OrphanPv,
                ));
            } else if join_vg {
                vg_members.push((path.clone(), id.clone()));
            }
            let mut cmd = Cmd::new(format!("creating logical volume {vg}/{}", v.volume), "lvcreate").args([
                "--yes",
                "-n",
                v.volume.as_str(),
            ]);
            cmd = cmd.args(size_args(v.size)).args([vg.as_str(), &path.display().to_string()]);
            lv_changes.push(Change::run(format!("lvcreate {} on {}", vol.lv.display(), path.display()), cmd));
        }
        if !refusals.is_empty() {
            return Err(refused(format!(
                "refusing to touch the disks, nothing was changed:\n  - {}\nhanode only uses a disk that is provably empty. If a disk's contents may be destroyed, clear it on purpose (`wipefs --all DEVICE`; unmount it first), or correct disks.*.device in {} (kernel names move between boots: /dev/disk/by-id/ names do not), then run again",
                refusals.join("\n  - "),
                cx.site.path.display()
            )));
        }
        if !vg_members.is_empty() {
            let paths: Vec<String> = vg_members.iter().map(|(p, _)| p.display().to_string()).collect();
            let cmd = Cmd::new(format!("creating volume group {vg}"), "vgcreate")
                .arg(vg.as_str())
                .args(paths.iter().cloned());
            // The guard re-checks every member; the first one is named in the action.
            let (first, first_id) = &vg_members[0];
            let mut change =
                guarded(format!("vgcreate {vg} {}", paths.join(" ")), cmd, first, first_id, Expect::OrphanPv);
            if let Action::Guarded { others, .. } = &mut change.action {
                others.extend(vg_members[1..].iter().cloned());
            }
            vg_changes.insert(0, change);
        }
        let mut changes = pv_changes;
        changes.extend(vg_changes);
        changes.extend(lv_changes);
        changes.extend(record_change(cx, Some(chosen))?);
        Ok(changes)
    }
}

fn guarded(summary: String, cmd: Cmd, device: &Path, id: &Identity, expect: Expect) -> Change {
    Change::new(
        summary,
        Action::Guarded { cmd, device: device.to_path_buf(), identity: id.clone(), expect, others: Vec::new() },
    )
}

/// Records the identity of the disks chosen, for later runs.
fn record_change(
    cx: &Context,
    chosen: Option<std::collections::BTreeMap<String, Identity>>,
) -> anyhow::Result<Option<Change>> {
    let existing = read_record(cx)?;
    let mut record = existing.clone().unwrap_or_default();
    record.volume_group = config(cx).volume_group.clone();
    match chosen {
        Some(c) => record.disks.extend(c),
        None if existing.is_some() => return Ok(None),
        None => {}
    }
    let text = serde_json::to_string_pretty(&record)? + "\n";
    Change::for_file(cx, FileSpec::new(RECORD, text, 0o644))
}

/// A filesystem on each volume; an existing one is kept, whatever it holds.
struct Filesystems;

impl Step for Filesystems {
    fn name(&self) -> String {
        "filesystems".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let d = config(cx);
        let want = d.filesystem.name();
        let tool = format!("mkfs.{want}");
        let mut changes = Vec::new();
        for vol in node::volumes(cx) {
            let (v, lv) = (vol.config, vol.lv);
            match disks::filesystem(cx, &lv)? {
                Some((fs, _)) if fs == want => {}
                Some((fs, uuid)) => {
                    return Err(refused(format!(
                        "{} already holds a {fs} filesystem (UUID {uuid}) but disks.filesystem is {want}: hanode never reformats a volume; set disks.filesystem = \"{fs}\" or clear the volume yourself",
                        lv.display()
                    )));
                }
                None => {
                    let cmd = Cmd::new(format!("creating a {want} filesystem on {}", lv.display()), &tool)
                        .arg("-q")
                        .args(["-L", v.volume.as_str()])
                        .args(d.mkfs_options.iter().cloned())
                        .arg(lv.display().to_string())
                        .timeout(Cmd::LONG_TIMEOUT);
                    let summary = format!("{} {}", cmd.argv.join(" "), "");
                    changes.push(Change::new(
                        summary.trim_end().to_string(),
                        Action::Guarded {
                            cmd,
                            device: lv,
                            identity: Identity { serial: None, wwn: None, size: 0 },
                            expect: Expect::NoFilesystem,
                            others: Vec::new(),
                        },
                    ));
                }
            }
        }
        Ok(changes)
    }
}

/// fstab entries by filesystem UUID, so the mounts come back after a reboot whatever the
/// disks are called then.
struct Fstab;

impl Step for Fstab {
    fn name(&self) -> String {
        "fstab".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let d = config(cx);
        let fs = d.filesystem.name();
        let real = cx.host_path(Path::new("/etc/fstab"));
        let current = match std::fs::read_to_string(&real) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", real.display()))),
        };
        let mut entries = Vec::new();
        for vol in node::volumes(cx) {
            let (mount, lv) = (vol.mount, vol.lv);
            // The filesystems step before this one makes it; a plan cannot read its UUID yet.
            let Some((_, uuid)) = disks::filesystem(cx, &lv)? else {
                return Err(not_yet(
                    format!("add {} to /etc/fstab by the UUID of the filesystem on {}", mount.display(), lv.display()),
                    anyhow::anyhow!("{} has no filesystem yet", lv.display()),
                ));
            };
            entries.push((fstab_field(&mount), fstab_line(&uuid, &mount, fs, &d.mount_options)?));
        }
        let text = fstab_merge(&current, &entries);
        let mode = std::fs::metadata(&real)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap_or(0o644);
        Ok(Change::for_file(cx, FileSpec::new("/etc/fstab", text, mode))?.into_iter().collect())
    }
}

/// `current` with hanode's lines (`(mount point field, line)`) in place of any line for the same
/// mount point; every other line, comments included, stays as it is.
pub fn fstab_merge(current: &str, entries: &[(String, String)]) -> String {
    let mut lines: Vec<&str> = current
        .lines()
        .filter(|l| {
            let mp = l.split_whitespace().nth(1);
            l.trim_start().starts_with('#') || !entries.iter().any(|(m, _)| mp == Some(m.as_str()))
        })
        .collect();
    lines.extend(entries.iter().map(|(_, l)| l.as_str()));
    lines.join("\n") + "\n"
}

/// A path as one fstab(5) field: space, tab, newline and backslash as octal escapes, which
/// mount(8) and systemd's fstab generator decode.
pub fn fstab_field(path: &Path) -> String {
    let mut out = String::new();
    for c in path.display().to_string().chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out += &format!("\\{:03o}", c as u32),
            c => out.push(c),
        }
    }
    out
}

/// One fstab line for a filesystem by UUID. Options are joined by commas, so each is held to the
/// loader's rule for one mount option (`kinds::mount_option`) here too: the renderer is safe
/// whatever calls it.
pub fn fstab_line(uuid: &str, mount: &Path, fs: &str, options: &[String]) -> anyhow::Result<String> {
    if uuid.is_empty() || !uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(crate::error::bad_input(format!("fstab: {uuid:?} is not a filesystem UUID")));
    }
    for o in options {
        crate::config::kinds::mount_option(o).map_err(|e| crate::error::bad_input(format!("fstab: {e}")))?;
    }
    let opts = if options.is_empty() { "defaults".to_string() } else { options.join(",") };
    Ok(format!("UUID={uuid} {} {fs} {opts} 0 2", fstab_field(mount)))
}

/// Mount points exist and the volumes are mounted there, from fstab.
struct Mounts;

impl Step for Mounts {
    fn name(&self) -> String {
        "mounts".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let mounted = disks::mounts(cx)?;
        let mut changes = Vec::new();
        let mut need_reload = false;
        for vol in node::volumes(cx) {
            let (mount, lv) = (vol.mount, vol.lv);
            // A link where the mount point should be would put the volume over its target.
            if crate::files::metadata_no_symlink(&cx.host_path(&mount), true)?.is_none() {
                changes.push(Change::new(
                    format!("create the mount point {}", mount.display()),
                    Action::Dir { path: cx.host_path(&mount), mode: 0o755, owner: "root".into(), group: "root".into() },
                ));
            }
            match mounted.iter().find(|(_, mp)| *mp == mount) {
                Some((src, _)) if disks::same_device(Path::new(src), &lv) => {}
                Some((src, _)) => {
                    return Err(refused(format!(
                        "{src} is mounted at {}, not {}: unmount it or choose another mount point",
                        mount.display(),
                        lv.display()
                    )));
                }
                None => {
                    need_reload = true;
                    let cmd =
                        Cmd::new(format!("mounting {}", mount.display()), "mount").arg(mount.display().to_string());
                    changes.push(Change::run(format!("mount {}", mount.display()), cmd));
                }
            }
        }
        if need_reload && cx.systemd_running() {
            // systemd reads fstab into mount units only on a reload.
            let cmd = Cmd::new("reloading systemd (fstab changed)", "systemctl").arg("daemon-reload");
            let at = changes.iter().position(|c| matches!(c.action, Action::Run(_))).unwrap_or(changes.len());
            changes.insert(at, Change::run("systemctl daemon-reload", cmd));
        }
        Ok(changes)
    }
}

struct Ownership;

impl Step for Ownership {
    fn name(&self) -> String {
        "ownership".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        // The user comes with the PostgreSQL packages (the packages phase runs first).
        let pg = &cx.profile.postgres;
        // The mount points, then PostgreSQL's directories on them.
        let vols = node::volumes(cx);
        let dirs = vols.iter().map(|v| &v.mount).chain(vols.iter().map(|v| &v.pg_dir));
        dirs.filter_map(|d| Change::for_dir(cx, d, 0o700, &pg.user, &pg.group).transpose()).collect()
    }
}
