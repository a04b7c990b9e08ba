//! Block devices and LVM as the disks phase sees them: what is on a disk, which disk is which,
//! and whether one may be used. Everything here observes; nothing writes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::context::Context;
use crate::exec::Cmd;

/// lsblk prints sizes as numbers or, in older util-linux, as strings.
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Str(String),
    }
    Ok(match Option::<N>::deserialize(d)? {
        Some(N::Num(n)) => Some(n),
        Some(N::Str(s)) => s.parse().ok(),
        None => None,
    })
}

#[derive(Debug, Clone, Deserialize)]
pub struct BlockDev {
    pub name: String,
    pub path: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "size")]
    pub size: Option<u64>,
    pub fstype: Option<String>,
    pub mountpoint: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    #[serde(default)]
    pub children: Vec<BlockDev>,
}

impl BlockDev {
    pub fn dev_path(&self) -> PathBuf {
        self.path.clone().map_or_else(|| PathBuf::from("/dev").join(&self.name), PathBuf::from)
    }

    fn walk<'a>(&'a self, out: &mut Vec<&'a BlockDev>) {
        out.push(self);
        for c in &self.children {
            c.walk(out);
        }
    }

    /// This device and everything on it (partitions, LVs, ...).
    pub fn subtree(&self) -> Vec<&BlockDev> {
        let mut out = Vec::new();
        self.walk(&mut out);
        out
    }
}

#[derive(Deserialize)]
struct LsblkOut {
    blockdevices: Vec<BlockDev>,
}

/// Every block device, as a tree.
pub fn lsblk(cx: &Context) -> anyhow::Result<Vec<BlockDev>> {
    let cmd = Cmd::new("listing block devices", "lsblk").args([
        "-J",
        "-b",
        "-o",
        "NAME,PATH,TYPE,SIZE,FSTYPE,MOUNTPOINT,SERIAL,WWN",
    ]);
    let out = cx.runner.run(&cmd)?;
    let parsed: LsblkOut = serde_json::from_str(&out.stdout).context("reading lsblk's JSON")?;
    Ok(parsed.blockdevices)
}

/// How to recognise a disk whatever its kernel name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub size: u64,
}

impl Identity {
    pub fn of(d: &BlockDev) -> Identity {
        Identity {
            serial: d.serial.clone().filter(|s| !s.is_empty()),
            wwn: d.wwn.clone().filter(|s| !s.is_empty()),
            size: d.size.unwrap_or(0),
        }
    }

    /// Same disk: same WWN or serial when the disk has one, and the same size.
    pub fn matches(&self, other: &Identity) -> bool {
        let key = |i: &Identity| i.wwn.clone().or_else(|| i.serial.clone());
        self.size == other.size && key(self) == key(other)
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.serial {
            parts.push(format!("serial {s}"));
        }
        if let Some(w) = &self.wwn {
            parts.push(format!("WWN {w}"));
        }
        parts.push(human_size(self.size));
        parts.join(", ")
    }
}

pub fn human_size(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// The whole disk a configured path names (`/dev/sdb`, `/dev/disk/by-id/...`), followed
/// through links to its kernel name.
pub fn resolve<'a>(cx: &Context, configured: &Path, devices: &'a [BlockDev]) -> anyhow::Result<&'a BlockDev> {
    let real = cx.host_path(configured);
    let canon = std::fs::canonicalize(&real).map_err(|e| {
        crate::error::bad_input(format!(
            "disk {} does not exist on this host ({e}); check the device in the site file (`lsblk -o NAME,SERIAL,WWN,SIZE` lists them)",
            configured.display()
        ))
    })?;
    let canon = match canon.strip_prefix(&cx.root) {
        Ok(rel) if cx.root != Path::new("/") => Path::new("/").join(rel),
        _ => canon,
    };
    let disk = devices.iter().find(|d| d.dev_path() == canon);
    let disk = disk
        .with_context(|| format!("{} ({}) is not a block device lsblk knows", configured.display(), canon.display()))?;
    Ok(disk)
}

/// Something on a disk that keeps hanode from using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A partition, LVM volume or the like, not a whole disk (lsblk's type).
    NotWholeDisk(String),
    /// It carries `/` or `/boot`.
    SystemDisk(String),
    Mounted {
        device: PathBuf,
        at: String,
    },
    /// A partition or other child device, with its filesystem if any.
    Holds {
        kind: String,
        device: PathBuf,
        fstype: Option<String>,
    },
    /// A wipefs signature: filesystem, RAID, LVM, swap, partition table.
    Signature {
        kind: String,
        offset: String,
    },
    /// Device-mapper or MD devices built on it.
    InUse(Vec<String>),
    TooSmall {
        size: u64,
        min: u64,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::NotWholeDisk(kind) => write!(f, "it is a {kind}, not a whole disk: name the disk itself"),
            Finding::SystemDisk(m) => write!(f, "it carries {m}: this is a system disk"),
            Finding::Mounted { device, at } => write!(f, "{} is mounted at {at}", device.display()),
            Finding::Holds { kind, device, fstype } => {
                write!(f, "it holds {kind} {} ({})", device.display(), fstype.as_deref().unwrap_or("no filesystem"))
            }
            Finding::Signature { kind, offset } => write!(f, "it carries a signature: {kind} at offset {offset}"),
            Finding::InUse(holders) => write!(f, "it is in use by {}", holders.join(", ")),
            Finding::TooSmall { size, min } => {
                write!(f, "it is {}, smaller than disks.min_size {}", human_size(*size), human_size(*min))
            }
        }
    }
}

/// The findings as one clause for a refusal.
pub fn describe(found: &[Finding]) -> String {
    found.iter().map(Finding::to_string).collect::<Vec<_>>().join("; ")
}

/// What is on a disk that keeps hanode from using it; empty when it is provably empty.
/// With `orphan_pv`, the disk is an LVM physical volume in no group (an earlier run stopped
/// after pvcreate): its LVM signature is expected, everything else is judged as on a bare disk.
pub fn findings(cx: &Context, disk: &BlockDev, min_size: u64, orphan_pv: bool) -> anyhow::Result<Vec<Finding>> {
    let mut found = Vec::new();
    let path = disk.dev_path();
    if disk.kind != "disk" {
        found.push(Finding::NotWholeDisk(disk.kind.clone()));
    }
    for d in disk.subtree() {
        if let Some(m) = d.mountpoint.as_deref().filter(|m| !m.is_empty()) {
            found.push(if m == "/" || m.starts_with("/boot") {
                Finding::SystemDisk(m.to_string())
            } else {
                Finding::Mounted { device: d.dev_path(), at: m.to_string() }
            });
        }
    }
    for d in disk.children.iter() {
        found.push(Finding::Holds { kind: d.kind.clone(), device: d.dev_path(), fstype: d.fstype.clone() });
    }
    let sigs = signatures(cx, &path)?.into_iter().filter(|(kind, _)| !(orphan_pv && kind == "LVM2_member"));
    found.extend(sigs.map(|(kind, offset)| Finding::Signature { kind, offset }));
    let holders = std::fs::read_dir(cx.host_path(&Path::new("/sys/class/block").join(&disk.name).join("holders")))
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned())).collect::<Vec<_>>())
        .unwrap_or_default();
    if !holders.is_empty() {
        found.push(Finding::InUse(holders));
    }
    let size = disk.size.unwrap_or(0);
    if size < min_size {
        found.push(Finding::TooSmall { size, min: min_size });
    }
    Ok(found)
}

#[derive(Deserialize)]
struct WipefsOut {
    signatures: Vec<Signature>,
}

#[derive(Deserialize)]
struct Signature {
    #[serde(rename = "type")]
    kind: String,
    offset: String,
}

/// Filesystem, RAID, LVM, swap and partition-table signatures (`wipefs` only reads here).
pub fn signatures(cx: &Context, dev: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let cmd = Cmd::new(format!("probing {} for signatures", dev.display()), "wipefs").args([
        "--no-act",
        "-J",
        &dev.display().to_string(),
    ]);
    let out = cx.runner.run(&cmd)?;
    if out.stdout.trim().is_empty() {
        return Ok(Vec::new());
    }
    let parsed: WipefsOut = serde_json::from_str(&out.stdout).context("reading wipefs's JSON")?;
    Ok(parsed.signatures.into_iter().map(|s| (s.kind, s.offset)).collect())
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pv {
    pub pv_name: String,
    pub vg_name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Lv {
    pub lv_name: String,
    pub vg_name: String,
    #[serde(deserialize_with = "size")]
    pub lv_size: Option<u64>,
    /// e.g. `/dev/sdb(0)`
    pub devices: String,
}

impl Lv {
    /// The physical volumes it lies on (`devices` is `/dev/sdb(0)` or `/dev/sdb(0),/dev/sdd(0)`).
    pub fn pv_paths(&self) -> impl Iterator<Item = &str> {
        self.devices.split(',').map(|d| d.split('(').next().unwrap_or(d).trim()).filter(|d| !d.is_empty())
    }
}

#[derive(Deserialize)]
struct Report<T> {
    report: Vec<BTreeMap<String, Vec<T>>>,
}

fn lvm_report<T: for<'de> Deserialize<'de>>(cx: &Context, tool: &str, fields: &str) -> anyhow::Result<Vec<T>> {
    let cmd = Cmd::new(format!("reading LVM state ({tool})"), tool).args([
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        fields,
    ]);
    let out = cx.runner.run(&cmd)?;
    let parsed: Report<T> = serde_json::from_str(&out.stdout).with_context(|| format!("reading {tool}'s JSON"))?;
    Ok(parsed.report.into_iter().flat_map(|m| m.into_values()).flatten().collect())
}

pub fn pvs(cx: &Context) -> anyhow::Result<Vec<Pv>> {
    lvm_report(cx, "pvs", "pv_name,vg_name")
}

pub fn lvs(cx: &Context) -> anyhow::Result<Vec<Lv>> {
    lvm_report(cx, "lvs", "lv_name,vg_name,lv_size,devices")
}

/// TYPE and UUID of the filesystem on `dev`, if any.
pub fn filesystem(cx: &Context, dev: &Path) -> anyhow::Result<Option<(String, String)>> {
    let cmd = Cmd::new(format!("probing {} for a filesystem", dev.display()), "blkid").args([
        "-p",
        "-o",
        "export",
        &dev.display().to_string(),
    ]);
    let out = cx.runner.output(&cmd)?;
    // blkid exits 2 when it finds nothing.
    match out.code {
        Some(0) => {}
        Some(2) => return Ok(None),
        _ => anyhow::bail!("{} failed: `{}`: {}", cmd.description, cmd.shell_words(), out.stderr.trim()),
    }
    let get = |k: &str| out.stdout.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_string);
    Ok(get("TYPE").map(|t| (t, get("UUID").unwrap_or_default())))
}

/// Mount points and their sources, from /proc/self/mountinfo.
pub fn mounts(cx: &Context) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let unescape = |s: &str| s.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\");
    Ok(text
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            // Mount points as the target host sees them: under --root, only those below it.
            let seen = PathBuf::from(unescape(fields.get(4)?));
            let on_host = Path::new("/").join(seen.strip_prefix(&cx.root).ok()?);
            Some((unescape(fields.get(sep + 2)?), on_host))
        })
        .collect())
}

/// Whether two device paths name the same device (`/dev/pg/pg_data` and `/dev/mapper/pg-pg_data`).
pub fn same_device(a: &Path, b: &Path) -> bool {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    real(a) == real(b)
}

/// Right before a destructive command: is the device still the disk that was observed, in
/// the state that was observed? Anything else is exit 3.
pub fn recheck(
    cx: &Context,
    device: &Path,
    identity: &Identity,
    expect: crate::engine::Expect,
    others: &[(PathBuf, Identity)],
) -> anyhow::Result<()> {
    use crate::engine::Expect;
    use crate::error::refused;
    if expect == Expect::NoFilesystem {
        return match filesystem(cx, device)? {
            None => Ok(()),
            Some((fs, uuid)) => Err(refused(format!(
                "{} now holds a {fs} filesystem (UUID {uuid}): not formatting it",
                device.display()
            ))),
        };
    }
    let devices = lsblk(cx)?;
    let pvs = if expect == Expect::OrphanPv { pvs(cx)? } else { Vec::new() };
    for (dev, id) in std::iter::once((device.to_path_buf(), identity.clone())).chain(others.iter().cloned()) {
        let disk = devices.iter().find(|d| d.dev_path() == dev);
        let disk = disk.ok_or_else(|| refused(format!("{} disappeared before hanode could use it", dev.display())))?;
        let now = Identity::of(disk);
        if !now.matches(&id) {
            return Err(refused(format!(
                "{} is no longer the disk observed ({}); it is {}: not touching it",
                dev.display(),
                id.describe(),
                now.describe()
            )));
        }
        match expect {
            Expect::EmptyDisk => {
                let found = findings(cx, disk, 0, false)?;
                if !found.is_empty() {
                    return Err(refused(format!("{} is no longer empty: {}", dev.display(), describe(&found))));
                }
            }
            Expect::OrphanPv => {
                if !pvs.iter().any(|p| Path::new(&p.pv_name) == dev && p.vg_name.is_empty()) {
                    return Err(refused(format!(
                        "{} is no longer an LVM physical volume outside any volume group",
                        dev.display()
                    )));
                }
            }
            Expect::NoFilesystem => {}
        }
    }
    Ok(())
}
