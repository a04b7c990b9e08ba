//! The `packages` phase: PostgreSQL and the OS packages the other phases need, from the
//! distribution's repositories or PGDG (Debian).

use crate::config::{PatroniInstall, Repository, Role};
use crate::context::Context;
use crate::engine::{Change, Check, Phase, Stage, Step, Steps};
use crate::error::Kind;
use crate::files::FileSpec;
use crate::profile::{PackageManager, Profile};
use crate::{packages, venv};

pub struct Packages;

/// Debian's postgresql-common reads this before creating a cluster on install: Patroni
/// creates and owns the cluster, so no `main` cluster may appear beside it.
pub const CREATECLUSTER_CONF: &str = "/etc/postgresql-common/createcluster.d/hanode.conf";
/// The key postgresql-common ships for apt.postgresql.org.
const PGDG_KEY: &str = "/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc";

pub const PHASE: Phase =
    Phase::new("packages", "installs PostgreSQL and OS packages with apt or dnf", Stage::Image, Role::ALL, steps)
        .with_checks(checks);

fn checks(cx: &Context) -> Vec<Check> {
    let mut checks = Vec::new();
    let pm = cx.profile.package_manager;
    let repo = cx.site.packages.repository;
    if repo == Repository::Pgdg && pm == PackageManager::Dnf {
        checks.push(Check::error("repository", Kind::BadInput, format!("packages.repository = \"pgdg\" is supported on Debian only; on {} the distribution's repositories ship postgresqlNN packages: remove the key", cx.profile.name)));
    }
    let v = cx.postgres_version();
    if cx.role == Role::Postgres && repo == Repository::Distro && !cx.profile.postgres.distro_versions.contains(&v) {
        checks.push(Check::warn("postgres version", format!("{}'s repositories are not known to ship PostgreSQL {v} (they ship {:?}); set cluster.postgres_version or packages.repository = \"pgdg\"", cx.profile.name, cx.profile.postgres.distro_versions)));
    }
    let tool = match pm {
        PackageManager::Apt => "apt-get",
        PackageManager::Dnf => "dnf",
    };
    checks.push(Check::ok("package manager", format!("{tool} ({})", repo_name(repo))));
    if cx.role == Role::Postgres {
        checks.push(match cx.site.patroni.install {
            PatroniInstall::Package if cx.profile.packages.patroni.is_empty() => Check::error(
                "patroni",
                Kind::BadInput,
                format!("{} has no Patroni package hanode knows: set patroni.install = \"pip\"", cx.profile.name),
            ),
            PatroniInstall::Package => {
                Check::ok("patroni", format!("the distribution's package ({})", cx.profile.packages.patroni.join(", ")))
            }
            PatroniInstall::Pip => match venv::Requirements::for_dcs(cx.site.dcs.kind, cx.profiles_dir.as_deref()) {
                Ok(r) => Check::ok(
                    "patroni",
                    format!("Patroni {} in a venv from {} (sha256 {}…)", r.patroni_version, r.source, &r.sha256[..12]),
                ),
                Err(e) => Check::error("patroni", Kind::BadInput, format!("{e:#}")),
            },
        });
    }
    checks
}

fn steps(cx: &Context) -> Steps {
    let mut steps: Vec<Box<dyn Step>> = Vec::new();
    let apt = cx.profile.package_manager == PackageManager::Apt;
    if apt && cx.role == Role::Postgres {
        steps.push(Box::new(NoMainCluster));
    }
    if apt && cx.site.packages.repository == Repository::Pgdg {
        steps.push(Box::new(Pgdg));
    }
    steps.push(Box::new(Install));
    if apt && cx.role == Role::Postgres {
        steps.push(Box::new(DisableMainCluster));
    }
    if cx.role == Role::Postgres && cx.site.patroni.install == PatroniInstall::Pip {
        steps.push(Box::new(PatroniVenv));
    }
    Ok(steps)
}

fn repo_name(r: Repository) -> &'static str {
    match r {
        Repository::Distro => "distribution repositories",
        Repository::Pgdg => "PGDG",
    }
}

/// The packages this node needs, in a stable order.
pub fn wanted(cx: &Context) -> Vec<String> {
    let mut names = Vec::new();
    if cx.role == Role::Postgres {
        let v = cx.postgres_version();
        names.extend(cx.profile.postgres.packages.iter().map(|p| Profile::expand(p, v)));
        // An image build (no member yet) cannot know the disks of the hosts made from it.
        if cx.site.disks.is_some() || cx.node.is_none() {
            names.extend(cx.profile.packages.lvm.iter().cloned());
            names.extend(cx.profile.packages.filesystems.iter().cloned());
        }
        let pkgs = &cx.profile.packages;
        match cx.site.patroni.install {
            PatroniInstall::Pip => names.extend(pkgs.python.iter().cloned()),
            PatroniInstall::Package => {
                names.extend(pkgs.patroni.iter().cloned());
                names.extend(match cx.site.dcs.kind {
                    crate::config::DcsKind::Etcd => pkgs.patroni_etcd.iter().cloned(),
                    crate::config::DcsKind::Consul => pkgs.patroni_consul.iter().cloned(),
                });
            }
        }
    }
    names.extend(cx.site.packages.extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

struct NoMainCluster;

impl Step for NoMainCluster {
    fn name(&self) -> String {
        "no main cluster".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let text =
            "# Written by hanode: Patroni creates and owns the PostgreSQL cluster.\ncreate_main_cluster = false\n";
        Ok(Change::for_file(cx, FileSpec::new(CREATECLUSTER_CONF, text, 0o644))?.into_iter().collect())
    }
}

struct Pgdg;

impl Step for Pgdg {
    fn name(&self) -> String {
        "pgdg repository".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let codename = cx.profile.codename.as_deref().unwrap_or("stable");
        let mut changes = Vec::new();
        // postgresql-common ships PGDG's signing key.
        changes.extend(missing_install(cx, &["postgresql-common".into(), "ca-certificates".into()])?);
        let line =
            format!("deb [signed-by={PGDG_KEY}] https://apt.postgresql.org/pub/repos/apt {codename}-pgdg main\n");
        changes.extend(Change::for_file(cx, FileSpec::new("/etc/apt/sources.list.d/pgdg.list", line, 0o644))?);
        Ok(changes)
    }
}

fn missing_install(cx: &Context, names: &[String]) -> anyhow::Result<Vec<Change>> {
    let pm = cx.profile.package_manager;
    let missing = packages::missing(cx.runner.as_ref(), pm, names)?;
    Ok(if missing.is_empty() { Vec::new() } else { packages::install_changes(pm, &missing) })
}

struct Install;

impl Step for Install {
    fn name(&self) -> String {
        "install".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        missing_install(cx, &wanted(cx))
    }
}

/// A `main` cluster made before hanode ran (an image that already had PostgreSQL) is stopped
/// and kept from starting, never dropped: it may hold someone's data.
struct DisableMainCluster;

impl Step for DisableMainCluster {
    fn name(&self) -> String {
        "disable main cluster".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let v = cx.postgres_version();
        let path = format!("/etc/postgresql/{v}/main/start.conf");
        let real = cx.host_path(std::path::Path::new(&path));
        let current = match std::fs::read_to_string(&real) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", real.display()))),
        };
        if current.lines().any(|l| l.trim() == "disabled") {
            return Ok(Vec::new());
        }
        let pg = &cx.profile.postgres;
        let spec = FileSpec::new(&path, "# Set by hanode: Patroni runs this node's PostgreSQL.\ndisabled\n", 0o644)
            .owned_by(&pg.user, &pg.group);
        let mut changes: Vec<Change> = Change::for_file(cx, spec)?.into_iter().collect();
        // In an image build (a chroot) nothing runs: start.conf alone keeps it down at boot.
        if cx.systemd_running() {
            let stop = crate::exec::Cmd::new(format!("stopping Debian's main cluster {v}/main"), "systemctl")
                .args(["stop", &format!("postgresql@{v}-main")]);
            changes.push(Change::run(format!("systemctl stop postgresql@{v}-main"), stop));
        }
        Ok(changes)
    }
}

/// Patroni in its own venv, and `patroni` / `patronictl` linked into the bin directory.
struct PatroniVenv;

impl Step for PatroniVenv {
    fn name(&self) -> String {
        "patroni venv".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let req = venv::Requirements::for_dcs(cx.site.dcs.kind, cx.profiles_dir.as_deref())?;
        let dir = venv::venv_dir(cx, &req);
        let mut changes = Vec::new();
        if !venv::is_installed(cx, &dir, &req)? {
            let mut summary = format!(
                "create the venv {} with Patroni {} from hash-pinned PyPI files ({})",
                dir.display(),
                req.patroni_version,
                req.source
            );
            if let Some(host) = cx.site.install.pip_index.as_deref().and_then(venv::insecure_host) {
                summary += &format!(
                    "; the plain-http index {host} is passed to pip as trusted: each file is still checked against its pinned SHA-256"
                );
            }
            let plan = venv::Plan { dir: dir.clone(), requirements: req, index_url: cx.site.install.pip_index.clone() };
            changes.push(Change::new(summary, crate::engine::Action::InstallVenv(Box::new(plan))));
        }
        for bin in ["patroni", "patronictl"] {
            changes.extend(Change::for_link(cx, &cx.site.install.bin_dir.join(bin), &dir.join("bin").join(bin))?);
        }
        Ok(changes)
    }
}
