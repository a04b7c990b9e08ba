//! What this node is, decided once from the site file, the OS profile and the member: its
//! PostgreSQL volumes and directories. (Its daemons are [`crate::units::daemons`]; the
//! artifacts it needs, [`crate::artifacts::needed`].) Phases, `status`, the SELinux rules and
//! the renderers read these instead of working them out again.

use std::path::PathBuf;

use crate::config;
use crate::context::Context;
use crate::profile::Profile;

/// PostgreSQL's two volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    Data,
    Wal,
}

impl VolumeKind {
    /// Its name in the site file (`disks.data`), in disks.json and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeKind::Data => "data",
            VolumeKind::Wal => "wal",
        }
    }
}

/// One of PostgreSQL's LVM volumes on this node ([disks] in the site file).
#[derive(Debug, Clone)]
pub struct Volume<'a> {
    pub kind: VolumeKind,
    /// Its [disks.data] or [disks.wal] table.
    pub config: &'a config::Volume,
    /// The logical volume: `/dev/VG/LV`.
    pub lv: PathBuf,
    /// Where it is mounted: the site file's, else the profile's default.
    pub mount: PathBuf,
    /// PostgreSQL's directory on it, `<mount>/data` or `<mount>/wal`, owned by postgres, 0700.
    pub pg_dir: PathBuf,
}

/// The volumes, data first; none without [disks] (PostgreSQL on the root filesystem).
pub fn volumes(cx: &Context) -> Vec<Volume<'_>> {
    let Some(d) = &cx.site.disks else { return Vec::new() };
    let paths = &cx.profile.paths;
    [(VolumeKind::Data, &d.data, &paths.data_mount), (VolumeKind::Wal, &d.wal, &paths.wal_mount)]
        .into_iter()
        .map(|(kind, v, default)| {
            let mount = v.mount.clone().unwrap_or_else(|| PathBuf::from(default));
            Volume {
                kind,
                config: v,
                lv: PathBuf::from("/dev").join(&d.volume_group).join(&v.volume),
                pg_dir: mount.join(kind.as_str()),
                mount,
            }
        })
        .collect()
}

/// PostgreSQL's data directory and, with separate disks, its WAL directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresDirs {
    pub data: PathBuf,
    pub wal: Option<PathBuf>,
}

pub fn postgres_dirs(cx: &Context) -> PostgresDirs {
    let vols = volumes(cx);
    match vols.as_slice() {
        [data, wal] => PostgresDirs { data: data.pg_dir.clone(), wal: Some(wal.pg_dir.clone()) },
        _ => PostgresDirs {
            data: PathBuf::from(Profile::expand(&cx.profile.postgres.data_dir, cx.postgres_version()))
                .join(&cx.site.cluster.name),
            wal: None,
        },
    }
}
