//! The `dcs` phase: an etcd member or a Consul agent — its user, data directory, key copy and
//! configuration. Its unit is started by the units phase.

use super::{dir, file, key_copy, system_user};
use crate::config::{DcsKind, Role};
use crate::context::Context;
use crate::dcs;
use crate::engine::{Action, Change, Check, Phase, Stage, Steps, step};
use crate::error::{Kind, not_yet, refused};
use crate::files::FileSpec;
use crate::units::{self, DaemonKind};

pub const PHASE: Phase = Phase::new(
    "dcs",
    "an etcd member or a Consul agent: user, data directory, configuration",
    Stage::Firstboot,
    Role::ALL,
    steps,
)
.with_checks(|cx| etcd_scheme_check(cx).into_iter().collect())
.only_if(|cx| cx.site.dcs.kind == DcsKind::Consul || dcs::is_server(cx));

fn steps(cx: &Context) -> Steps {
    Ok(match cx.site.dcs.kind {
        DcsKind::Etcd => vec![
            system_user("etcd", "/var/lib/etcd"),
            key_copy(DaemonKind::Etcd, "etcd"),
            step("etcd data directory", |cx| dir(cx, &dcs::etcd_data_dir(&cx.site), 0o700, "etcd", "etcd")),
            step("etcd member", etcd_member),
            step("etcd configuration", |cx| {
                file(cx, FileSpec::new(dcs::ETCD_CONFIG, dcs::etcd_config_text(cx)?, 0o640).owned_by("root", "etcd"))
            }),
        ],
        DcsKind::Consul => vec![
            system_user("consul", "/var/lib/consul"),
            key_copy(DaemonKind::Consul, "consul"),
            step("consul data directory", |cx| dir(cx, &dcs::consul_data_dir(&cx.site), 0o700, "consul", "consul")),
            step("consul configuration", |cx| {
                let text = dcs::consul_config(cx).map_err(|e| not_yet("write the Consul configuration", e))?;
                file(cx, FileSpec::new(dcs::CONSUL_CONFIG, text, 0o640).owned_by("root", "consul").secret())
            }),
        ],
    })
}

/// A member with data keeps the peer URLs its cluster stored: a re-run must not switch it
/// between http and https ([tls] enabled changed, or a hanode that made TLS its default
/// meets a plain cluster) — its peers would no longer reach it, and, node by node, the
/// cluster would lose its quorum.
fn etcd_scheme_check(cx: &Context) -> Option<Check> {
    if cx.site.dcs.kind != DcsKind::Etcd || !dcs::has_data(cx) {
        return None;
    }
    let peer = dcs::written(cx, "listen-peer-urls")?;
    let want = crate::tls::scheme(&cx.site);
    if peer.starts_with(&format!("{want}://")) {
        return None;
    }
    Some(Check::error(
        "etcd scheme",
        Kind::Refused,
        format!(
            "this etcd member runs with {peer} and the site file now asks for {want}: a re-run does not move a running etcd cluster between http and https (its members would stop reaching each other). Keep [tls] enabled = {} in {} for this cluster, or build the cluster anew",
            want == "http",
            cx.site.path.display()
        ),
    ))
}

/// A member joining a running cluster is first added to it (through a running member's
/// gateway; as root where etcd's authentication is on). A host that replaces a dead one (same
/// name and address, no etcd data) finds the dead member still listed under its peer URL: that
/// member is removed first — only once the running member has no live connection to it and
/// nothing on this host answers at its URLs — since etcd would otherwise take this empty
/// member for the old one and crash on its missing raft log.
fn etcd_member(cx: &Context) -> anyhow::Result<Vec<Change>> {
    use crate::etcd_auth::{self, Call};
    if dcs::has_data(cx) {
        return Ok(Vec::new());
    }
    let Some(peer) = dcs::running_peers(cx).into_iter().next() else {
        return Ok(Vec::new());
    };
    let root = etcd_auth::root_if_enabled(cx)?;
    let gw = etcd_auth::Gateway { http: units::http(), url: peer.clone() };
    let members = gw.members(root.as_ref()).map_err(|e| anyhow::anyhow!("listing etcd's members at {peer}: {e}"))?;
    let peer_url =
        format!("{}://{}:{}", crate::tls::scheme(&cx.site), dcs::url_host(cx.node().address), cx.site.dcs.peer_port);
    let change =
        |call: Call| Change::new(call.summary(), Action::Etcd { url: peer.clone(), api: etcd_auth::Api::V3, call });
    let add = change(Call::MemberAdd { name: cx.node().name.clone(), peer_url: peer_url.clone() });
    let Some(listed) = members.iter().find(|m| m.peer_urls.contains(&peer_url)) else {
        return Ok(vec![add]);
    };
    // Added by an earlier run and not started since: this member starts as it.
    if listed.name.is_empty() {
        return Ok(Vec::new());
    }
    let data_dir = cx.host_path(&dcs::etcd_data_dir(&cx.site));
    let refuse = |why: String| {
        Err(refused(format!(
            "etcd lists member {} (ID {}) at {peer_url}, this node's peer URL, and this node has no etcd data ({}): {why}",
            listed.name,
            listed.id,
            data_dir.display()
        )))
    };
    if listed.name != cx.node().name {
        return refuse(format!(
            "the site file gives this address to {}, not to {}: fix the site file, or remove that member by hand (etcdctl member remove {})",
            cx.node().name,
            listed.name,
            listed.id
        ));
    }
    if listed.id.is_empty() || listed.id == "0" {
        return refuse("etcd gave no ID for it: nothing removed; see `etcdctl member list`".into());
    }
    // Alive in the cluster's eyes (a connection from any healthy member), or on this host
    // (this node's own etcd, its data directory removed under it): never removed.
    let healthy: Vec<String> = members
        .iter()
        .filter(|m| m.id != listed.id)
        .filter_map(|m| m.client_urls.iter().find(|u| dcs::etcd_health(u).is_ok()).cloned())
        .collect();
    match etcd_auth::live_connection(&healthy, &listed.id) {
        Ok(None) => {}
        Ok(Some(u)) => {
            return refuse(format!(
                "{u} has a live connection to it: another host still answers as {}. Power that host off (or take the address off it) and run init again",
                listed.name
            ));
        }
        Err(e) => return refuse(format!("cannot tell whether it is alive ({e}): nothing removed")),
    }
    if let Some(url) = listed.peer_urls.iter().chain(&listed.client_urls).find(|u| dcs::answers(u)) {
        return refuse(format!(
            "something on this host answers at {url}: if it is this node's own etcd, stop etcd.service and run init again"
        ));
    }
    let remove =
        change(Call::MemberRemove { id: listed.id.clone(), name: listed.name.clone(), peer_url: peer_url.clone() });
    let remove = Change { summary: format!("{}: this host replaces it, with no etcd data", remove.summary), ..remove };
    Ok(vec![remove, add])
}
