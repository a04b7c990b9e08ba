//! The `patroni` phase: patroni.yml from the site and secrets files, checked by
//! `patroni --validate-config`; its configuration directory, data directory parent and key copy.

use std::path::Path;

use super::{dir, file, key_copy_for};
use crate::config::Role;
use crate::context::Context;
use crate::engine::{Change, Check, Phase, Stage, Steps, step};
use crate::error::{Kind, not_yet};
use crate::exec::Cmd;
use crate::files::FileSpec;
use crate::patroni;
use crate::units::DaemonKind;

pub const PHASE: Phase = Phase::new(
    "patroni",
    "patroni.yml from the site and secrets files, checked by patroni --validate-config",
    Stage::Firstboot,
    &[Role::Postgres],
    steps,
)
.with_checks(checks);

fn checks(cx: &Context) -> Vec<Check> {
    let mut checks: Vec<Check> = parameters_check(cx).into_iter().collect();
    if cx.secrets.is_none() {
        checks.push(Check::blocking(
            "secrets",
            Kind::BadInput,
            format!(
                "Patroni needs passwords from {}: write it with `hanode secrets generate` (mode 0600)",
                cx.secrets_path.display()
            ),
        ));
    }
    checks
}

/// `[postgresql] parameters` that this node's PostgreSQL does not have: a typo, refused
/// before anything changes (a preflight check where PostgreSQL is installed already; on a
/// fresh node, once the packages phase has installed it, before patroni.yml is written). An
/// extension's parameter (with a dot) it cannot know.
fn unknown_parameters(cx: &Context) -> Option<String> {
    let known = crate::dynamic_config::known_parameters(cx)?;
    let unknown: Vec<&str> = cx
        .site
        .postgresql
        .parameters
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !n.contains('.') && !known.contains_key(*n))
        .collect();
    (!unknown.is_empty()).then(|| {
        format!(
            "[postgresql] parameters in {}: PostgreSQL {} has no parameter {} (`postgres --describe-config` lists those it has)",
            cx.site.path.display(),
            cx.postgres_version(),
            unknown.join(", ")
        )
    })
}

fn parameters_check(cx: &Context) -> Option<Check> {
    unknown_parameters(cx).map(|why| Check::error("postgresql parameters", Kind::BadInput, why))
}

fn steps(_: &Context) -> Steps {
    Ok(vec![
        step("configuration directory", |cx| {
            dir(cx, Path::new("/etc/patroni"), 0o750, "root", &cx.profile.postgres.group)
        }),
        step("data directory parent", |cx| {
            let pg = &cx.profile.postgres;
            match (&cx.site.disks, crate::node::postgres_dirs(cx).data.parent()) {
                (None, Some(parent)) => dir(cx, parent, 0o750, &pg.user, &pg.group),
                _ => Ok(Vec::new()),
            }
        }),
        key_copy_for(DaemonKind::Patroni, |cx| (cx.profile.postgres.user.clone(), cx.profile.postgres.group.clone())),
        step("patroni.yml", patroni_yml),
    ])
}

fn patroni_yml(cx: &Context) -> anyhow::Result<Vec<Change>> {
    if let Some(why) = unknown_parameters(cx) {
        return Err(crate::error::bad_input(why));
    }
    let text = patroni::config_text(cx).map_err(|e| not_yet("write patroni.yml", e))?;
    let pg = &cx.profile.postgres;
    let changes = file(cx, FileSpec::new(patroni::CONFIG, text.clone(), 0o600).owned_by(&pg.user, &pg.group).secret())?;
    if !changes.is_empty() {
        validate(cx, &text)?;
    }
    Ok(changes)
}

/// Where hanode keeps what only it may read while it runs (on the host: tmpfs, gone at boot).
const PRIVATE_DIR: &str = "/run/hanode";

/// `patroni --validate-config` on the rendered file, where the installed Patroni has it.
fn validate(cx: &Context, text: &str) -> anyhow::Result<()> {
    let bin = patroni::program(cx);
    if !cx.host_path(&bin).exists() {
        return Ok(());
    }
    // The copy holds passwords: never in /tmp, never left behind.
    let dir = crate::files::private_dir(&cx.host_path(Path::new(PRIVATE_DIR)), "patroni")?;
    let copy = dir.path().join("patroni.yml");
    crate::files::write_new(&copy, text.as_bytes(), 0o600)?;
    let inside = Path::new(PRIVATE_DIR).join(dir.path().file_name().unwrap_or_default()).join("patroni.yml");
    let out = cx.runner.output(
        &Cmd::new("validating patroni.yml", bin.display().to_string())
            .args(["--validate-config", &inside.display().to_string()]),
    )?;
    // Patroni also checks that the DCS answers (on a first run it starts later, in the units
    // phase) and that its ports are free: on a running node they are this Patroni's and its
    // PostgreSQL's own (a clash with another program shows when Patroni starts: the units
    // phase waits for it and names it).
    let problems: Vec<&str> = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .filter(|l| !l.trim().is_empty() && !l.contains("is not reachable") && !l.contains("is already in use"))
        .collect();
    if !out.success() && !problems.is_empty() {
        anyhow::bail!("patroni --validate-config rejects the rendered patroni.yml:\n    {}", problems.join("\n    "));
    }
    Ok(())
}
