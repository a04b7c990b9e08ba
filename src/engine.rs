//! The converge engine: phases made of steps; a step observes the host and returns the
//! changes that would bring it to the desired state. `init` applies them and observes again;
//! `plan` and `--dry-run` run the very same observations and stop before applying.

use anyhow::Context as _;

use crate::config::Role;
use crate::context::Context;
use crate::error::{Fail, Kind};
use crate::exec::Cmd;
use crate::files::{self, FileSpec};
use crate::ui::{self, Status};

/// What applying a change does. Data rather than code, so that a plan can be shown and
/// serialised exactly as it would be carried out.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    WriteFile(FileSpec),
    Run(Cmd),
    InstallArtifact(Box<crate::artifacts::Plan>),
    InstallVenv(Box<crate::venv::Plan>),
    /// `link` (a real path under the host root) -> `target` (a path on the host).
    Link {
        link: std::path::PathBuf,
        target: std::path::PathBuf,
    },
    /// A directory (real path) with this owner and mode, created if missing.
    Dir {
        path: std::path::PathBuf,
        #[serde(serialize_with = "files::octal")]
        mode: u32,
        owner: String,
        group: String,
    },
    /// A destructive command, run only if the device (and `others`) are still the disks that
    /// were observed, in the state that was observed.
    Guarded {
        cmd: Cmd,
        device: std::path::PathBuf,
        identity: crate::disks::Identity,
        expect: Expect,
        others: Vec<(std::path::PathBuf, crate::disks::Identity)>,
    },
    /// Start (or restart / reload) a unit and wait until it is healthy.
    Start(crate::units::Start),
    /// A call to etcd's auth or cluster API at `url`, on its v3 gateway or its v2 API, as root
    /// where etcd's authentication is in use.
    Etcd {
        url: String,
        api: crate::etcd_auth::Api,
        call: crate::etcd_auth::Call,
    },
    /// Settings of Patroni's dynamic configuration, in one PATCH through the REST API at `url`.
    DynamicConfig {
        url: String,
        settings: Vec<crate::dynamic_config::Setting>,
    },
    /// A call to Consul's ACL API at the local agent `url`, as the management token.
    Consul {
        url: String,
        call: crate::consul_acl::Call,
    },
    /// Planned against state an earlier change makes: shown in a dry run, never applied (a
    /// real run observes again after that change).
    Pending {
        waits_for: String,
    },
}

/// What a guarded command expects to find right before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// A whole disk with nothing on it.
    EmptyDisk,
    /// LVM physical volumes in no volume group.
    OrphanPv,
    /// A volume with no filesystem.
    NoFilesystem,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    pub phase: String,
    pub step: String,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    pub action: Action,
}

impl Change {
    pub fn new(summary: impl Into<String>, action: Action) -> Self {
        Change { phase: String::new(), step: String::new(), summary: summary.into(), diff: None, action }
    }

    /// A command to run, with the imperative summary the plan shows.
    pub fn run(summary: impl Into<String>, cmd: Cmd) -> Self {
        Change::new(summary, Action::Run(cmd))
    }

    /// The change that makes a file match `spec`, if it does not already.
    pub fn for_file(cx: &Context, spec: FileSpec) -> anyhow::Result<Option<Change>> {
        let diff = files::observe(&cx.host_path(&spec.path), &spec)?;
        Ok(diff.map(|d| Change { diff: d.diff, ..Change::new(d.summary, Action::WriteFile(spec)) }))
    }
}

impl Change {
    /// The change that makes `path` (on the target) a directory with this owner and mode, if
    /// it is not one. An owner that does not exist yet (its package comes in an earlier phase)
    /// counts as not matching. A symlink in its place is refused (exit 3), never followed.
    pub fn for_dir(
        cx: &Context,
        path: &std::path::Path,
        mode: u32,
        owner: &str,
        group: &str,
    ) -> anyhow::Result<Option<Change>> {
        use std::os::unix::fs::MetadataExt;
        let real = cx.host_path(path);
        let ids = files::lookup_ids(owner, group).ok();
        let ok = files::metadata_no_symlink(&real, true)?.is_some_and(|m| {
            m.is_dir()
                && m.mode() & 0o7777 == mode
                && ids.is_some_and(|(u, g)| m.uid() == u.as_raw() && m.gid() == g.as_raw())
        });
        Ok((!ok).then(|| {
            let summary = format!("directory {} {owner}:{group} {mode:04o}", path.display());
            Change::new(summary, Action::Dir { path: real, mode, owner: owner.into(), group: group.into() })
        }))
    }

    /// The change that makes `link` (a path on the target) a symlink to `target`, if it is not.
    /// Anything else in its place is refused (exit 3): hanode replaces only its own links.
    pub fn for_link(cx: &Context, link: &std::path::Path, target: &std::path::Path) -> anyhow::Result<Option<Change>> {
        let real = cx.host_path(link);
        match std::fs::symlink_metadata(&real) {
            Ok(m) if m.file_type().is_symlink() => {
                if std::fs::read_link(&real).with_context(|| format!("reading the link {}", real.display()))? == target
                {
                    return Ok(None);
                }
            }
            Ok(_) => {
                return Err(crate::error::refused(format!(
                    "{} exists and is not a link hanode made: another installation is there; move it aside (mv {} {}.orig) and run again",
                    link.display(),
                    link.display(),
                    link.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", real.display()))),
        }
        let summary = format!("link {} -> {}", link.display(), target.display());
        Ok(Some(Change::new(summary, Action::Link { link: real, target: target.to_path_buf() })))
    }
}

/// One unit of convergence.
pub trait Step {
    fn name(&self) -> String;
    /// Observes the host and returns what must change (nothing when converged). Never writes.
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>>;
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip)]
    pub kind: Kind,
    /// An error that a plan shows as a warning: what a real run needs but a plan can do
    /// without (root, the secrets file, a disk that is not there yet).
    #[serde(skip)]
    pub blocks_runs_only: bool,
}

impl Check {
    pub fn ok(name: &str, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            kind: Kind::Failed,
            blocks_runs_only: false,
        }
    }
    pub fn warn(name: &str, detail: impl Into<String>) -> Self {
        Check { status: Status::Warn, ..Check::ok(name, detail) }
    }
    pub fn error(name: &str, kind: Kind, detail: impl Into<String>) -> Self {
        Check { status: Status::Error, kind, ..Check::ok(name, detail) }
    }
    /// An error for `init`, a warning for a plan.
    pub fn blocking(name: &str, kind: Kind, detail: impl Into<String>) -> Self {
        Check { blocks_runs_only: true, ..Check::error(name, kind, detail) }
    }
}

/// Which `--stage` a phase belongs to: `image` needs no host identity, disks or running
/// systemd; `firstboot` does the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Image,
    Firstboot,
    All,
}

pub type Steps = anyhow::Result<Vec<Box<dyn Step>>>;

/// A phase of `init`, declared as a value: `init phase --help` and the README list them.
pub struct Phase {
    pub name: &'static str,
    /// One line: what the phase makes of this node.
    pub help: &'static str,
    /// `Stage::All` for phases that belong to both stages.
    pub stage: Stage,
    pub roles: &'static [Role],
    /// Whether the phase has anything to do on this node; its checks and steps are left out
    /// where it has not (no VIP, no vip-manager).
    pub run_if: fn(&Context) -> bool,
    /// Preflight checks this phase needs to pass before anything runs.
    pub checks: fn(&Context) -> Vec<Check>,
    pub steps: fn(&Context) -> Steps,
}

/// For [`Phase::run_if`]: every node of the phase's roles.
pub fn always(_: &Context) -> bool {
    true
}

/// For [`Phase::checks`]: none.
pub fn no_checks(_: &Context) -> Vec<Check> {
    Vec::new()
}

impl Phase {
    /// A phase of these roles and stage that runs on every node of them, without checks of its
    /// own; `with_checks` and `only_if` add them.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        stage: Stage,
        roles: &'static [Role],
        steps: fn(&Context) -> Steps,
    ) -> Phase {
        Phase { name, help, stage, roles, run_if: always, checks: no_checks, steps }
    }

    pub const fn with_checks(self, checks: fn(&Context) -> Vec<Check>) -> Phase {
        Phase { checks, ..self }
    }

    pub const fn only_if(self, run_if: fn(&Context) -> bool) -> Phase {
        Phase { run_if, ..self }
    }

    pub fn checks(&self, cx: &Context) -> Vec<Check> {
        if (self.run_if)(cx) { (self.checks)(cx) } else { Vec::new() }
    }
    pub fn steps(&self, cx: &Context) -> Steps {
        if (self.run_if)(cx) { (self.steps)(cx) } else { Ok(Vec::new()) }
    }
}

/// A step from a closure that observes and returns the changes.
struct FnStep<F>(String, F);

impl<F: Fn(&Context) -> anyhow::Result<Vec<Change>>> Step for FnStep<F> {
    fn name(&self) -> String {
        self.0.clone()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        (self.1)(cx)
    }
}

/// A step named `name` that observes with `f`.
pub fn step(name: &str, f: impl Fn(&Context) -> anyhow::Result<Vec<Change>> + 'static) -> Box<dyn Step> {
    Box::new(FnStep(name.to_string(), f))
}

/// What a run saw and did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Planned changes (dry-run) or applied ones.
    pub changes: Vec<Change>,
    pub applied: bool,
}

/// Runs the preflight checks (all of them, then fails with every error at once).
pub fn preflight(cx: &Context, phases: &[&Phase], report: &mut Report) -> anyhow::Result<()> {
    ui::section("preflight");
    let mut checks = crate::phases::preflight::base_checks(cx);
    for p in phases {
        checks.extend(p.checks(cx));
    }
    if cx.dry_run {
        for c in checks.iter_mut().filter(|c| c.blocks_runs_only && c.status == Status::Error) {
            c.status = Status::Warn;
        }
    }
    for c in &checks {
        ui::check(c.status, &c.name, &c.detail);
    }
    let errors: Vec<&Check> = checks.iter().filter(|c| c.status == Status::Error).collect();
    let result = match errors.iter().map(|c| c.kind).max() {
        None => Ok(()),
        Some(kind) => Err(Fail {
            kind,
            message: format!(
                "preflight found {} problem{}: {}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                errors.iter().map(|c| format!("[{}] {}", c.name, c.detail)).collect::<Vec<_>>().join("; ")
            ),
        }
        .into()),
    };
    report.checks = checks;
    result
}

/// Plans, and unless `dry_run` applies, every step of `phases` in order.
pub fn converge(cx: &Context, phases: &[&Phase], dry_run: bool, report: &mut Report) -> anyhow::Result<()> {
    report.applied = !dry_run;
    for phase in phases {
        let steps = match phase.steps(cx) {
            Err(e) if dry_run => match pending(&e, phase.name, &report.changes) {
                Some(why) => vec![step(phase.name, move |_| Ok(vec![why.clone()]))],
                None => return Err(e.context(format!("{} phase", phase.name))),
            },
            r => r.with_context(|| format!("{} phase", phase.name))?,
        };
        if steps.is_empty() {
            continue;
        }
        ui::section(phase.name);
        for step in steps {
            let name = step.name();
            let observe = || step.plan(cx).with_context(|| format!("observing {}/{name}", phase.name));
            let mut changes = match observe() {
                // A plan cannot observe what an earlier change makes: it says so instead of
                // failing; a run waits where waiting may help.
                Err(e) if dry_run => match pending(&e, &name, &report.changes) {
                    Some(c) => vec![c],
                    None => return Err(e),
                },
                Err(e) => match not_yet(&e).and_then(|n| n.wait) {
                    Some(wait) => observe_within(&name, wait, observe)?,
                    None => return Err(e),
                },
                Ok(c) => c,
            };
            for c in &mut changes {
                c.phase = phase.name.to_string();
                c.step = name.clone();
                ui::change(if dry_run { "would" } else { "-" }, &c.summary, c.diff.as_deref());
                if !dry_run {
                    apply(cx, &c.action).with_context(|| format!("{}/{name}: {}", phase.name, c.summary))?;
                    failpoint();
                }
            }
            if !dry_run && !changes.is_empty() {
                let left = observe()?;
                if !left.is_empty() {
                    let what: Vec<&str> = left.iter().map(|c| c.summary.as_str()).collect();
                    anyhow::bail!(
                        "{}/{name} did not converge: after applying, it still plans: {}",
                        phase.name,
                        what.join("; ")
                    );
                }
            }
            report.changes.extend(changes);
        }
    }
    Ok(())
}

fn not_yet(e: &anyhow::Error) -> Option<&crate::error::NotYet> {
    e.chain().find_map(|c| c.downcast_ref::<crate::error::NotYet>())
}

/// What a plan shows for an observation that failed, if it is one a plan may not make yet:
/// [`crate::error::NotYet`], or a program that the changes planned before it install.
fn pending(e: &anyhow::Error, step: &str, planned: &[Change]) -> Option<Change> {
    if let Some(n) = not_yet(e) {
        return Some(Change::new(
            format!("{} (cannot be planned yet: {})", n.what, n.why()),
            Action::Pending { waits_for: n.what.clone() },
        ));
    }
    let program = missing_program(e).filter(|_| !planned.is_empty())?;
    Some(Change::new(
        format!("observe {step} (cannot be planned yet: needs `{program}`, which the changes above install)"),
        Action::Pending { waits_for: program.to_string() },
    ))
}

/// Observes again until the observation succeeds or `wait` has passed (a daemon that is
/// starting), saying every 15 s what it waits for.
fn observe_within(
    name: &str,
    wait: std::time::Duration,
    observe: impl Fn() -> anyhow::Result<Vec<Change>>,
) -> anyhow::Result<Vec<Change>> {
    use std::time::{Duration, Instant};
    let begun = Instant::now();
    let mut last_note = Instant::now();
    loop {
        match observe() {
            Ok(c) => return Ok(c),
            Err(e) if not_yet(&e).is_some_and(|n| n.wait.is_some()) && begun.elapsed() < wait => {
                if last_note.elapsed() >= Duration::from_secs(15) {
                    last_note = Instant::now();
                    ui::info(&format!(
                        "{name}: waiting ({:.0} s of {} s): {e:#}",
                        begun.elapsed().as_secs_f32(),
                        wait.as_secs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) if not_yet(&e).is_some_and(|n| n.wait.is_some()) => {
                return Err(e.context(format!("{name}: still not ready after {} s", wait.as_secs())));
            }
            Err(e) => return Err(e),
        }
    }
}

fn missing_program(e: &anyhow::Error) -> Option<&str> {
    e.chain().find_map(|c| c.downcast_ref::<crate::error::MissingProgram>()).map(|m| m.program.as_str())
}

fn apply(cx: &Context, action: &Action) -> anyhow::Result<()> {
    match action {
        Action::WriteFile(spec) => files::apply(&cx.host_path(&spec.path), spec),
        Action::Run(cmd) => cx.runner.run(cmd).map(|_| ()),
        Action::InstallArtifact(plan) => crate::artifacts::apply(plan),
        Action::InstallVenv(plan) => crate::venv::apply(cx, plan),
        Action::Link { link, target } => files::link(link, target),
        Action::Dir { path, mode, owner, group } => files::ensure_dir(path, *mode, owner, group),
        Action::Guarded { cmd, device, identity, expect, others } => {
            crate::disks::recheck(cx, device, identity, *expect, others)?;
            cx.runner.run(cmd).map(|_| ())
        }
        Action::Start(s) => crate::units::start(cx, s),
        Action::Etcd { url, api, call } => {
            let root = crate::etcd_auth::root_if_enabled(cx)?;
            crate::etcd_auth::Gateway { http: crate::units::http(), url: url.clone() }.apply(root.as_ref(), *api, call)
        }
        Action::DynamicConfig { url, settings } => crate::dynamic_config::apply(cx, url, settings),
        Action::Consul { url, call } => {
            let management = crate::consul_acl::management(cx)?;
            crate::consul_acl::Agent { http: crate::units::http(), url: url.clone() }.apply(&management, call)
        }
        Action::Pending { waits_for: what } => {
            anyhow::bail!("internal error: a change that waits for {what} was applied before it")
        }
    }
}

/// Test-only: `HANODE_KILL_AFTER=N` kills hanode with SIGKILL right after the N-th applied
/// change, to prove that a re-run converges from any point.
fn failpoint() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static APPLIED: AtomicUsize = AtomicUsize::new(0);
    let n = APPLIED.fetch_add(1, Ordering::SeqCst) + 1;
    if std::env::var("HANODE_KILL_AFTER").ok().and_then(|v| v.parse::<usize>().ok()) == Some(n) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
    }
}
