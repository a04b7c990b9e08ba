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
    let members: Vec<_> = site.cluster.members.iter().filter(|m| m.role == Role::Postgres).collect();
    let mut o = String::from("# Written by hanode from the site file; edit that, not this.\n");
    o += &format!("scope: {}\nname: {}\n\n", q(&site.cluster.name), q(&cx.node().name));
    o += &format!(
        "restapi:\n  listen: {}\n  connect_address: {}\n",
        q(&format!("{me}:{}", p.rest_api_port)),
        q(&format!("{me}:{}", p.rest_api_port))
    );
    if let Some(pw) = &secrets.rest_api_password {
        o += &format!("  authentication:\n    username: \"patroni\"\n    password: {}\n", q(pw.expose()));
    }
    o += "\n";
    let hosts: Vec<String> = dcs::etcd_hosts(site).iter().map(|h| q(h)).collect();
    match site.dcs.kind {
        DcsKind::Etcd if dcs::etcd_v2(site) => {
            o += &format!(
                "# vip-manager 1.x reads etcd's v2 API, so Patroni keeps its keys there.\netcd:\n  hosts: [{}]\n\n",
                hosts.join(", ")
            )
        }
        DcsKind::Etcd => o += &format!("etcd3:\n  hosts: [{}]\n\n", hosts.join(", ")),
        DcsKind::Consul => {
            o += &format!(
                "consul:\n  host: {}\n  dc: {}\n  register_service: true\n",
                q(&format!("127.0.0.1:{}", site.dcs.client_port)),
                q(&dcs::datacenter(site))
            );
            if let Some(t) = &secrets.consul_token {
                o += &format!("  token: {}\n", q(t.expose()));
            }
            o += "\n";
        }
    }
    // From the very first start: local superuser by peer, replication and rewind from members.
    let mut hba = vec!["local all postgres peer".to_string(), "local all all scram-sha-256".to_string()];
    for m in &members {
        let net = if m.address.is_ipv4() { format!("{}/32", m.address) } else { format!("{}/128", m.address) };
        hba.push(format!("host replication replicator {net} scram-sha-256"));
        hba.push(format!("host all all {net} scram-sha-256"));
    }
    // Patroni itself opens replication connections to its own PostgreSQL (WAL positions when
    // choosing the healthiest node, synchronous mode).
    hba.push("host replication replicator 127.0.0.1/32 scram-sha-256".into());
    hba.push("host replication replicator ::1/128 scram-sha-256".into());
    hba.push("host all all 127.0.0.1/32 scram-sha-256".into());
    // Patroni 3.0 connects to its own PostgreSQL as `localhost`, which may resolve to ::1.
    hba.push("host all all ::1/128 scram-sha-256".into());
    if let Some(v) = &site.vip {
        hba.push(format!("host all all {}/{} scram-sha-256", v.address, v.prefix));
    }
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
    o += "  authentication:\n";
    o += &format!(
        "    superuser:\n      username: \"postgres\"\n      password: {}\n",
        q(secrets.superuser_password.expose())
    );
    o += &format!(
        "    replication:\n      username: \"replicator\"\n      password: {}\n",
        q(secrets.replication_password.expose())
    );
    if let Some(pw) = &secrets.rewind_password {
        o += &format!("    rewind:\n      username: \"rewinder\"\n      password: {}\n", q(pw.expose()));
    }
    o += "  parameters:\n    unix_socket_directories: \"/var/run/postgresql\"\n    password_encryption: \"scram-sha-256\"\n";
    o += "  pg_hba:\n";
    o += &list(&hba_q, "    ");
    o += &format!("\nwatchdog:\n  mode: {}\n\n", q(&p.watchdog));
    o += "tags:\n  nofailover: false\n  noloadbalance: false\n  clonefrom: false\n  nosync: false\n";
    Ok(o)
}
