//! `hanode member remove NAME`: a member that has left the cluster for good (its host powered
//! off or stopped, and taken out of the site file) is removed from etcd, once Patroni has
//! forgotten it (its member key expired).
//! Every check comes before the one change, so a refusal leaves everything as it was.

use crate::config::{DcsKind, Role};
use crate::context::Context;
use crate::error::{bad_input, refused};
use crate::etcd_auth::{self, Api, Call, Gateway};
use crate::{dcs, patroni, ui, units};

pub fn remove(cx: &Context, name: &str) -> anyhow::Result<()> {
    let site = &cx.site;
    if crate::config::parse_name(name).is_err() {
        return Err(bad_input(format!("`{name}` is not a member name (letters, digits, `-`, `_`, `.`)")));
    }
    if name == cx.node().name {
        return Err(bad_input(format!("{name} is this node: run `hanode member remove {name}` on a remaining member")));
    }
    if site.member(name).is_some() {
        return Err(bad_input(format!(
            "{name} is still in cluster.members of {}: take it out of the site file (on every remaining member) first; the next `hanode init` there then drops it from pg_hba and the configuration",
            site.path.display()
        )));
    }
    if cx.role != Role::Postgres {
        return Err(bad_input(format!(
            "{} runs no Patroni: run `hanode member remove {name}` on a PostgreSQL member",
            cx.node().name
        )));
    }
    let members = patroni::cluster_members(cx)?;
    let listed = members.iter().find(|m| m.name == name);
    // A leader whose host just died still holds the key (its state as last written) until
    // the key expires: the message covers both cases.
    if listed.is_some_and(patroni::ClusterMember::is_leader) {
        return Err(refused(format!(
            "{name} holds Patroni's leader key: switch over first (`patronictl -c /etc/patroni/patroni.yml switchover --leader {name}`), then stop it; if its host is already down, wait for the failover (up to ttl = {} s) and run this again",
            cx.site.patroni.ttl
        )));
    }
    if !members.iter().any(patroni::ClusterMember::is_leader) {
        return Err(refused(
            "the cluster has no leader: nothing removed; bring it back first (`hanode status --cluster`)",
        ));
    }
    // etcd's liveness and quorum are judged before the wait for Patroni (a running member is
    // refused at once) and again after it, right before the one change: a host that came back
    // meanwhile is seen.
    let etcd = |cx: &Context| match site.dcs.kind {
        DcsKind::Etcd => etcd_member(cx, name),
        DcsKind::Consul => Ok(None),
    };
    let mut removal = etcd(cx)?;
    if let Some(m) = listed {
        departed_from_patroni(cx, name, &m.state)?;
        removal = etcd(cx)?;
    }
    if site.dcs.kind == DcsKind::Consul {
        ui::info(&format!(
            "Consul: hanode does not remove servers yet; if {name} was one, run `consul force-leave -prune {name}` on a server"
        ));
    }
    match removal {
        Some((gw, call)) => {
            ui::info(&call.summary());
            let root = etcd_auth::root_if_enabled(cx)?;
            gw.apply(root.as_ref(), Api::V3, &call)?;
        }
        None if listed.is_none() && site.dcs.kind == DcsKind::Etcd => {
            return Err(bad_input(format!(
                "neither Patroni nor etcd lists a member {name}: nothing removed (`hanode status --cluster`, `etcdctl member list`)"
            )));
        }
        None => ui::info(&format!("{name} is no etcd member: nothing to remove from etcd")),
    }
    ui::info(&format!(
        "{name} removed. Patroni drops its replication slot on the leader (Patroni 4.0 and later after member_slots_ttl, 30 min unless set). Next: run `hanode init` on every remaining member, with the new site file (pg_hba and configuration without {name}; reloads only)"
    ));
    Ok(())
}

/// Patroni still lists `name` (not as its leader): a stopped or dead member's key lasts one
/// ttl, so it is waited for; one still listed after that runs. Its replication slot is
/// Patroni's to drop: at once before Patroni 4.0, after `member_slots_ttl` (30 min unless set)
/// since, so that a member that comes back soon finds it.
fn departed_from_patroni(cx: &Context, name: &str, state: &str) -> anyhow::Result<()> {
    let p = &cx.site.patroni;
    let wait = u64::from(p.ttl + p.loop_wait) + 10;
    ui::info(&format!("{name} is still listed by Patroni ({state}): waiting up to {wait} s for its key to expire"));
    let gone = |ms: &[patroni::ClusterMember]| !ms.iter().any(|m| m.name == name);
    if patroni::wait_for_members(cx, &format!("{name} gone from Patroni's members"), wait, gone).is_ok() {
        return Ok(());
    }
    // Still listed, or this node's Patroni stopped answering: only the first is a refusal.
    if gone(&patroni::cluster_members(cx)?) {
        return Ok(());
    }
    Err(refused(format!(
        "{name} is still a Patroni member after {wait} s: it runs. Stop it there (`systemctl stop patroni`) or power its host off, then run this again"
    )))
}

/// etcd's view: the removal to make, through a healthy member; `None` when etcd does not list
/// `name`. Refused while the member is connected, or when the others would have no quorum.
fn etcd_member(cx: &Context, name: &str) -> anyhow::Result<Option<(Gateway<'static>, Call)>> {
    let site = &cx.site;
    let url = dcs::servers(site)
        .iter()
        .map(|m| dcs::etcd_url(site, m.address))
        .find(|u| dcs::etcd_health(u).is_ok())
        .ok_or_else(|| refused("no etcd member of the site file is healthy: nothing removed"))?;
    let root = etcd_auth::root_if_enabled(cx)?;
    let gw = Gateway { http: units::http(), url: url.clone() };
    let members = gw.members(root.as_ref()).map_err(|e| anyhow::anyhow!("listing etcd's members at {url}: {e}"))?;
    let Some(listed) = members.iter().find(|m| m.name == name) else {
        // One added and never started has no name yet: it still counts toward the quorum.
        for m in members.iter().filter(|m| m.name.is_empty()) {
            ui::info(&format!(
                "etcd lists a member that never started (ID {}, {}): if it was {name}, remove it with `etcdctl member remove {}`",
                m.id,
                m.peer_urls.join(", "),
                m.id
            ));
        }
        return Ok(None);
    };
    let rest: Vec<&etcd_auth::Member> = members.iter().filter(|m| m.id != listed.id).collect();
    let healthy: Vec<String> =
        rest.iter().filter_map(|m| m.client_urls.iter().find(|u| dcs::etcd_health(u).is_ok()).cloned()).collect();
    match etcd_auth::live_connection(&healthy, &listed.id) {
        Ok(None) => {}
        Ok(Some(u)) => {
            return Err(refused(format!(
                "{u} has a live connection to {name}'s etcd (ID {}): it runs. Stop it there (`systemctl stop etcd`) or power its host off, then run this again",
                listed.id
            )));
        }
        Err(e) => return Err(refused(format!("cannot tell whether {name}'s etcd is alive ({e}): nothing removed"))),
    }
    let quorum = rest.len() / 2 + 1;
    if rest.is_empty() || healthy.len() < quorum {
        return Err(refused(format!(
            "without {name}, etcd would have {} member(s), {} of them healthy: below its quorum of {quorum}. Bring the others back first; nothing removed",
            rest.len(),
            healthy.len()
        )));
    }
    let peer_url = listed.peer_urls.first().cloned().unwrap_or_default();
    Ok(Some((gw, Call::MemberRemove { id: listed.id.clone(), name: name.to_string(), peer_url })))
}
