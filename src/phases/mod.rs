//! The phases of `hanode init`, in the order they run. Each is a value ([`Phase`]) declared
//! in its own module; a phase that is not here does not appear in any plan. The helpers below
//! are the steps several phases share.

pub mod artifacts;
pub mod boot_unit;
pub mod dcs;
pub mod disks;
pub mod packages;
pub mod patroni;
pub mod preflight;
pub mod selinux;
pub mod tls;
pub mod units;
pub mod vip;

use std::path::Path;

use crate::config::Role;
use crate::config::kinds::name_of;
use crate::context::Context;
use crate::engine::{Change, Phase, Stage, Step, step};
use crate::error::{bad_input, not_yet};
use crate::exec::Cmd;
use crate::files::FileSpec;
use crate::tls::Fit;
use crate::units::DaemonKind;

pub fn all() -> Vec<&'static Phase> {
    vec![
        &preflight::PHASE,
        &packages::PHASE,
        &artifacts::PHASE,
        &boot_unit::PHASE,
        &disks::PHASE,
        &selinux::PHASE,
        &tls::PHASE,
        &dcs::PHASE,
        &patroni::PHASE,
        &vip::PHASE,
        &units::PHASE,
    ]
}

/// The phases to run for this role and stage, less the skipped ones; `only` picks one phase
/// (with preflight, so that its checks still run first).
pub fn select(role: Role, stage: Stage, skip: &[String], only: Option<&str>) -> anyhow::Result<Vec<&'static Phase>> {
    let all = all();
    let names: Vec<&str> = all.iter().map(|p| p.name).collect();
    for name in skip.iter().map(String::as_str).chain(only) {
        if !names.contains(&name) {
            return Err(bad_input(format!("unknown phase `{name}`; the phases are: {}", names.join(", "))));
        }
    }
    let fits =
        |p: &Phase| p.roles.contains(&role) && (stage == Stage::All || p.stage == Stage::All || p.stage == stage);
    // `init phase NAME` for a phase this node does not run would do nothing and say "converged".
    if let Some(p) = only.and_then(|o| all.iter().find(|p| p.name == o)).filter(|p| !fits(p)) {
        let roles: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
        return Err(bad_input(format!(
            "the {} phase does not run for role {} at stage {}: it runs for {} at stage {}",
            p.name,
            role.as_str(),
            name_of(&stage),
            roles.join(" and "),
            name_of(&p.stage)
        )));
    }
    Ok(all
        .into_iter()
        .filter(|p| fits(p))
        .filter(|p| !skip.iter().any(|s| s == p.name))
        .filter(|p| only.is_none_or(|o| p.name == o || p.name == preflight::NAME))
        .collect())
}

/// The phases with their help, for `init phase --help`.
pub fn help() -> String {
    let all = all();
    let width = all.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let lines: Vec<String> = all
        .iter()
        .map(|p| {
            let stage = match p.stage {
                Stage::All => "both stages".to_string(),
                other => name_of(&other),
            };
            let roles: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
            format!("  {:width$}  {} [{stage}; {}]", p.name, p.help, roles.join(", "))
        })
        .collect();
    format!("Phases, in the order they run:\n{}", lines.join("\n"))
}

/// The change that makes a file match `spec`, as a step's list.
pub fn file(cx: &Context, spec: FileSpec) -> anyhow::Result<Vec<Change>> {
    Ok(Change::for_file(cx, spec)?.into_iter().collect())
}

/// The change that makes `path` a directory with this owner and mode, as a step's list.
pub fn dir(cx: &Context, path: &Path, mode: u32, owner: &str, group: &str) -> anyhow::Result<Vec<Change>> {
    Ok(Change::for_dir(cx, path, mode, owner, group)?.into_iter().collect())
}

/// A system user for a daemon, created if missing.
pub fn system_user(name: &'static str, home: &'static str) -> Box<dyn Step> {
    step(&format!("user {name}"), move |_cx| {
        if nix::unistd::User::from_name(name)?.is_some() {
            return Ok(Vec::new());
        }
        let cmd = Cmd::new(format!("creating the system user {name}"), "useradd").args([
            "--system",
            "--user-group",
            "--home-dir",
            home,
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ]);
        Ok(vec![Change::run(format!("useradd --system {name}"), cmd)])
    })
}

/// A daemon's own copy of the node's certificate and key, owned by its user: a step of the
/// daemon's phase, after its user exists (the tls phase issues the node's).
pub fn key_copy(daemon: DaemonKind, owner: &'static str) -> Box<dyn Step> {
    key_copy_for(daemon, move |_| (owner.to_string(), owner.to_string()))
}

/// [`key_copy`] for an owner read from the node (PostgreSQL's user differs by OS).
pub fn key_copy_for(daemon: DaemonKind, owner: impl Fn(&Context) -> (String, String) + 'static) -> Box<dyn Step> {
    step(&format!("{}'s TLS certificate and key", daemon.program()), move |cx| {
        if !cx.site.tls.enabled {
            return Ok(Vec::new());
        }
        let (owner, group) = owner(cx);
        let (cert_path, key_path) = (crate::tls::cert_path(daemon), crate::tls::key_path(daemon));
        let what = format!(
            "files {} and {} ({owner}:{group} 0600), copies of the node's certificate and key",
            cert_path.display(),
            key_path.display()
        );
        match crate::tls::node_fit(cx).map(|(fit, ..)| fit) {
            Ok(Fit::Fits { .. }) => {
                let read = |p: &str| std::fs::read_to_string(cx.host_path(Path::new(p)));
                // The key first: the certificate that goes with it follows at once.
                let mut changes = file(
                    cx,
                    FileSpec::new(&key_path, read(crate::tls::KEY)?, 0o600).owned_by(&owner, &group).secret(),
                )?;
                changes.extend(file(cx, FileSpec::new(&cert_path, read(crate::tls::CERT)?, 0o644))?);
                Ok(changes)
            }
            // In a plan the tls phase has not issued it yet; a run gets here only if that phase
            // was skipped.
            Ok(Fit::Reissue(why)) => Err(not_yet(
                what,
                bad_input(format!(
                    "{} cannot be written: this node's certificate does not fit ({why}); run the tls phase (`hanode init phase tls`)",
                    key_path.display()
                )),
            )),
            Err(e) => Err(not_yet(what, e)),
        }
    })
}
