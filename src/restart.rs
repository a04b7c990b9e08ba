//! `hanode restart --rolling`: PostgreSQL restarted member by member through Patroni's REST
//! API, for the parameters that take effect only then (Patroni's `pending_restart`). The
//! replicas first, one at a time, each waited for until it streams again; then a switchover to
//! a replica, and the old leader last, now a replica. Never without a healthy cluster.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::context::Context;
use crate::ui;

/// A member as Patroni's GET /cluster lists it.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    role: String,
    state: String,
    api_url: String,
    pending_restart: bool,
}

impl Member {
    fn is_leader(&self) -> bool {
        matches!(self.role.as_str(), "leader" | "master" | "primary")
    }
    /// Running as a leader, or a replica that receives WAL (Patroni 3.0 says "running").
    fn is_healthy(&self) -> bool {
        matches!(self.state.as_str(), "running" | "streaming")
    }
}

fn members(cx: &Context) -> anyhow::Result<Vec<Member>> {
    let url = format!("{}/cluster", crate::patroni::rest_url(cx));
    let v = crate::units::get_json(&url).map_err(|e| anyhow::anyhow!("asking Patroni for the cluster: {e}"))?;
    let s = |m: &Value, k: &str| m[k].as_str().unwrap_or_default().to_string();
    Ok(v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| Member {
            name: s(m, "name"),
            role: s(m, "role"),
            state: s(m, "state"),
            api_url: s(m, "api_url").trim_end_matches("/patroni").to_string(),
            pending_restart: m["pending_restart"].as_bool() == Some(true),
        })
        .collect())
}

/// Polls the cluster until `done` says so, or fails after `secs` saying what it waited for.
fn wait_for(cx: &Context, what: &str, secs: u64, done: impl Fn(&[Member]) -> bool) -> anyhow::Result<()> {
    let begun = Instant::now();
    loop {
        if let Ok(ms) = members(cx) {
            if done(&ms) {
                ui::info(&format!("{what} after {:.1} s", begun.elapsed().as_secs_f32()));
                return Ok(());
            }
        }
        if begun.elapsed() > Duration::from_secs(secs) {
            anyhow::bail!("not {what} within {secs} s: see `hanode status --cluster` and Patroni's journal");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every member running, one leader, nobody left with a restart pending (`all`: every member
/// restarted once).
pub fn rolling(cx: &Context, all: bool) -> anyhow::Result<()> {
    let ms = members(cx)?;
    if let Some(m) = ms.iter().find(|m| !m.is_healthy()) {
        return Err(crate::error::refused(format!(
            "member {} is {} ({}): a rolling restart starts only when every member runs; bring it back first (hanode init on it)",
            m.name, m.state, m.role
        )));
    }
    let Some(leader) = ms.iter().find(|m| m.is_leader()).cloned() else {
        return Err(crate::error::refused("the cluster has no leader: nothing restarted".to_string()));
    };
    let todo: Vec<&Member> = ms.iter().filter(|m| all || m.pending_restart).collect();
    if todo.is_empty() {
        ui::info("no member has a restart pending: nothing to do");
        return Ok(());
    }
    let deadline = u64::from(cx.site.patroni.ttl) * 10 + 120;
    for m in todo.iter().filter(|m| !m.is_leader()) {
        restart(cx, m, all, deadline)?;
    }
    if !todo.iter().any(|m| m.is_leader()) {
        return Ok(());
    }
    // The leader last: a switchover first, so that only a switchover's time is without a
    // primary, then its restart as a replica.
    ui::info(&format!("switching over from {} (its PostgreSQL must restart too)", leader.name));
    let body = json!({ "leader": leader.name });
    crate::patroni::rest_call(
        cx,
        reqwest::Method::POST,
        &format!("{}/switchover", leader.api_url),
        &body,
        Duration::from_secs(deadline),
    )?;
    let old = leader.name.clone();
    wait_for(cx, &format!("a new leader, {old} running as a replica"), deadline, |ms| {
        ms.iter().any(|m| m.is_leader() && m.name != old && m.is_healthy())
            && ms.iter().any(|m| m.name == old && !m.is_leader() && m.is_healthy())
    })?;
    let now = members(cx)?.into_iter().find(|m| m.name == old);
    match now {
        Some(m) if all || m.pending_restart => restart(cx, &m, all, deadline),
        // Demoted, Patroni started it anew with the new settings already.
        _ => Ok(()),
    }
}

/// Restarts one replica's PostgreSQL and waits until it runs again without a restart pending.
fn restart(cx: &Context, m: &Member, all: bool, deadline: u64) -> anyhow::Result<()> {
    ui::info(&format!("restarting PostgreSQL on {} ({})", m.name, m.role));
    let body = if all { json!({}) } else { json!({ "restart_pending": true }) };
    crate::patroni::rest_call(
        cx,
        reqwest::Method::POST,
        &format!("{}/restart", m.api_url),
        &body,
        Duration::from_secs(deadline),
    )?;
    let name = m.name.clone();
    wait_for(cx, &format!("{name} running again"), deadline, |ms| {
        ms.iter().any(|x| x.name == name && x.is_healthy() && !x.pending_restart)
    })
}
