//! The phases of `hanode init`, in the order they run. Each arrives with the issue that
//! builds it; a phase that is not here does not appear in any plan.

pub mod artifacts;
pub mod boot_unit;
pub mod cluster;
pub mod disks;
pub mod packages;
pub mod preflight;
pub mod selinux;
pub mod tls;

use crate::config::Role;
use crate::engine::{Phase, Stage};
use crate::error::bad_input;

pub fn all() -> Vec<Box<dyn Phase>> {
    let mut phases: Vec<Box<dyn Phase>> = vec![
        Box::new(preflight::Preflight),
        Box::new(packages::Packages),
        Box::new(artifacts::Artifacts),
        Box::new(boot_unit::BootUnit),
        Box::new(disks::Disks),
        Box::new(selinux::Selinux),
        Box::new(tls::Tls),
    ];
    phases.extend(cluster::phases());
    phases
}

/// The phases to run for this role and stage, less the skipped ones; `only` picks one phase
/// (with preflight, so that its checks still run first).
pub fn select<'a>(
    all: &'a [Box<dyn Phase>],
    role: Role,
    stage: Stage,
    skip: &[String],
    only: Option<&str>,
) -> anyhow::Result<Vec<&'a dyn Phase>> {
    let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
    for name in skip.iter().map(String::as_str).chain(only) {
        if !names.contains(&name) {
            return Err(bad_input(format!("unknown phase `{name}`; the phases are: {}", names.join(", "))));
        }
    }
    Ok(all
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| p.roles().contains(&role))
        .filter(|p| stage == Stage::All || p.stage() == Stage::All || p.stage() == stage)
        .filter(|p| !skip.iter().any(|s| s == p.name()))
        .filter(|p| only.is_none_or(|o| p.name() == o || p.name() == preflight::NAME))
        .collect())
}
