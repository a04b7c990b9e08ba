//! patroni.yml: scope, name, REST API, DCS, bootstrap (initdb with checksums and --waldir,
//! pg_hba that lets members replicate from the first start), data dir, authentication.

use std::path::PathBuf;

use crate::config::{DcsKind, Role};
use crate::context::Context;
use crate::dcs;
use crate::profile::Profile;
use crate::units::DaemonKind;
use serde::Serialize;

pub const CONFIG: &str = "/etc/patroni/patroni.yml";

/// patroni.yml, rendered once a run (the patroni phase writes it, the units phase hashes it).
pub fn config_text(cx: &Context) -> anyhow::Result<String> {
    cx.rendered(DaemonKind::Patroni, || config(cx))
}

/// Patroni's REST API on this node.
pub fn rest_url(cx: &Context) -> String {
    let site = &cx.site;
    format!("{}://{}:{}", crate::tls::scheme(site), dcs::url_host(cx.node().address), site.patroni.rest_api_port)
}

/// A call that changes something, through a member's REST API at `url`: as Patroni's REST
/// user, with this node's certificate. Patroni's answer on success.
pub fn rest_call(
    cx: &Context,
    method: reqwest::Method,
    url: &str,
    body: &serde_json::Value,
    timeout: std::time::Duration,
) -> anyhow::Result<String> {
    let secrets = cx.secrets.as_ref().ok_or_else(|| {
        crate::error::bad_input(format!("{method} {url} needs the secrets file {}", cx.secrets_path.display()))
    })?;
    let password = secrets.rest_api_password.as_ref().ok_or_else(|| {
        crate::error::bad_input(format!("{}: [patroni] rest_api_password is missing", secrets.path.display()))
    })?;
    let resp = crate::units::http()
        .request(method.clone(), url)
        .basic_auth("patroni", Some(password.expose()))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .timeout(timeout)
        .send()
        .map_err(|e| anyhow::anyhow!("{method} {url}: {:#}", anyhow::Error::new(e)))?;
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("{method} {url}: Patroni answered {status}: {}", text.trim());
    }
    Ok(text)
}

/// The `patroni` program: hanode's link into the venv, or the distribution package's.
pub fn program(cx: &Context) -> PathBuf {
    match cx.site.patroni.install {
        crate::config::PatroniInstall::Pip => cx.site.install.bin_dir.join("patroni"),
        crate::config::PatroniInstall::Package => PathBuf::from("/usr/bin/patroni"),
    }
}

pub fn bin_dir(cx: &Context) -> String {
    Profile::expand(&cx.profile.postgres.bin_dir, cx.postgres_version())
}

/// Settings in the order written (PostgreSQL parameters, initdb options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn of<const N: usize>(settings: [(&str, &str); N]) -> Params {
        Params(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    /// Sets `name` (in place where it is, else at the end).
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value.to_string(),
            None => self.0.push((name.to_string(), value.to_string())),
        }
    }
}

impl Serialize for Params {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// patroni.yml; `None` is not written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatroniConfig {
    pub scope: String,
    pub name: String,
    pub restapi: RestApi,
    /// patronictl on this node, and Patroni's own requests to its peers.
    pub ctl: Option<Ctl>,
    /// vip-manager 1.x reads etcd's v2 API, so Patroni keeps its keys there.
    pub etcd: Option<Etcd>,
    pub etcd3: Option<Etcd>,
    pub consul: Option<Consul>,
    pub bootstrap: Bootstrap,
    pub postgresql: Postgresql,
    pub watchdog: Watchdog,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestApi {
    pub listen: String,
    pub connect_address: String,
    pub certfile: Option<String>,
    pub keyfile: Option<String>,
    pub cafile: Option<String>,
    pub verify_client: Option<String>,
    pub authentication: Login,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Login {
    pub username: String,
    pub password: String,
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ctl {
    pub insecure: bool,
    pub cacert: String,
    pub certfile: String,
    pub keyfile: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Etcd {
    pub hosts: Vec<String>,
    pub protocol: Option<String>,
    pub cacert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consul {
    pub host: String,
    pub dc: String,
    pub register_service: bool,
    pub scheme: Option<String>,
    pub verify: Option<bool>,
    pub cacert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    /// Its own token, with no more than it needs (consul_acl), not the management token.
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bootstrap {
    pub dcs: BootstrapDcs,
    pub initdb: Vec<Initdb>,
    pub pg_hba: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootstrapDcs {
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub maximum_lag_on_failover: u64,
    pub synchronous_mode: bool,
    pub postgresql: DcsPostgresql,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DcsPostgresql {
    pub use_pg_rewind: bool,
    pub use_slots: bool,
    pub parameters: Params,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Postgresql {
    pub listen: String,
    pub connect_address: String,
    pub data_dir: String,
    pub bin_dir: String,
    pub pgpass: String,
    pub basebackup: Option<Vec<Params>>,
    pub authentication: Users,
    pub parameters: Params,
    pub pg_hba: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Users {
    pub superuser: Login,
    pub replication: Login,
    pub rewind: Option<Login>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Watchdog {
    pub mode: crate::config::Watchdog,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tags {
    pub nofailover: bool,
    pub noloadbalance: bool,
    pub clonefrom: bool,
    pub nosync: bool,
}

/// An initdb option: a flag, or a flag with a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Initdb {
    Flag(&'static str),
    Value(Params),
}

/// The whole file. It holds passwords: written 0600, owned by postgres.
pub fn config(cx: &Context) -> anyhow::Result<String> {
    Ok(crate::yaml::file("Written by hanode from the site file; edit that, not this.", &settings(cx)?))
}

/// This node's Patroni settings.
pub fn settings(cx: &Context) -> anyhow::Result<PatroniConfig> {
    let site = &cx.site;
    let p = &site.patroni;
    let secrets = cx.secrets.as_ref().ok_or_else(|| {
        crate::error::bad_input(format!(
            "Patroni needs the secrets file {} (passwords): write one with `hanode secrets generate`",
            cx.secrets_path.display()
        ))
    })?;
    let me = dcs::url_host(cx.node().address);
    let crate::node::PostgresDirs { data: data_dir, wal: wal_dir } = crate::node::postgres_dirs(cx);
    let tls = site.tls.enabled;
    let on = |s: &str| tls.then(|| s.to_string());
    let ca = crate::tls::CA.to_string();
    let cert = crate::tls::cert_path(DaemonKind::Patroni).display().to_string();
    let key = crate::tls::key_path(DaemonKind::Patroni).display().to_string();
    let rest_pw = secrets.rest_api_password.as_ref().ok_or_else(|| {
        crate::error::bad_input(format!(
            "{}: [patroni] rest_api_password is missing: Patroni's REST API must not accept changes without it (`hanode secrets generate` writes one)",
            secrets.path.display()
        ))
    })?;
    let login = |user: &str, password: &str, verify: bool| Login {
        username: user.into(),
        password: password.into(),
        // Members connect to each other over TLS and check that the other side's
        // certificate comes from the cluster CA.
        sslmode: (verify && tls).then(|| "verify-ca".into()),
        sslrootcert: (verify && tls).then(|| ca.clone()),
    };
    let restapi = RestApi {
        listen: format!("{me}:{}", p.rest_api_port),
        connect_address: format!("{me}:{}", p.rest_api_port),
        // HTTPS; the calls that change something need a certificate of the cluster CA and
        // the password, reads only TLS.
        certfile: on(&cert),
        keyfile: on(&key),
        cafile: on(&ca),
        verify_client: on("optional"),
        authentication: login("patroni", rest_pw.expose(), false),
    };
    let ctl = tls.then(|| Ctl { insecure: false, cacert: ca.clone(), certfile: cert.clone(), keyfile: key.clone() });
    let (mut etcd, mut etcd3, mut consul) = (None, None, None);
    match site.dcs.kind {
        DcsKind::Etcd => {
            let auth = if crate::etcd_auth::enabled(site) { Some(crate::etcd_auth::patroni(cx)?) } else { None };
            let e = Etcd {
                hosts: dcs::etcd_hosts(site),
                protocol: on("https"),
                cacert: on(&ca),
                cert: on(&cert),
                key: on(&key),
                username: auth.as_ref().map(|l| l.user.clone()),
                password: auth.map(|l| l.password.expose().to_string()),
            };
            if dcs::etcd_v2(site) { etcd = Some(e) } else { etcd3 = Some(e) }
        }
        DcsKind::Consul => {
            consul = Some(Consul {
                host: format!("127.0.0.1:{}", site.dcs.client_port),
                dc: dcs::datacenter(site),
                register_service: true,
                scheme: on("https"),
                verify: tls.then_some(true),
                cacert: on(&ca),
                cert: on(&cert),
                key: on(&key),
                token: crate::consul_acl::patroni_token(cx)?.expose().to_string(),
            })
        }
    }
    let waldir = |w: &PathBuf| Params::of([("waldir", &w.display().to_string())]);
    let mut initdb = vec![Initdb::Value(Params::of([("encoding", "UTF8")])), Initdb::Flag("data-checksums")];
    initdb.extend(wal_dir.as_ref().map(|w| Initdb::Value(waldir(w))));
    let hba = hba(cx);
    let mut parameters =
        Params::of([("unix_socket_directories", SOCKET_DIR), ("password_encryption", "scram-sha-256")]);
    if tls {
        parameters.0.extend(
            Params::of([("ssl", "on"), ("ssl_cert_file", &cert), ("ssl_key_file", &key), ("ssl_ca_file", &ca)]).0,
        );
    }
    Ok(PatroniConfig {
        scope: site.cluster.name.clone(),
        name: cx.node().name.clone(),
        restapi,
        ctl,
        etcd,
        etcd3,
        consul,
        bootstrap: Bootstrap {
            dcs: dynamic(cx),
            initdb,
            // Patroni 3.0 (Debian 12's package) requires bootstrap.pg_hba; later versions take
            // it too. postgresql.pg_hba below replaces pg_hba.conf at every start: the same list.
            pg_hba: hba.clone(),
        },
        postgresql: Postgresql {
            // Every address, the VIP among them (it comes and goes); pg_hba decides who gets in.
            listen: format!("*:{}", p.postgres_port),
            connect_address: format!("{me}:{}", p.postgres_port),
            data_dir: data_dir.display().to_string(),
            bin_dir: bin_dir(cx),
            pgpass: format!("{}/.pgpass_patroni", cx.profile.postgres.home),
            basebackup: wal_dir.as_ref().map(|w| vec![waldir(w)]),
            authentication: Users {
                superuser: login("postgres", secrets.superuser_password.expose(), true),
                replication: login("replicator", secrets.replication_password.expose(), true),
                rewind: secrets.rewind_password.as_ref().map(|pw| login("rewinder", pw.expose(), true)),
            },
            parameters,
            pg_hba: hba,
        },
        watchdog: Watchdog { mode: p.watchdog },
        tags: Tags { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
    })
}

/// Patroni's dynamic configuration as the site file says it: the same on every member, kept in
/// the DCS. A new cluster starts with it (`bootstrap.dcs`); on a running one the units phase
/// brings the DCS's copy to it (`dynamic_config`). The site's `[postgresql] parameters` come
/// after hanode's own, and win.
pub fn dynamic(cx: &Context) -> BootstrapDcs {
    let p = &cx.site.patroni;
    let mut parameters = Params::of([
        ("wal_level", "replica"),
        ("hot_standby", "on"),
        ("wal_log_hints", "on"),
        ("max_wal_senders", "10"),
        ("max_replication_slots", "10"),
        ("wal_keep_size", "256MB"),
    ]);
    for (name, value) in &cx.site.postgresql.parameters {
        parameters.set(name, value);
    }
    BootstrapDcs {
        ttl: p.ttl,
        loop_wait: p.loop_wait,
        retry_timeout: p.retry_timeout,
        maximum_lag_on_failover: p.maximum_lag_on_failover,
        synchronous_mode: p.synchronous_mode,
        postgresql: DcsPostgresql { use_pg_rewind: true, use_slots: true, parameters },
    }
}

/// PostgreSQL's socket directory.
pub const SOCKET_DIR: &str = "/var/run/postgresql";

/// What Patroni and its PostgreSQL write, for its unit's `ReadWritePaths=`: the data
/// directory's parent (initdb makes the directory), the WAL directory, the socket directory
/// and the postgres home (Patroni's pgpass).
pub fn write_paths(cx: &Context) -> Vec<PathBuf> {
    let crate::node::PostgresDirs { data, wal } = crate::node::postgres_dirs(cx);
    let mut paths = vec![data.parent().map_or(data.clone(), std::path::Path::to_path_buf)];
    paths.extend(wal);
    paths.extend([PathBuf::from(SOCKET_DIR), PathBuf::from(&cx.profile.postgres.home)]);
    paths
}

/// One line of pg_hba.conf, from parts the site file's rules allow (names need no quoting).
struct HbaRule {
    /// `local`, `host` or `hostssl`.
    connection: &'static str,
    databases: String,
    users: String,
    /// `None` for `local`.
    network: Option<String>,
    method: &'static str,
}

impl std::fmt::Display for HbaRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.connection, self.databases, self.users)?;
        if let Some(n) = &self.network {
            write!(f, " {n}")?;
        }
        write!(f, " {}", self.method)
    }
}

/// pg_hba.conf, from the very first start: the local superuser by peer; over the network only
/// scram-sha-256, and with TLS only over TLS (`hostssl`). The superuser, replication and rewind
/// come from the members (and the VIP, the leader's own second address) and loopback only;
/// other roles from the VIP's subnet and the site file's client networks.
pub fn hba(cx: &Context) -> Vec<String> {
    let site = &cx.site;
    let host = if site.tls.enabled { "hostssl" } else { "host" };
    let rule = |connection, databases: &str, users: &str, network: Option<String>, method| HbaRule {
        connection,
        databases: databases.to_string(),
        users: users.to_string(),
        network,
        method,
    };
    let net = |a: std::net::IpAddr| if a.is_ipv4() { format!("{a}/32") } else { format!("{a}/128") };
    let mut trusted: Vec<String> =
        site.cluster.members.iter().filter(|m| m.role == Role::Postgres).map(|m| net(m.address)).collect();
    // Patroni itself opens replication connections to its own PostgreSQL (WAL positions when
    // choosing the healthiest node, synchronous mode); Patroni 3.0 connects as `localhost`,
    // which may resolve to ::1.
    trusted.extend(["127.0.0.1/32".to_string(), "::1/128".to_string()]);
    if let Some(v) = &site.vip {
        trusted.push(net(v.address));
    }
    let mut hba =
        vec![rule("local", "all", "postgres", None, "peer"), rule("local", "all", "all", None, "scram-sha-256")];
    for n in &trusted {
        hba.push(rule(host, "replication", "replicator", Some(n.clone()), "scram-sha-256"));
        hba.push(rule(host, "all", "all", Some(n.clone()), "scram-sha-256"));
    }
    // From any other network, the superuser and Patroni's own roles (rewinder may read any file
    // of the data directory) are turned away first: they stay with the members.
    let patroni_roles = crate::config::PATRONI_ROLES.join(",");
    let mut others: Vec<(String, String, String)> = Vec::new();
    if let Some(v) = &site.vip {
        others.push((format!("{}/{}", v.address, v.prefix), "all".into(), "all".into()));
    }
    for c in &site.postgresql.clients {
        let list = |l: &[String]| if l.is_empty() { "all".to_string() } else { l.join(",") };
        others.push((format!("{}/{}", c.network, c.prefix), list(&c.databases), list(&c.users)));
    }
    for (network, databases, users) in others {
        hba.push(rule("host", "all", &patroni_roles, Some(network.clone()), "reject"));
        hba.push(rule(host, &databases, &users, Some(network), "scram-sha-256"));
    }
    hba.iter().map(ToString::to_string).collect()
}

/// A member as Patroni's GET /cluster lists it.
#[derive(Debug, Clone)]
pub struct ClusterMember {
    pub name: String,
    pub role: String,
    pub state: String,
    pub api_url: String,
    pub pending_restart: bool,
}

impl ClusterMember {
    pub fn is_leader(&self) -> bool {
        matches!(self.role.as_str(), "leader" | "master" | "primary")
    }
    /// Running as a leader, or a replica that receives WAL (Patroni 3.0 says "running").
    pub fn is_healthy(&self) -> bool {
        matches!(self.state.as_str(), "running" | "streaming")
    }
}

/// The cluster's members, from this member's REST API.
pub fn cluster_members(cx: &Context) -> anyhow::Result<Vec<ClusterMember>> {
    let url = format!("{}/cluster", crate::patroni::rest_url(cx));
    let v = crate::units::get_json(&url).map_err(|e| anyhow::anyhow!("asking Patroni for the cluster: {e}"))?;
    let s = |m: &serde_json::Value, k: &str| m[k].as_str().unwrap_or_default().to_string();
    Ok(v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| ClusterMember {
            name: s(m, "name"),
            role: s(m, "role"),
            state: s(m, "state"),
            api_url: s(m, "api_url").trim_end_matches("/patroni").to_string(),
            pending_restart: m["pending_restart"].as_bool() == Some(true),
        })
        .collect())
}

/// Polls the cluster until `done` says so, or fails after `secs` saying what it waited for.
pub fn wait_for_members(
    cx: &Context,
    what: &str,
    secs: u64,
    done: impl Fn(&[ClusterMember]) -> bool,
) -> anyhow::Result<()> {
    let begun = std::time::Instant::now();
    loop {
        if let Ok(ms) = cluster_members(cx) {
            if done(&ms) {
                crate::ui::info(&format!("{what} after {:.1} s", begun.elapsed().as_secs_f32()));
                return Ok(());
            }
        }
        if begun.elapsed() > std::time::Duration::from_secs(secs) {
            anyhow::bail!("not {what} within {secs} s: see `hanode status --cluster` and Patroni's journal");
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// A switchover away from `leader` (Patroni picks the replica), waited for until another
/// member leads and `leader` runs as a replica.
pub fn switchover(cx: &Context, leader: &ClusterMember, deadline: u64) -> anyhow::Result<()> {
    let body = serde_json::json!({ "leader": leader.name });
    let url = format!("{}/switchover", leader.api_url);
    rest_call(cx, reqwest::Method::POST, &url, &body, std::time::Duration::from_secs(deadline))?;
    let old = leader.name.clone();
    wait_for_members(cx, &format!("a new leader, {old} running as a replica"), deadline, |ms| {
        ms.iter().any(|m| m.is_leader() && m.name != old && m.is_healthy())
            && ms.iter().any(|m| m.name == old && !m.is_leader() && m.is_healthy())
    })
}

/// Before this node's Patroni restarts (a new program or unit): if it leads and a replica
/// runs, a switchover first, so that the cluster is without a primary for a switchover's time
/// rather than a failover's. A Patroni that does not answer has nothing to hand over.
pub fn hand_over_before_restart(cx: &Context) -> anyhow::Result<()> {
    let Ok(members) = cluster_members(cx) else { return Ok(()) };
    let me = &cx.node().name;
    let Some(leader) = members.iter().find(|m| m.is_leader() && &m.name == me) else { return Ok(()) };
    if !members.iter().any(|m| !m.is_leader() && m.is_healthy()) {
        crate::ui::info(&format!("{me} leads and no replica runs: Patroni restarts without a switchover"));
        return Ok(());
    }
    crate::ui::info(&format!("switching over from {me} before its Patroni restarts"));
    switchover(cx, leader, u64::from(cx.site.patroni.ttl) * 10 + 120)
}
