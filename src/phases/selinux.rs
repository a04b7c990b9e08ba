//! The `selinux` phase: where a policy is installed, the tools, hanode's file-context rules and
//! port labels in the policy store (so a full relabel keeps them), and `restorecon` on what
//! exists. Runs in both stages: an image gets its rules at build time, a host its labels.

use crate::config::Role;
use crate::context::Context;
use crate::engine::{Change, Check, Phase, Stage, Step, Steps};
use crate::error::not_yet;
use crate::exec::Cmd;
use crate::selinux::{self, Mode};

pub struct Selinux;

fn applies(cx: &Context) -> bool {
    selinux::mode(cx) != Mode::Disabled || selinux::policy(cx).is_some()
}

pub const PHASE: Phase = Phase::new(
    "selinux",
    "file contexts and port labels for hanode's files and ports; never switches enforcing off",
    Stage::All,
    Role::ALL,
    steps,
)
.with_checks(checks);

fn checks(cx: &Context) -> Vec<Check> {
    let mode = selinux::mode(cx);
    let policy = selinux::policy(cx);
    let state = format!("{} (policy {})", mode.as_str(), policy.as_deref().unwrap_or("none configured"));
    vec![match (mode, &policy) {
        (Mode::Disabled, None) => Check::ok("selinux", format!("{state}: nothing to label")),
        (Mode::Disabled, Some(_)) => {
            Check::ok("selinux", format!("{state}: rules go into the policy store; labels follow at its relabel"))
        }
        (Mode::Permissive, _) => Check::warn(
            "selinux",
            format!("{state}: hanode labels as for enforcing; switching to enforcing is the operator's call"),
        ),
        (Mode::Enforcing, _) => Check::ok("selinux", state),
    }]
}

fn steps(cx: &Context) -> Steps {
    if !applies(cx) {
        return Ok(Vec::new());
    }
    Ok(vec![Box::new(Tools), Box::new(FileContexts), Box::new(Ports), Box::new(Labels)])
}

/// `semanage` and `restorecon`, from the profile's packages.
struct Tools;

impl Step for Tools {
    fn name(&self) -> String {
        "tools".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let pm = cx.profile.package_manager;
        let missing = crate::packages::missing(cx.runner.as_ref(), pm, &cx.profile.packages.selinux_tools)?;
        Ok(if missing.is_empty() { Vec::new() } else { crate::packages::install_changes(pm, &missing) })
    }
}

/// The policy store is read with semanage, which the tools step installs: until then a plan
/// shows what waits for it (under `--root` chroot(8) would only say 127).
fn tools_installed(cx: &Context, what: &str) -> anyhow::Result<()> {
    let installed = ["/usr/sbin/semanage", "/sbin/semanage", "/usr/bin/semanage", "/bin/semanage"]
        .iter()
        .any(|p| cx.host_path(std::path::Path::new(p)).exists());
    if installed {
        return Ok(());
    }
    Err(not_yet(what, anyhow::anyhow!("the SELinux tools (semanage) are not installed yet")))
}

struct FileContexts;

impl Step for FileContexts {
    fn name(&self) -> String {
        "file contexts".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        tools_installed(cx, "file-context rules")?;
        let local = selinux::local_fcontexts(cx)?;
        let mut changes = Vec::new();
        for rule in selinux::file_rules(cx) {
            let flag = match local.iter().find(|(spec, _)| *spec == rule.spec) {
                Some((_, t)) if t == rule.setype => continue,
                Some(_) => "-m",
                None => "-a",
            };
            let cmd = crate::selinux::semanage(
                &format!("labelling {} as {}", rule.spec, rule.setype),
                &["fcontext", flag, "-t", rule.setype, &rule.spec],
            );
            changes.push(Change::run(
                format!("semanage fcontext {flag} -t {} '{}' — {}", rule.setype, rule.spec, rule.why),
                cmd,
            ));
        }
        Ok(changes)
    }
}

struct Ports;

impl Step for Ports {
    fn name(&self) -> String {
        "ports".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let rules = selinux::port_rules(cx);
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        tools_installed(cx, "port labels")?;
        let mut changes = Vec::new();
        for (port, setype, why) in rules {
            let flag = match selinux::tcp_port_type(cx, port)? {
                Some((t, _)) if t == setype => continue,
                Some((_, true)) => "-m",
                _ => "-a",
            };
            let p = port.to_string();
            let cmd = crate::selinux::semanage(
                &format!("labelling TCP port {port} as {setype}"),
                &["port", flag, "-t", setype, "-p", "tcp", &p],
            );
            changes.push(Change::run(format!("semanage port {flag} -t {setype} -p tcp {port} — {why}"), cmd));
        }
        Ok(changes)
    }
}

/// `restorecon` where the labels on disk differ from the rules; not while SELinux is off (an
/// image build), where the policy's relabel of the image does it.
struct Labels;

impl Step for Labels {
    fn name(&self) -> String {
        "labels".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        if selinux::mode(cx) == Mode::Disabled {
            return Ok(Vec::new());
        }
        tools_installed(cx, "relabel what the policy labels otherwise")?;
        let mut changes = Vec::new();
        for rule in selinux::file_rules(cx) {
            if !cx.host_path(&rule.root).exists() {
                continue;
            }
            let root = rule.root.display().to_string();
            let check = Cmd::new(format!("comparing the labels under {root} with the policy"), "restorecon")
                .args(["-R", "-n", "-v", &root])
                .timeout(Cmd::LONG_TIMEOUT);
            let out = cx.runner.run(&check)?;
            let wrong = out.stdout.lines().filter(|l| !l.trim().is_empty()).count();
            if wrong > 0 {
                let cmd = Cmd::new(format!("relabelling {root}"), "restorecon")
                    .args(["-R", &root])
                    .timeout(Cmd::LONG_TIMEOUT);
                changes.push(Change::run(format!("restorecon -R {root} ({wrong} file(s) labelled otherwise)"), cmd));
            }
        }
        Ok(changes)
    }
}
