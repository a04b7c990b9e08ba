//! The DCS: which members run it, and etcd's and Consul's configuration files.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::config::{DcsKind, Member, Role, Site};
use crate::context::Context;

pub const ETCD_CONFIG: &str = "/etc/hanode/etcd.yml";
pub const CONSUL_CONFIG: &str = "/etc/hanode/consul.json";

pub fn url_host(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v) => v.to_string(),
        IpAddr::V6(v) => format!("[{v}]"),
    }
}

/// Members that run the DCS servers: the `dcs` members if there are any, else every
/// PostgreSQL member (etcd co-located).
pub fn servers(site: &Site) -> Vec<&Member> {
    let dcs: Vec<&Member> = site.cluster.members.iter().filter(|m| m.role == Role::Dcs).collect();
    if dcs.is_empty() { site.cluster.members.iter().filter(|m| m.role == Role::Postgres).collect() } else { dcs }
}

/// Whether this node runs a DCS server (etcd member or Consul server).
pub fn is_server(cx: &Context) -> bool {
    servers(&cx.site).iter().any(|m| m.name == cx.node().name)
}

/// etcd's client endpoints, `host:port`.
pub fn etcd_hosts(site: &Site) -> Vec<String> {
    servers(site).iter().map(|m| format!("{}:{}", url_host(m.address), site.dcs.client_port)).collect()
}

/// etcd's client endpoints as URLs.
pub fn etcd_urls(site: &Site) -> Vec<String> {
    servers(site).iter().map(|m| etcd_url(site, m.address)).collect()
}

/// The client URL of the etcd member at this address.
pub fn etcd_url(site: &Site, address: IpAddr) -> String {
    format!("{}://{}:{}", crate::tls::scheme(site), url_host(address), site.dcs.client_port)
}

/// A member's own `/health` (it needs no login): healthy means in touch with a quorum.
pub fn etcd_health(url: &str) -> Result<(), String> {
    match crate::units::http().get(format!("{url}/health")).send().and_then(|r| r.text()) {
        Ok(t) if t.contains("\"true\"") => Ok(()),
        Ok(t) => Err(format!("GET {url}/health: {}", t.trim())),
        Err(e) => Err(format!("GET {url}/health: {:#}", anyhow::Error::new(e))),
    }
}

/// Whether anything accepts a TCP connection at a URL's host and port within 3 s.
pub fn answers(url: &str) -> bool {
    let addrs = reqwest::Url::parse(url).ok().and_then(|u| u.socket_addrs(|| None).ok()).unwrap_or_default();
    addrs.iter().any(|a| std::net::TcpStream::connect_timeout(a, std::time::Duration::from_secs(3)).is_ok())
}

/// vip-manager 1.x reads only etcd's v2 API: then Patroni must write its keys there too.
pub fn etcd_v2(site: &Site) -> bool {
    site.vip.is_some() && site.artifact(crate::artifacts::Kind::VipManager).is_some_and(|a| a.version.starts_with("1."))
}

pub fn etcd_data_dir(site: &Site) -> PathBuf {
    PathBuf::from("/var/lib/etcd").join(&site.cluster.name)
}

/// etcd's `--config-file`, as etcd 3.4 and 3.5 read it. Every option hanode relies on is
/// written out: with a config file, etcd leaves what the file omits at the YAML zero value,
/// not at the command-line default (`enable-grpc-gateway` would be off, and Patroni's etcd3
/// client, which speaks to that gateway, would get `404 page not found`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EtcdConfig {
    pub name: String,
    pub data_dir: String,
    pub listen_peer_urls: String,
    pub listen_client_urls: String,
    pub initial_advertise_peer_urls: String,
    pub advertise_client_urls: String,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    /// `new` for the first bootstrap, `existing` when joining; ignored once the member has data.
    pub initial_cluster_state: String,
    /// The v2 API, for vip-manager 1.x only.
    pub enable_v2: bool,
    /// The HTTP/JSON gateway to the v3 API: Patroni's `etcd3` client uses it.
    pub enable_grpc_gateway: bool,
    /// Old revisions are compacted hourly (the command-line default mode; the file default is
    /// none, and Patroni's leader key updates would grow the database until its quota).
    pub auto_compaction_mode: String,
    pub auto_compaction_retention: String,
    /// TLS for clients and for peers, each side showing a certificate of the cluster CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_transport_security: Option<EtcdTls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_transport_security: Option<EtcdTls>,
}

/// etcd's `client-transport-security` / `peer-transport-security`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EtcdTls {
    pub cert_file: String,
    pub key_file: String,
    pub trusted_ca_file: String,
    /// Only a certificate from the cluster CA gets in.
    pub client_cert_auth: bool,
}

impl EtcdConfig {
    pub fn to_yaml(&self) -> String {
        crate::yaml::file("Written by hanode: this member of the etcd cluster that Patroni uses as its DCS.", self)
    }
}

/// etcd's configuration for this member, rendered once a run: the units phase hashes the very
/// text written here (rendering again would probe the peers again, and a peer that came up in
/// between turns `new` into `existing` — a unit no later run agrees with, so etcd restarts).
pub fn etcd_config_text(cx: &Context) -> anyhow::Result<String> {
    cx.rendered(crate::units::DaemonKind::Etcd, || {
        let mut config = etcd_config(cx, &etcd_state(cx));
        // etcd reads initial-cluster only to join; a member with data ignores it. What was
        // written stays, so that a member added to the site file restarts no running etcd.
        if let Some(written) = has_data(cx).then(|| written(cx, "initial-cluster")).flatten() {
            config.initial_cluster = written;
        }
        Ok(config.to_yaml())
    })
}

/// Whether this member has data (it has joined its cluster once).
pub fn has_data(cx: &Context) -> bool {
    cx.host_path(&etcd_data_dir(&cx.site).join("member")).exists()
}

/// A setting of the etcd configuration on disk.
pub fn written(cx: &Context, key: &str) -> Option<String> {
    let current = std::fs::read_to_string(cx.host_path(std::path::Path::new(ETCD_CONFIG))).ok()?;
    serde_norway::from_str::<serde_norway::Value>(&current).ok()?.get(key)?.as_str().map(str::to_string)
}

/// `new` for the first bootstrap; `existing` when this member joins a running cluster. Once
/// the member has data, what was written stays (etcd ignores it then).
pub fn etcd_state(cx: &Context) -> String {
    if has_data(cx) {
        return written(cx, "initial-cluster-state").unwrap_or_else(|| "new".into());
    }
    if running_peers(cx).is_empty() { "new".into() } else { "existing".into() }
}

/// Other etcd members that answer healthy now.
pub fn running_peers(cx: &Context) -> Vec<String> {
    servers(&cx.site)
        .iter()
        .filter(|m| m.name != cx.node().name)
        .map(|m| etcd_url(&cx.site, m.address))
        .filter(|u| etcd_health(u).is_ok())
        .collect()
}

/// etcd's configuration for this member.
pub fn etcd_config(cx: &Context, state: &str) -> EtcdConfig {
    let site = &cx.site;
    let (client, peer) = (site.dcs.client_port, site.dcs.peer_port);
    let me = url_host(cx.node().address);
    let s = crate::tls::scheme(site);
    let cluster: Vec<String> =
        servers(site).iter().map(|m| format!("{}={s}://{}:{peer}", m.name, url_host(m.address))).collect();
    let loopback = if cx.node().address.is_ipv6() { "[::1]" } else { "127.0.0.1" };
    let tls = site.tls.enabled.then(|| EtcdTls {
        cert_file: crate::tls::cert_path(crate::units::DaemonKind::Etcd).display().to_string(),
        key_file: crate::tls::key_path(crate::units::DaemonKind::Etcd).display().to_string(),
        trusted_ca_file: crate::tls::CA.into(),
        client_cert_auth: true,
    });
    EtcdConfig {
        name: cx.node().name.clone(),
        data_dir: etcd_data_dir(site).display().to_string(),
        listen_peer_urls: format!("{s}://{me}:{peer}"),
        listen_client_urls: format!("{s}://{me}:{client},{s}://{loopback}:{client}"),
        initial_advertise_peer_urls: format!("{s}://{me}:{peer}"),
        advertise_client_urls: format!("{s}://{me}:{client}"),
        initial_cluster: cluster.join(","),
        initial_cluster_token: format!("hanode-{}", site.cluster.name),
        initial_cluster_state: state.to_string(),
        enable_v2: etcd_v2(site),
        enable_grpc_gateway: true,
        auto_compaction_mode: "periodic".into(),
        auto_compaction_retention: "1h".into(),
        client_transport_security: tls.clone(),
        peer_transport_security: tls,
    }
}

/// The Consul API's URL on this node (the agent listens on loopback only).
pub fn consul_url(site: &Site) -> String {
    format!("{}://127.0.0.1:{}", crate::tls::scheme(site), site.dcs.client_port)
}

/// The Consul datacenter: configured, else derived from the servers' common /24 (as the
/// RED OS playbooks do), else "dc1".
pub fn datacenter(site: &Site) -> String {
    if let Some(dc) = &site.dcs.datacenter {
        return dc.clone();
    }
    let nets: Vec<[u8; 3]> = servers(site)
        .iter()
        .filter_map(|m| match m.address {
            IpAddr::V4(v) => Some([v.octets()[0], v.octets()[1], v.octets()[2]]),
            IpAddr::V6(_) => None,
        })
        .collect();
    match nets.first() {
        Some(n) if nets.len() == servers(site).len() && nets.iter().all(|x| x == n) => {
            format!("dc-{}-{}-{}", n[0], n[1], n[2])
        }
        _ => "dc1".into(),
    }
}

pub fn consul_data_dir(site: &Site) -> PathBuf {
    PathBuf::from("/var/lib/consul").join(&site.cluster.name)
}

/// The Consul agent's configuration (JSON, which Consul reads like HCL): a server on `dcs`
/// members, a client agent on PostgreSQL members. Secrets come from the secrets file.
pub fn consul_config(cx: &Context) -> anyhow::Result<String> {
    let site = &cx.site;
    anyhow::ensure!(site.dcs.kind == DcsKind::Consul, "not a Consul cluster");
    let secrets = cx.secrets.as_ref().ok_or_else(|| {
        crate::error::bad_input(format!(
            "Consul needs the secrets file {} (gossip key): `hanode secrets generate`",
            cx.secrets_path.display()
        ))
    })?;
    let gossip = secrets.consul_gossip_key.as_ref().ok_or_else(|| {
        crate::error::bad_input(format!("{}: [consul] gossip_key is missing", secrets.path.display()))
    })?;
    let server = is_server(cx);
    let joins: Vec<String> =
        servers(site).iter().filter(|m| m.name != cx.node().name).map(|m| m.address.to_string()).collect();
    let mut doc = serde_json::json!({
        "node_name": cx.node().name,
        "datacenter": datacenter(site),
        "data_dir": consul_data_dir(site),
        "bind_addr": cx.node().address.to_string(),
        "client_addr": "127.0.0.1",
        "retry_join": joins,
        "encrypt": gossip.expose(),
        "server": server,
        "leave_on_terminate": !server,
        "acl": {
            "enabled": true,
            "default_policy": "deny",
            "down_policy": "extend-cache",
            "enable_token_persistence": true,
        },
    });
    if server {
        doc["bootstrap_expect"] = serde_json::json!(servers(site).len());
        doc["ui_config"] = serde_json::json!({ "enabled": false });
        // A dead server's host replaced by a new one of the same name (and a new node ID,
        // which Consul 1.5 and later accept for a failed node's name): autopilot drops the dead
        // server from Raft once the new one joins, so the quorum size stays what it was.
        // Consul's default too; written here so that it is decided in one place.
        doc["autopilot"] = serde_json::json!({ "cleanup_dead_servers": true });
    }
    if site.tls.enabled {
        // RPC, gossip's TCP side and the API: certificates of the cluster CA both ways;
        // servers must show `server.<datacenter>.consul` (tls::names). The API is HTTPS only,
        // on the client port.
        doc["tls"] = serde_json::json!({
            "defaults": {
                "ca_file": crate::tls::CA,
                "cert_file": crate::tls::cert_path(crate::units::DaemonKind::Consul),
                "key_file": crate::tls::key_path(crate::units::DaemonKind::Consul),
                "verify_incoming": true,
                "verify_outgoing": true,
            },
            "internal_rpc": { "verify_server_hostname": true },
        });
        doc["ports"] = serde_json::json!({ "http": -1, "https": site.dcs.client_port });
        // Patroni registers HTTPS checks of its REST API: the agent checks them with the CA.
        doc["enable_agent_tls_for_checks"] = serde_json::json!(true);
    }
    // The agent's own token; no default token, so anonymous requests get the deny policy.
    let token = crate::consul_acl::management(cx)?;
    doc["acl"]["tokens"] = serde_json::json!({ "agent": token.expose() });
    if server {
        doc["acl"]["tokens"]["initial_management"] = serde_json::json!(token.expose());
    }
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}
