//! patroni.yml: scope, name, REST API, DCS, bootstrap (initdb with checksums and --waldir,
//! pg_hba that lets members replicate from the first start), data dir, authentication.

use std::path::PathBuf;

use crate::config::{DcsKind, Role};
use crate::context::Context;
use crate::dcs::{self, q};
use crate::profile::Profile;

pub const CONFIG: &str = "/etc/patroni/patroni.yml";

/// PostgreSQL's data directory and, with separate disks, its WAL directory.
pub fn dirs(cx: &Context) -> (PathBuf, Option<PathBuf>) {
    match &cx.site.disks {
        Some(_) => {
            let d = crate::phases::disks::postgres_dirs(cx);
            (d[0].clone(), Some(d[1].clone()))
        }
        None => (
            PathBuf::from(Profile::expand(&cx.profile.postgres.data_dir, cx.postgres_version()))
                .join(&cx.site.cluster.name),
            None,
        ),
    }
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

fn list(items: &[String], indent: &str) -> String {
    items.iter().map(|i| format!("{indent}- {i}\n")).collect()
}

/// The whole file. It holds passwords: written 0600, owned by postgres.
pub fn config(cx: &Context) -> anyhow::Result<String> {
    let site = &cx.site;
    let p = &site.patroni;
    let secrets = cx.secrets.as_ref().ok_or_else(|| {
        crate::error::bad_input(format!(
            "Patroni needs the secrets file {} (passwords): write one with `hanode secrets generate`",
            cx.secrets_path.display()
        ))
    })?;
    let me = dcs::url_host(cx.node().address);
    let (data_dir, wal_dir) = dirs(cx);
    let mut o = String::from("# Written by hanode from the site file; edit that, not this.\n");
    o += &format!("scope: {}\nname: {}\n\n", q(&site.cluster.name), q(&cx.node().name));
    let tls = site.tls.enabled;
    let ca = q(crate::tls::CA);
    let cert = q(&crate::tls::cert_path(crate::units::DaemonKind::Patroni).display().to_string());
    let key = q(&crate::tls::key_path(crate::units::DaemonKind::Patroni).display().to_string());
    o += &format!(
        "restapi:\n  listen: {}\n  connect_address: {}\n",
        q(&format!("{me}:{}", p.rest_api_port)),
        q(&format!("{me}:{}", p.rest_api_port))
    );
    if tls {
        // HTTPS; the calls that change something need a certificate of the cluster CA and the
        // password, reads only TLS.
        o += &format!("  certfile: {cert}\n  keyfile: {key}\n  cafile: {ca}\n  verify_client: \"optional\"\n");
    }
    let rest_pw = secrets.rest_api_password.as_ref().ok_or_else(|| {
        crate::error::bad_input(format!(
            "{}: [patroni] rest_api_password is missing: Patroni's REST API must not accept changes without it (`hanode secrets generate` writes one)",
            secrets.path.display()
        ))
    })?;
    o += &format!("  authentication:\n    username: \"patroni\"\n    password: {}\n", q(rest_pw.expose()));
    o += "\n";
    if tls {
        // patronictl on this node, and Patroni's own requests to its peers.
        o += &format!("ctl:\n  insecure: false\n  cacert: {ca}\n  certfile: {cert}\n  keyfile: {key}\n\n");
    }
    let hosts: Vec<String> = dcs::etcd_hosts(site).iter().map(|h| q(h)).collect();
    let mut etcd_tls = if tls {
        format!("  protocol: \"https\"\n  cacert: {ca}\n  cert: {cert}\n  key: {key}\n")
    } else {
        String::new()
    };
    if crate::etcd_auth::enabled(site) {
        let login = crate::etcd_auth::patroni(cx)?;
        etcd_tls += &format!("  username: {}\n  password: {}\n", q(&login.user), q(login.password.expose()));
    }
    match site.dcs.kind {
        DcsKind::Etcd if dcs::etcd_v2(site) => {
            o += &format!(
                "# vip-manager 1.x reads etcd's v2 API, so Patroni keeps its keys there.\netcd:\n  hosts: [{}]\n{etcd_tls}\n",
                hosts.join(", ")
            )
        }
        DcsKind::Etcd => o += &format!("etcd3:\n  hosts: [{}]\n{etcd_tls}\n", hosts.join(", ")),
        DcsKind::Consul => {
            o += &format!(
                "consul:\n  host: {}\n  dc: {}\n  register_service: true\n",
                q(&format!("127.0.0.1:{}", site.dcs.client_port)),
                q(&dcs::datacenter(site))
            );
            if tls {
                o += &format!("  scheme: \"https\"\n  verify: true\n  cacert: {ca}\n  cert: {cert}\n  key: {key}\n");
            }
            // Its own token, with no more than it needs (consul_acl), not the management token.
            o += &format!("  token: {}\n", q(crate::consul_acl::patroni_token(cx)?.expose()));
            o += "\n";
        }
    }
    let hba = hba(cx);
    let hba_q: Vec<String> = hba.iter().map(|h| q(h)).collect();
    o += "bootstrap:\n  dcs:\n";
    o += &format!("    ttl: {}\n    loop_wait: {}\n    retry_timeout: {}\n", p.ttl, p.loop_wait, p.retry_timeout);
    o += &format!(
        "    maximum_lag_on_failover: {}\n    synchronous_mode: {}\n",
        p.maximum_lag_on_failover, p.synchronous_mode
    );
    o += "    postgresql:\n      use_pg_rewind: true\n      use_slots: true\n      parameters:\n";
    for (k, v) in [
        ("wal_level", "replica"),
        ("hot_standby", "on"),
        ("wal_log_hints", "on"),
        ("max_wal_senders", "10"),
        ("max_replication_slots", "10"),
        ("wal_keep_size", "256MB"),
    ] {
        o += &format!("        {k}: {}\n", q(v));
    }
    o += "  initdb:\n    - encoding: \"UTF8\"\n    - data-checksums\n";
    // Patroni 3.0 (Debian 12's package) requires bootstrap.pg_hba; later versions take it too.
    // postgresql.pg_hba below replaces pg_hba.conf at every start, so this list is the same.
    if let Some(w) = &wal_dir {
        o += &format!("    - waldir: {}\n", q(&w.display().to_string()));
    }
    o += "  pg_hba:\n";
    o += &list(&hba_q, "    ");
    o += "\npostgresql:\n";
    // Every address, the VIP among them (it comes and goes); pg_hba decides who gets in.
    o += &format!("  listen: {}\n", q(&format!("*:{}", p.postgres_port)));
    o += &format!("  connect_address: {}\n", q(&format!("{me}:{}", p.postgres_port)));
    o += &format!("  data_dir: {}\n  bin_dir: {}\n", q(&data_dir.display().to_string()), q(&bin_dir(cx)));
    o += &format!("  pgpass: {}\n", q(&format!("{}/.pgpass_patroni", cx.profile.postgres.home)));
    if let Some(w) = &wal_dir {
        o += &format!("  basebackup:\n    - waldir: {}\n", q(&w.display().to_string()));
    }
    // Members connect to each other over TLS and check that the other side's certificate
    // comes from the cluster CA.
    let verify = if tls { format!("      sslmode: \"verify-ca\"\n      sslrootcert: {ca}\n") } else { String::new() };
    o += "  authentication:\n";
    let mut users = vec![
        ("superuser", "postgres", &secrets.superuser_password),
        ("replication", "replicator", &secrets.replication_password),
    ];
    if let Some(pw) = &secrets.rewind_password {
        users.push(("rewind", "rewinder", pw));
    }
    for (section, user, pw) in users {
        o += &format!("    {section}:\n      username: {}\n      password: {}\n{verify}", q(user), q(pw.expose()));
    }
    o += "  parameters:\n    unix_socket_directories: \"/var/run/postgresql\"\n    password_encryption: \"scram-sha-256\"\n";
    if tls {
        o += &format!("    ssl: \"on\"\n    ssl_cert_file: {cert}\n    ssl_key_file: {key}\n    ssl_ca_file: {ca}\n");
    }
    o += "  pg_hba:\n";
    o += &list(&hba_q, "    ");
    o += &format!("\nwatchdog:\n  mode: {}\n\n", q(&p.watchdog));
    o += "tags:\n  nofailover: false\n  noloadbalance: false\n  clonefrom: false\n  nosync: false\n";
    Ok(o)
}

/// pg_hba.conf, from the very first start: the local superuser by peer; over the network only
/// scram-sha-256, and with TLS only over TLS (`hostssl`). The superuser, replication and rewind
/// come from the members (and the VIP, the leader's own second address) and loopback only;
/// other roles from the VIP's subnet.
pub fn hba(cx: &Context) -> Vec<String> {
    let site = &cx.site;
    let host = if site.tls.enabled { "hostssl" } else { "host" };
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
    let mut hba = vec!["local all postgres peer".to_string(), "local all all scram-sha-256".to_string()];
    for n in &trusted {
        hba.push(format!("{host} replication replicator {n} scram-sha-256"));
        hba.push(format!("{host} all all {n} scram-sha-256"));
    }
    if let Some(v) = &site.vip {
        // The superuser and Patroni's own roles (rewinder may read any file of the data
        // directory) stay with the members.
        hba.push(format!("host all postgres,replicator,rewinder {}/{} reject", v.address, v.prefix));
        hba.push(format!("{host} all all {}/{} scram-sha-256", v.address, v.prefix));
    }
    hba
}
