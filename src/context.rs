//! Everything a phase needs to know: the host (under its root), the cluster, this node.

use std::path::{Path, PathBuf};

use crate::config::secrets::Secrets;
use crate::config::{self, Member, Role, Site};
use crate::error::bad_input;
use crate::exec::Runner;
use crate::identity::{self, Via};
use crate::profile::{self, OsRelease, Profile};

/// Where to find the inputs; the command line fills it.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The target host's root; `/` except in tests and image builds.
    pub root: PathBuf,
    pub config: Option<PathBuf>,
    pub secrets: Option<PathBuf>,
    pub profiles_dir: Option<PathBuf>,
    pub node: Option<String>,
    pub role: Option<Role>,
    /// `--mirror`: overrides `install.mirror`.
    pub mirror: Option<String>,
    /// The image stage runs where no member identity exists yet (an image build).
    pub identity_optional: bool,
}

pub struct Context {
    pub root: PathBuf,
    pub role: Role,
    pub site: Site,
    pub secrets_path: PathBuf,
    pub secrets: Option<Secrets>,
    pub os: OsRelease,
    pub os_release_path: PathBuf,
    pub profile: Profile,
    /// This host's member; `None` only in an image build, whose phases need no identity.
    pub node: Option<(Member, Via)>,
    /// Whether the member's address is on one of this host's interfaces.
    pub node_address_local: bool,
    pub runner: Box<dyn Runner>,
    pub mirror_override: Option<String>,
    pub profiles_dir: Option<PathBuf>,
    /// Planning only (`plan`, `--dry-run`): the engine turns what would stop a real run into
    /// a warning or a pending change; phases do not ask.
    pub dry_run: bool,
    /// Each daemon's configuration as rendered in this run ([`Context::rendered`]).
    rendered: std::cell::RefCell<std::collections::HashMap<crate::units::DaemonKind, String>>,
}

impl Context {
    /// Loads and validates every input, or fails with exit 2 before anything runs.
    pub fn load(opts: &Options, runner: Box<dyn Runner>) -> anyhow::Result<Context> {
        let root = if opts.root.as_os_str().is_empty() { PathBuf::from("/") } else { opts.root.clone() };
        // As the kernel names it (mountinfo, /proc): a relative or linked --root would match nothing.
        let root = std::fs::canonicalize(&root).unwrap_or(root);
        let under = |p: &str| root.join(p.trim_start_matches('/'));
        let site_path = opts.config.clone().unwrap_or_else(|| under(config::DEFAULT_SITE));
        let secrets_path = opts.secrets.clone().unwrap_or_else(|| under(config::DEFAULT_SECRETS));
        let profiles = profile::load_all(opts.profiles_dir.as_deref())?;

        // Site and secrets errors are reported together.
        let site = Site::load(&site_path);
        let secrets = if secrets_path.exists() { Some(Secrets::load(&secrets_path)) } else { None };
        let (site, secrets) = match (site, secrets.transpose()) {
            (Ok(site), Ok(secrets)) => (site, secrets),
            (Err(a), Err(b)) => return Err(merge(a, b)),
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };

        let (os, os_release_path) = OsRelease::read(&root)?;
        let profile = profile::detect(&os, &os_release_path, &profiles)?.clone();
        effective_mounts_apart(&site, &profile)?;

        let (hostname, local) = identity::local_facts()?;
        let node = match identity::resolve(&site, opts.node.as_deref(), &hostname, &local) {
            Ok((m, via)) => Some((m.clone(), via)),
            Err(_) if opts.identity_optional && opts.node.is_none() => None,
            Err(e) => return Err(e),
        };
        let role = match (&node, opts.role) {
            (Some((m, _)), Some(role)) if role != m.role => {
                return Err(bad_input(format!(
                    "--role {} was given, but member {} has role \"{}\" in {}: fix the member's role or the flag",
                    role.as_str(),
                    m.name,
                    m.role.as_str(),
                    site.path.display()
                )));
            }
            (_, Some(role)) => role,
            (Some((m, _)), None) => m.role,
            (None, None) => {
                return Err(bad_input("an image build has no member identity yet: give --role postgres|dcs"));
            }
        };
        Ok(Context {
            node_address_local: node.as_ref().is_some_and(|(m, _)| local.contains(&m.address)),
            root,
            role,
            site,
            secrets_path,
            secrets,
            os,
            os_release_path,
            profile,
            node,
            runner,
            mirror_override: opts.mirror.clone(),
            profiles_dir: opts.profiles_dir.clone(),
            dry_run: false,
            rendered: Default::default(),
        })
    }

    /// This host's member. Only image-stage phases run without one, and they never ask.
    pub fn node(&self) -> &Member {
        &self.node.as_ref().expect("internal error: a firstboot phase ran without a member identity").0
    }

    /// A path of the target host, as seen from here (under `--root`).
    pub fn host_path(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The mirror to use: `--mirror`, else `install.mirror`.
    pub fn mirror(&self) -> Option<&str> {
        self.mirror_override.as_deref().or(self.site.install.mirror.as_deref())
    }

    /// Whether systemd runs the target host (not so in a chroot during an image build).
    pub fn systemd_running(&self) -> bool {
        self.host_path(Path::new("/run/systemd/system")).is_dir()
    }

    /// A daemon's configuration, rendered once a run: the phase that writes it and the units
    /// phase that hashes it into the unit see the same text (etcd's depends on which peers
    /// answered; rendering again could turn `new` into `existing` between the two).
    pub fn rendered(
        &self,
        daemon: crate::units::DaemonKind,
        render: impl FnOnce() -> anyhow::Result<String>,
    ) -> anyhow::Result<String> {
        if let Some(text) = self.rendered.borrow().get(&daemon) {
            return Ok(text.clone());
        }
        let text = render()?;
        self.rendered.borrow_mut().insert(daemon, text.clone());
        Ok(text)
    }

    /// What [`Context::rendered`] made of a daemon's configuration so far in this run.
    pub fn rendered_already(&self, daemon: crate::units::DaemonKind) -> Option<String> {
        self.rendered.borrow().get(&daemon).cloned()
    }

    pub fn postgres_version(&self) -> u32 {
        self.site.cluster.postgres_version.unwrap_or(self.profile.postgres.default_version)
    }
}

/// Two configuration error lists as one, so the operator sees both files' problems at once.
fn merge(a: anyhow::Error, b: anyhow::Error) -> anyhow::Error {
    match (a.downcast::<config::Diagnostics>(), b.downcast::<config::Diagnostics>()) {
        (Ok(mut a), Ok(b)) => {
            a.0.extend(b.0);
            a.into()
        }
        (Ok(_), Err(b)) => b,
        (Err(a), _) => a,
    }
}

/// The data and WAL mount points, after the profile's defaults, must be apart: one inside the
/// other would hide a volume (the site file alone cannot show it when one mount is a default).
fn effective_mounts_apart(site: &Site, profile: &Profile) -> anyhow::Result<()> {
    let Some(d) = &site.disks else { return Ok(()) };
    let data = d.data.mount.clone().unwrap_or_else(|| profile.paths.data_mount.clone().into());
    let wal = d.wal.mount.clone().unwrap_or_else(|| profile.paths.wal_mount.clone().into());
    if config::kinds::nested(&data, &wal) {
        let key = if d.wal.mount.is_some() { "disks.wal.mount" } else { "disks.data.mount" };
        return Err(bad_input(format!(
            "{}: {key}: the data volume's mount point {} and the WAL volume's {} ({}) are the same or one is inside the other: give two separate directories",
            site.path.display(),
            data.display(),
            wal.display(),
            profile.name
        )));
    }
    Ok(())
}
