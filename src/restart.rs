//! `hanode restart --rolling`: PostgreSQL restarted member by member through Patroni's REST
//! API, for the parameters that take effect only then (Patroni's `pending_restart`). The
//! replicas first, one at a time, each waited for until it streams again; then a switchover to
//! a replica, and the old leader last, now a replica. Only members with a restart pending, or
//! with `--all` every member (a PostgreSQL minor update: a new binary sets nothing pending);
//! never without a healthy cluster.

use std::time::Duration;

use serde_json::json;

use crate::context::Context;
use crate::patroni::{ClusterMember as Member, cluster_members as members, wait_for_members as wait_for};
use crate::ui;

/// Every member running, one leader, nobody left with a restart pending.
/// `all`: every member, pending or not (a new PostgreSQL binary after a minor update sets no
/// pending restart).
pub fn rolling(cx: &Context, all: bool) -> anyhow::Result<()> {
    if cx.role != crate::config::Role::Postgres {
        return Err(crate::error::bad_input(format!(
            "{} runs no PostgreSQL: run `hanode restart --rolling` on a PostgreSQL member",
            cx.node().name
        )));
    }
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
        restart(cx, m, deadline, all)?;
    }
    if !todo.iter().any(|m| m.is_leader()) {
        return Ok(());
    }
    // The leader last: a switchover first, so that only a switchover's time is without a
    // primary, then its restart as a replica.
    if ms.len() < 2 {
        return Err(crate::error::refused(format!(
            "{} is the only member: there is no replica to switch over to. Restart it with `patronictl -c /etc/patroni/patroni.yml restart {}` (PostgreSQL is down meanwhile)",
            leader.name, cx.site.cluster.name
        )));
    }
    ui::info(&format!("switching over from {} (its PostgreSQL must restart too)", leader.name));
    let before = started(&leader);
    crate::patroni::switchover(cx, &leader, deadline)?;
    let old = leader.name.clone();
    // Demoted, its PostgreSQL started anew as a replica (a new binary and the new values
    // with it); if a restart is still pending, or it did not start anew, it is restarted now.
    let now = members(cx)?.into_iter().find(|m| m.name == old);
    match now {
        Some(m) if m.pending_restart || (all && started(&m) == before) => restart(cx, &m, deadline, all),
        _ => Ok(()),
    }
}

/// When a member's PostgreSQL last started (its own GET /patroni).
fn started(m: &Member) -> Option<String> {
    let v = crate::units::get_json(&format!("{}/patroni", m.api_url)).ok()?;
    v["postmaster_start_time"].as_str().map(str::to_string)
}

/// Restarts one replica's PostgreSQL (Patroni refuses if it has become the leader meanwhile)
/// and waits until it runs again, started anew. Whether a restart is still pending is not
/// waited for: a replica keeps a higher `max_connections` and kin than the leader's until
/// the leader has restarted too.
fn restart(cx: &Context, m: &Member, deadline: u64, all: bool) -> anyhow::Result<()> {
    ui::info(&format!("restarting PostgreSQL on {} ({})", m.name, m.role));
    let before = started(m);
    let body = if all { json!({ "role": "replica" }) } else { json!({ "role": "replica", "restart_pending": true }) };
    let url = format!("{}/restart", m.api_url);
    crate::patroni::rest_call(cx, reqwest::Method::POST, &url, &body, Duration::from_secs(deadline))
        .map_err(|e| e.context(format!("restarting PostgreSQL on {}", m.name)))?;
    let name = m.name.clone();
    wait_for(cx, &format!("{name} running again"), deadline, |ms| {
        ms.iter().any(|x| x.name == name && x.is_healthy() && !x.is_leader())
            && started(m).is_some_and(|t| Some(&t) != before.as_ref())
    })
}
