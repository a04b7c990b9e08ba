//! The site file: one description of the cluster, the same on every node.
//!
//! Loading reads the whole file, checks every key and every cross-key rule, and returns all
//! problems together as [`Diagnostics`] (exit 2). Nothing runs before the file is valid.

pub mod kinds;
mod reader;
pub mod secrets;
mod site;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::artifacts::Kind as ArtifactKind;

pub use reader::{At, Diagnostic, Diagnostics, Doc, Table};
pub use site::{PATRONI_ROLES, in_subnet, parse_name, parse_size};

pub const DEFAULT_SITE: &str = "/etc/hanode/hanode.toml";
pub const DEFAULT_SECRETS: &str = "/etc/hanode/secrets.toml";

#[derive(Debug, Clone)]
pub struct Site {
    pub path: PathBuf,
    pub cluster: Cluster,
    pub vip: Option<Vip>,
    pub dcs: Dcs,
    pub disks: Option<Disks>,
    pub patroni: Patroni,
    pub postgresql: Postgresql,
    /// Pinned downloads, by name (`[artifacts.etcd]`, ...).
    pub artifacts: Vec<Artifact>,
    pub install: Install,
    pub packages: Packages,
    pub tls: Tls,
}

/// `[tls]`: TLS with client certificates between the cluster's daemons, and for PostgreSQL's
/// clients. On unless the site file turns it off (a lab), which `check` and `plan` warn about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tls {
    pub enabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Repository {
    /// The distribution's own repositories.
    Distro,
    /// apt.postgresql.org (Debian), set up with the key postgresql-common ships.
    Pgdg,
}

#[derive(Debug, Clone)]
pub struct Packages {
    pub repository: Repository,
    /// More OS packages to install on every node.
    pub extra: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveFormat {
    #[value(name = "tar.gz")]
    TarGz,
    Zip,
    /// The download is the program itself.
    Binary,
}

/// A pinned download: where it is, what its SHA-256 must be, and what to install from it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Artifact {
    pub kind: crate::artifacts::Kind,
    pub name: String,
    pub version: String,
    #[serde(serialize_with = "kinds::serialize_masked")]
    pub url: String,
    pub sha256: String,
    pub format: ArchiveFormat,
    /// Program names to install from the archive (found by name in any directory of it).
    pub files: Vec<String>,
}

impl Artifact {
    /// The release file's name: the last segment of the URL's path.
    pub fn file_name(&self) -> &str {
        let path = self.url.split(['?', '#']).next().unwrap_or(&self.url);
        path.rsplit('/').next().unwrap_or(path)
    }
}

/// Where downloads come from and go.
#[derive(Debug, Clone)]
pub struct Install {
    /// A base URL or a local directory holding the release files by name, used instead of
    /// the upstream URLs (air-gapped sites, golden images, `hanode fetch --dest`).
    pub mirror: Option<String>,
    pub cache_dir: PathBuf,
    /// Versioned install directories: `<prefix>/<name>-<version>/`.
    pub prefix: PathBuf,
    /// Where stable links to the installed programs go.
    pub bin_dir: PathBuf,
    /// A PyPI mirror (simple index URL) for the Patroni venv, instead of pypi.org.
    pub pip_index: Option<String>,
}

impl Default for Install {
    fn default() -> Self {
        Install {
            mirror: None,
            cache_dir: "/var/cache/hanode".into(),
            prefix: "/opt/hanode".into(),
            bin_dir: "/usr/local/bin".into(),
            pip_index: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Cluster {
    /// Patroni scope; also the DCS namespace.
    pub name: String,
    /// PostgreSQL major version; the OS profile's default when not given.
    pub postgres_version: Option<u32>,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub name: String,
    pub address: IpAddr,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// PostgreSQL under Patroni (with a co-located etcd member or a Consul client agent).
    Postgres,
    /// A dedicated DCS node: an etcd member or a Consul server (witness).
    Dcs,
}

impl Role {
    /// Every role: the phases that every node runs.
    pub const ALL: &[Role] = &[Role::Postgres, Role::Dcs];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Postgres => "postgres",
            Role::Dcs => "dcs",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Vip {
    pub address: IpAddr,
    pub prefix: u8,
    /// The interface that carries the VIP; the one holding the member's address when absent.
    pub interface: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DcsKind {
    Etcd,
    Consul,
}

#[derive(Debug, Clone)]
pub struct Dcs {
    pub kind: DcsKind,
    pub client_port: u16,
    pub peer_port: u16,
    /// Consul datacenter; derived from the servers' addresses when not given.
    pub datacenter: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Size {
    Percent(u8),
    Bytes(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Filesystem {
    Ext4,
    Xfs,
}

impl Filesystem {
    /// The name blkid reports and mkfs.NAME and fstab use.
    pub fn name(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "ext4",
            Filesystem::Xfs => "xfs",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Volume {
    /// The whole disk, by kernel name or a stable `/dev/disk/by-*` path.
    pub device: PathBuf,
    /// Logical volume name.
    pub volume: String,
    /// Mount point; the OS profile's when not given.
    pub mount: Option<PathBuf>,
    pub size: Size,
}

#[derive(Debug, Clone)]
pub struct Disks {
    pub volume_group: String,
    pub filesystem: Filesystem,
    /// Extra arguments to mkfs.ext4 / mkfs.xfs.
    pub mkfs_options: Vec<String>,
    pub mount_options: Vec<String>,
    /// Disks smaller than this are refused.
    pub min_size: u64,
    pub data: Volume,
    pub wal: Volume,
}

/// Patroni's `watchdog.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Watchdog {
    Off,
    Automatic,
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PatroniInstall {
    /// A venv under the install prefix, from hash-pinned PyPI files (profiles/patroni/).
    Pip,
    /// The distribution's package.
    Package,
}

impl Default for Patroni {
    fn default() -> Self {
        Patroni {
            install: PatroniInstall::Pip,
            ttl: 30,
            loop_wait: 10,
            retry_timeout: 10,
            synchronous_mode: false,
            rest_api_port: 8008,
            postgres_port: 5432,
            watchdog: Watchdog::Off,
            maximum_lag_on_failover: 1 << 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Patroni {
    pub install: PatroniInstall,
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub synchronous_mode: bool,
    pub rest_api_port: u16,
    pub postgres_port: u16,
    /// Patroni's watchdog (softdog; /dev/watchdog writable by postgres).
    pub watchdog: Watchdog,
    pub maximum_lag_on_failover: u64,
}

/// `[postgresql]`: what every member's PostgreSQL gets, through Patroni's dynamic
/// configuration (the DCS), so that all members have the same values.
#[derive(Debug, Clone, Default)]
pub struct Postgresql {
    /// Name (lower-cased) and value, as PostgreSQL reads them.
    pub parameters: Vec<(String, String)>,
    /// Login roles the leader creates (passwords from the secrets file's `[users]`).
    pub users: Vec<String>,
    /// Databases the leader creates, each owned by one of `users`.
    pub databases: Vec<Database>,
    /// Networks whose clients pg_hba admits (TLS and scram-sha-256), besides the members.
    pub clients: Vec<Client>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub name: String,
    pub owner: String,
}

/// `[[postgresql.clients]]`: one network's access; an empty list is `all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub network: std::net::IpAddr,
    pub prefix: u8,
    pub databases: Vec<String>,
    pub users: Vec<String>,
}

impl Site {
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.cluster.members.iter().find(|m| m.name == name)
    }

    /// The pin of an artifact, if the site file has one.
    pub fn artifact(&self, kind: ArtifactKind) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.kind == kind)
    }

    /// Reads and validates a site file.
    pub fn load(path: &Path) -> anyhow::Result<Site> {
        let text = crate::files::read_input(path).map_err(|e| {
            crate::error::bad_input(format!(
                "cannot read the site file {}: {e}; write it (see README: Configuration) or pass --config FILE",
                path.display()
            ))
        })?;
        Site::parse(path, &text).map_err(Into::into)
    }

    /// Validates a site file's text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Site, Diagnostics> {
        let doc = Doc::new(path, text);
        let site = doc.parse().and_then(|t| site::read_site(&doc.root(&t), path));
        let mut diags = doc.into_diagnostics();
        match site {
            Some(site) if diags.is_empty() => Ok(site),
            _ => {
                diags.sort_by_key(|d| (d.line, d.column));
                Err(Diagnostics(diags))
            }
        }
    }
}
