//! systemd units from the templates in `units/`, and starting them: reload, enable, start in
//! dependency order, then wait (with a deadline) until each is healthy.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::context::Context;
use crate::exec::Cmd;

pub const ETCD: &str = include_str!("../units/etcd.service");
pub const PATRONI: &str = include_str!("../units/patroni.service");
pub const VIP_MANAGER: &str = include_str!("../units/vip-manager.service");
pub const CONSUL: &str = include_str!("../units/consul.service");

/// Fills `{{name}}` placeholders; a placeholder left unfilled is a bug, reported as such.
pub fn render(template: &str, vars: &[(&str, String)]) -> anyhow::Result<String> {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    if let Some(i) = out.find("{{") {
        anyhow::bail!(
            "internal error: unit template placeholder left unfilled near `{}`",
            &out[i..(i + 30).min(out.len())]
        );
    }
    Ok(out)
}

/// How to tell that a started unit works.
#[derive(Debug, Clone, Serialize)]
pub enum Health {
    /// GET this URL until it answers 200 (and contains the text, if given).
    Http { url: String, contains: Option<String> },
    /// `systemctl is-active` says active.
    Active,
}

#[derive(Debug, Clone, Serialize)]
pub struct Start {
    pub unit: String,
    /// Restart (or reload, for Patroni) a running unit whose files changed.
    pub verb: String,
    pub health: Health,
    pub deadline_secs: u64,
}

fn systemctl(what: &str, args: &[&str]) -> Cmd {
    Cmd::new(what, "systemctl").args(args.iter().copied())
}

pub fn is_active(cx: &Context, unit: &str) -> anyhow::Result<bool> {
    let out = cx.runner.output(&systemctl(&format!("asking whether {unit} runs"), &["is-active", "--quiet", unit]))?;
    Ok(out.success())
}

pub fn is_enabled(cx: &Context, unit: &str) -> anyhow::Result<bool> {
    let out =
        cx.runner.output(&systemctl(&format!("asking whether {unit} is enabled"), &["is-enabled", "--quiet", unit]))?;
    Ok(out.success())
}

pub fn main_pid(cx: &Context, unit: &str) -> anyhow::Result<u32> {
    let out = cx
        .runner
        .run(&systemctl(&format!("reading {unit}'s main PID"), &["show", "-p", "MainPID", "--value", unit]))?;
    Ok(out.stdout.trim().parse().unwrap_or(0))
}

fn healthy(cx: &Context, start: &Start) -> bool {
    match &start.health {
        Health::Active => is_active(cx, &start.unit).unwrap_or(false),
        Health::Http { url, contains } => {
            let Ok(client) = reqwest::blocking::Client::builder().timeout(Duration::from_secs(3)).build() else {
                return false;
            };
            match client.get(url).send() {
                Ok(r) if r.status().is_success() => {
                    contains.as_ref().is_none_or(|c| r.text().is_ok_and(|t| t.contains(c.as_str())))
                }
                _ => false,
            }
        }
    }
}

/// Runs `systemctl VERB unit` and polls until the unit is healthy or the deadline passes; then
/// fails with the unit's last journal lines (and, under enforcing SELinux, the AVC denials).
pub fn start(cx: &Context, start: &Start) -> anyhow::Result<()> {
    let since = std::time::SystemTime::now();
    start_and_wait(cx, start).map_err(|e| crate::selinux::explain(cx, since, e))
}

fn start_and_wait(cx: &Context, start: &Start) -> anyhow::Result<()> {
    cx.runner
        .run(&systemctl(&format!("{} {}", start.verb, start.unit), &[start.verb.as_str(), start.unit.as_str()]))?;
    let deadline = Instant::now() + Duration::from_secs(start.deadline_secs);
    let begun = Instant::now();
    let mut last_note = Instant::now();
    while Instant::now() < deadline {
        if healthy(cx, start) {
            crate::ui::info(&format!("{} is healthy after {:.1} s", start.unit, begun.elapsed().as_secs_f32()));
            return Ok(());
        }
        if last_note.elapsed() >= Duration::from_secs(15) {
            last_note = Instant::now();
            crate::ui::info(&format!(
                "waiting for {} ({:.0} s of {} s)",
                start.unit,
                begun.elapsed().as_secs_f32(),
                start.deadline_secs
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let journal = cx.runner.output(&Cmd::new("reading the journal", "journalctl").args([
        "-u",
        &start.unit,
        "-n",
        "25",
        "--no-pager",
        "-o",
        "cat",
    ]))?;
    anyhow::bail!(
        "{} did not become healthy within {} s ({:?}); its last journal lines:\n    {}",
        start.unit,
        start.deadline_secs,
        start.health,
        journal.stdout.trim_end().replace('\n', "\n    ")
    )
}
