//! Preflight: what must hold before anything changes. Every check runs, then all errors are
//! reported together.

use crate::config::Role;
use crate::context::Context;
use crate::engine::{Check, Phase, Stage, Steps};
use crate::error::Kind;
use crate::identity::Via;

pub const NAME: &str = "preflight";

pub const PHASE: Phase = Phase::new(
    NAME,
    "checks root, OS, architecture, node identity and inputs; changes nothing",
    Stage::All,
    Role::ALL,
    steps,
);

fn steps(_cx: &Context) -> Steps {
    Ok(Vec::new())
}

/// The checks every run makes, whatever the phases.
pub fn base_checks(cx: &Context) -> Vec<Check> {
    let mut checks = Vec::new();
    let euid = nix::unistd::Uid::effective();
    checks.push(if euid.is_root() {
        Check::ok("root", "running as root")
    } else {
        Check::blocking(
            "root",
            Kind::Failed,
            format!(
                "running as uid {euid}: hanode changes disks, packages and services; run it as root (sudo hanode ...); a plan may miss what only root can read"
            ),
        )
    });
    checks.push(Check::ok(
        "os",
        format!(
            "{} (ID={} VERSION_ID={} from {}): profile {}",
            cx.os.pretty_name,
            cx.os.id,
            cx.os.version_id,
            cx.os_release_path.display(),
            cx.profile.id
        ),
    ));
    let arch = std::env::consts::ARCH;
    checks.push(match arch {
        "x86_64" | "aarch64" => Check::ok("arch", arch),
        other => Check::error(
            "arch",
            Kind::BadInput,
            format!("{other} is not supported: hanode installs amd64 and arm64 builds"),
        ),
    });
    checks.push(match &cx.node {
        None => Check::ok("identity", "none yet (image stage): the member is found at first boot"),
        Some((m, via)) => {
            let via = match via {
                Via::Flag => "from --node",
                Via::Hostname => "by hostname",
                Via::Address => "by local address",
            };
            let node = format!(
                "member {} ({}, role {}) of cluster {}, {via}",
                m.name,
                m.address,
                m.role.as_str(),
                cx.site.cluster.name
            );
            if cx.node_address_local {
                Check::ok("identity", node)
            } else {
                Check::warn(
                    "identity",
                    format!(
                        "{node}; its address {} is on no local interface, so peers will not reach it here",
                        m.address
                    ),
                )
            }
        }
    });
    checks.push(Check::ok("config", format!("{} is valid", cx.site.path.display())));
    if euid.is_root() {
        checks.push(install_dirs_check(cx));
    }
    checks.push(match &cx.secrets {
        Some(s) => Check::ok("secrets", format!("{} is valid (mode 0600 or stricter)", s.path.display())),
        None => Check::ok("secrets", format!("{} is absent; no selected phase needs it", cx.secrets_path.display())),
    });
    if cx.role == Role::Postgres && !cx.site.postgresql.users.is_empty() && cx.secrets.is_some() {
        checks.push(match crate::roles::passwords(cx) {
            Ok(p) => Check::ok("users", format!("passwords for {} application role(s) in the secrets file", p.len())),
            Err(e) => Check::error("users", Kind::BadInput, e.to_string()),
        });
    }
    checks
}

/// hanode's own directories (`install.prefix`, `bin_dir`, `cache_dir`) hold what root runs and
/// unpacks: every part of their paths that exists must be root's and writable by root alone
/// (a directory anyone may write to, such as /tmp, would let a user swap an archive between
/// its checksum and its unpacking, or a program root runs).
fn install_dirs_check(cx: &Context) -> Check {
    use std::os::unix::fs::MetadataExt;
    let i = &cx.site.install;
    let mut problems = Vec::new();
    for (key, dir) in
        [("install.prefix", &i.prefix), ("install.bin_dir", &i.bin_dir), ("install.cache_dir", &i.cache_dir)]
    {
        let mut path = std::path::PathBuf::from("/");
        for part in dir.components().skip(1) {
            path.push(part);
            let Ok(meta) = std::fs::symlink_metadata(cx.host_path(&path)) else { break };
            let writable_by_others = meta.mode() & 0o022 != 0 && !meta.file_type().is_symlink();
            if meta.uid() != 0 || writable_by_others {
                problems.push(format!(
                    "{key} {}: {} is owned by uid {} with mode {:04o}; make it root's and writable by root alone, or choose another directory",
                    dir.display(),
                    path.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                ));
                break;
            }
        }
    }
    if problems.is_empty() {
        Check::ok("install dirs", "hanode's directories are root's alone")
    } else {
        Check::error("install dirs", Kind::Refused, problems.join("; "))
    }
}
