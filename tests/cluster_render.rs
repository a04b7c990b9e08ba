//! What the cluster phases write: Consul (no binary can be had here, so this is where Consul
//! is tested: against golden files and the keys Consul documents), etcd, Patroni and
//! vip-manager configs, and units that `systemd-analyze verify` accepts.
//! HANODE_UPDATE_GOLDEN=1 rewrites the golden files (review the diff).

mod common;

use std::path::Path;
use std::sync::Arc;

use hanode::context::{Context, Options};
use hanode::exec::Recording;

const SITE: &str = r#"[cluster]
name = "sirius"
postgres_version = 16
members = [
  { name = "consul1", address = "192.168.10.21", role = "dcs" },
  { name = "consul2", address = "192.168.10.22", role = "dcs" },
  { name = "consul3", address = "192.168.10.23", role = "dcs" },
  { name = "pg1", address = "192.168.10.31" },
  { name = "pg2", address = "192.168.10.32" },
]
[vip]
address = "192.168.10.30/24"
interface = "eth0"
[dcs]
type = "consul"
[disks]
data = { device = "/dev/sdb" }
wal = { device = "/dev/sdc" }
[patroni]
ttl = 30
"#;

const SECRETS: &str = r#"[postgres]
superuser_password = "superuser-secret-1"
replication_password = "replication-secret-1"
[patroni]
rest_api_password = "rest-api-secret-1"
[consul]
gossip_key = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
acl_token = "3f6c1c2e-0000-4000-8000-0000000000a1"
patroni_token = "3f6c1c2e-0000-4000-8000-0000000000b2"
vip_manager_token = "3f6c1c2e-0000-4000-8000-0000000000c3"
[etcd]
root_password = "etcd-root-secret-1"
patroni_password = "etcd-patroni-secret-1"
vip_manager_password = "etcd-vip-secret-1"
[users]
app = "app-secret-1"
"#;

fn context(fixture: &str, site: &str, node: &str, root: &Path) -> Context {
    let _ = fixture;
    let s = common::write(root, "site.toml", site, 0o644);
    let p = common::write(root, "secrets.toml", SECRETS, 0o600);
    let opts =
        Options { root: root.into(), config: Some(s), secrets: Some(p), node: Some(node.into()), ..Options::default() };
    Context::load(&opts, Box::new(Arc::new(Recording::default()))).unwrap()
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var("HANODE_UPDATE_GOLDEN").is_ok() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{name} differs from its golden file (HANODE_UPDATE_GOLDEN=1 to accept):\n{}",
        hanode::files::unified_diff(&expected, actual, name)
    );
}

/// The agent configuration keys Consul documents (developer.hashicorp.com/consul/docs/
/// reference/agent/configuration-file: general, join, ACL and UI parameters).
const CONSUL_KEYS: &[&str] = &[
    "node_name",
    "datacenter",
    "data_dir",
    "bind_addr",
    "client_addr",
    "retry_join",
    "encrypt",
    "server",
    "bootstrap_expect",
    "leave_on_terminate",
    "acl",
    "acl.enabled",
    "acl.default_policy",
    "acl.down_policy",
    "acl.enable_token_persistence",
    "acl.tokens",
    "acl.tokens.agent",
    "acl.tokens.initial_management",
    "ui_config",
    "ui_config.enabled",
    "autopilot",
    "autopilot.cleanup_dead_servers",
    "tls",
    "tls.defaults",
    "tls.defaults.ca_file",
    "tls.defaults.cert_file",
    "tls.defaults.key_file",
    "tls.defaults.verify_incoming",
    "tls.defaults.verify_outgoing",
    "tls.internal_rpc",
    "tls.internal_rpc.verify_server_hostname",
    "ports",
    "ports.http",
    "ports.https",
    "enable_agent_tls_for_checks",
];

fn keys(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    if let Some(map) = v.as_object() {
        for (k, v) in map {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            out.push(key.clone());
            keys(v, &key, out);
        }
    }
}

#[test]
fn consul_server_and_client_configs() {
    let root = common::fixture_root("redos-8");
    for (node, server) in [("consul1", true), ("pg1", false)] {
        let cx = context("redos-8", SITE, node, root.path());
        let text = hanode::dcs::consul_config(&cx).unwrap();
        golden(&format!("consul-{node}.json"), &text);
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut found = Vec::new();
        keys(&doc, "", &mut found);
        for k in &found {
            assert!(CONSUL_KEYS.contains(&k.as_str()), "{node}: `{k}` is not a key Consul documents");
        }
        assert_eq!(doc["server"], server);
        assert_eq!(doc["datacenter"], "dc-192-168-10", "derived from the servers' common /24");
        assert_eq!(doc["encrypt"], "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=");
        assert_eq!(doc["acl"]["default_policy"], "deny");
        assert_eq!(doc["acl"]["down_policy"], "extend-cache");
        // TLS both ways on RPC and the API, servers checked by name; the API is HTTPS only.
        assert_eq!(doc["tls"]["defaults"]["verify_incoming"], true);
        assert_eq!(doc["tls"]["defaults"]["verify_outgoing"], true);
        assert_eq!(doc["tls"]["internal_rpc"]["verify_server_hostname"], true);
        assert_eq!(doc["tls"]["defaults"]["key_file"], "/etc/hanode/tls/consul.key");
        assert_eq!(
            (doc["ports"]["http"].clone(), doc["ports"]["https"].clone()),
            (serde_json::json!(-1), serde_json::json!(8500))
        );
        let joins: Vec<&str> = doc["retry_join"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(!joins.contains(&cx.node().address.to_string().as_str()), "a node joins others, not itself");
        if server {
            assert_eq!(doc["bootstrap_expect"], 3);
            assert_eq!(joins, vec!["192.168.10.22", "192.168.10.23"]);
            assert_eq!(doc["acl"]["tokens"]["initial_management"], "3f6c1c2e-0000-4000-8000-0000000000a1");
            // A replaced server's dead predecessor leaves Raft when the new one joins.
            assert_eq!(doc["autopilot"]["cleanup_dead_servers"], true);
        } else {
            assert!(doc.get("bootstrap_expect").is_none() && doc.get("autopilot").is_none());
            assert_eq!(joins.len(), 3);
        }
    }
}

#[test]
fn patroni_and_vip_manager_with_consul() {
    let root = common::fixture_root("redos-8");
    let cx = context("redos-8", SITE, "pg1", root.path());
    let patroni = hanode::patroni::config(&cx).unwrap();
    golden("patroni-consul-pg1.yml", &patroni);
    for want in [
        "consul:\n  host: \"127.0.0.1:8500\"\n  dc: dc-192-168-10",
        "  scheme: https\n  verify: true\n  cacert: /etc/hanode/tls/ca.crt",
        // Patroni's own token, not the management token.
        "  token: \"3f6c1c2e-0000-4000-8000-0000000000b2\"",
        "bin_dir: /usr/pgsql-16/bin",
        "data_dir: /pgdata/data",
        "    - waldir: /pgwal/wal",
        "    - data-checksums",
        "\"hostssl replication replicator 192.168.10.32/32 scram-sha-256\"",
        "\"local all postgres peer\"",
    ] {
        assert!(patroni.contains(want), "patroni.yml lacks {want:?}:\n{patroni}");
    }
    let vip = hanode::vip::config(&cx, "eth0").unwrap();
    golden("vip-manager-consul-pg1.yml", &vip);
    assert!(
        vip.contains("dcs-type: consul")
            && vip.contains("trigger-key: service/sirius/leader")
            && vip.contains("consul-token: \"3f6c1c2e-0000-4000-8000-0000000000c3\"")
            && vip.contains("dcs-endpoints: https://127.0.0.1:8500")
    );
    let unit = planned_units(&cx)["vip-manager.service"].clone();
    assert!(unit.contains("\nEnvironment=CONSUL_CACERT=/etc/hanode/tls/ca.crt\n"), "{unit}");
    assert!(unit.contains("\nEnvironment=CONSUL_CLIENT_KEY=/etc/hanode/tls/vip-manager.key\n"), "{unit}");
    // A Consul server's certificate names server.<datacenter>.consul (verify_server_hostname).
    let server = context("redos-8", SITE, "consul1", root.path());
    assert!(hanode::tls::names(&server).dns.contains("server.dc-192-168-10.consul"));
    assert!(!hanode::tls::names(&cx).dns.iter().any(|d| d.starts_with("server.")));
}

#[test]
fn etcd_members_and_the_v2_switch() {
    let root = common::fixture_root("debian-12");
    let site = "[cluster]\nname = \"main\"\nmembers = [{ name = \"pg1\", address = \"10.0.0.11\" }, { name = \"pg2\", address = \"10.0.0.12\" }, { name = \"pg3\", address = \"10.0.0.13\" }]\n[vip]\naddress = \"10.0.0.100/24\"\n";
    let v1 = format!(
        "{site}[artifacts.vip-manager]\nversion = \"1.0.2\"\nurl = \"https://example.org/vip-manager_1.0.2_Linux_x86_64.tar.gz\"\nsha256 = \"{}\"\n",
        "a".repeat(64)
    );
    let cx = context("debian-12", &v1, "pg2", root.path());
    let etcd = hanode::dcs::etcd_config(&cx, "new").to_yaml();
    golden("etcd-pg2.yml", &etcd);
    // Read back as etcd reads it: every option hanode relies on is in the file, since etcd
    // takes the YAML zero value for what a config file omits.
    let file: serde_norway::Value = serde_norway::from_str(&etcd).unwrap();
    let key = |k: &str| file.get(k).unwrap_or_else(|| panic!("{k} missing from etcd.yml:\n{etcd}")).clone();
    assert_eq!(key("enable-grpc-gateway"), serde_norway::Value::Bool(true), "Patroni's etcd3 client needs the gateway");
    assert_eq!(key("auto-compaction-mode").as_str(), Some("periodic"));
    assert_eq!(
        key("initial-cluster").as_str(),
        Some("pg1=https://10.0.0.11:2380,pg2=https://10.0.0.12:2380,pg3=https://10.0.0.13:2380")
    );
    assert_eq!(key("enable-v2"), serde_norway::Value::Bool(true), "vip-manager 1.x needs the v2 API");
    let typed: hanode::dcs::EtcdConfig = serde_norway::from_str(&etcd).unwrap();
    assert_eq!(typed, hanode::dcs::etcd_config(&cx, "new"));
    let patroni = hanode::patroni::settings(&cx).unwrap();
    let etcd = patroni.etcd.expect("Patroni on etcd's v2 API");
    assert_eq!(etcd.hosts, ["10.0.0.11:2379", "10.0.0.12:2379", "10.0.0.13:2379"]);
    assert_eq!(etcd.protocol.as_deref(), Some("https"));
    assert!(patroni.etcd3.is_none());
    let v2 = v1.replace("1.0.2", "2.8.0");
    let cx = context("debian-12", &v2, "pg2", root.path());
    let v3 = hanode::dcs::etcd_config(&cx, "new");
    assert!(!v3.enable_v2 && v3.enable_grpc_gateway);
    assert!(hanode::patroni::config(&cx).unwrap().contains("\netcd3:\n"));
    assert!(hanode::vip::config(&cx, "eth0").unwrap().contains("dcs-type: etcd3"));
}

#[test]
fn rendered_units_pass_systemd_analyze_verify() {
    let root = common::fixture_root("debian-12");
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for b in ["etcd", "patroni", "vip-manager", "consul"] {
        common::write(&bin, b, "#!/bin/sh\n", 0o755);
    }
    let units = root.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    let vars = |program: &str| {
        use hanode::units::Fill::*;
        vec![
            ("cluster", Text("main".into())),
            ("program", Program(bin.join(program))),
            ("config", Arg("/etc/hanode/x.yml".into())),
            ("config_arg", Arg("--config=/etc/hanode/x.yml".into())),
            ("config_hash", Text("0".repeat(64))),
            ("data_dir", Paths(vec!["/var/lib/etcd/main".into()])),
            ("write_paths", Paths(vec!["/pgdata".into(), "/var/run/postgresql".into()])),
            ("dcs_unit", Text("etcd.service".into())),
            ("pg_user", Text("root".into())),
            ("pg_group", Text("root".into())),
            ("vip", Text("10.0.0.100".into())),
            ("vip_cidr", Arg("10.0.0.100/24".into())),
            ("interface", Arg("eth0".into())),
            ("environment", Env(vec![("CONSUL_CACERT", "/etc/hanode/tls/ca.crt".into())])),
        ]
    };
    let mut names = Vec::new();
    for (name, tpl) in [
        ("etcd.service", hanode::units::ETCD),
        ("patroni.service", hanode::units::PATRONI),
        ("vip-manager.service", hanode::units::VIP_MANAGER),
        ("consul.service", hanode::units::CONSUL),
    ] {
        let text = hanode::units::render(tpl, &vars(name.trim_end_matches(".service"))).unwrap();
        assert!(!text.contains("{{"), "{name}");
        std::fs::write(units.join(name), text).unwrap();
        names.push(units.join(name).display().to_string());
    }
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(&names)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    // Users like etcd need not exist on this machine; anything else is a finding.
    let findings: Vec<&str> = err
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Failed to resolve user") && !l.contains("unknown user"))
        .collect();
    assert!(out.status.success() || findings.is_empty(), "systemd-analyze verify: {err}");
    assert!(findings.is_empty(), "systemd-analyze verify: {}", findings.join("\n"));
    let vip = std::fs::read_to_string(units.join("vip-manager.service")).unwrap();
    assert!(
        vip.contains("KillSignal=SIGINT")
            && vip.contains("ExecStopPost=-/usr/sbin/ip addr del 10.0.0.100/24 dev eth0")
            && vip.contains("User=vip-manager")
    );
    assert!(std::fs::read_to_string(units.join("patroni.service")).unwrap().contains("KillMode=process"));
}

/// The unit files the units phase would write, by file name.
fn planned_units(cx: &Context) -> std::collections::BTreeMap<String, String> {
    let all = hanode::phases::all();
    let units = all.iter().find(|p| p.name == "units").unwrap();
    let mut out = std::collections::BTreeMap::new();
    for step in units.steps(cx).unwrap() {
        for c in step.plan(cx).unwrap() {
            if let hanode::engine::Action::WriteFile(spec) = c.action {
                let name = spec.path.file_name().unwrap().to_string_lossy().into_owned();
                out.insert(name, String::from_utf8(spec.contents).unwrap());
            }
        }
    }
    out
}

#[test]
fn patroni_from_the_distribution_package_runs_the_packaged_program() {
    let root = common::fixture_root("debian-12");
    let site = "[cluster]\nname = \"main\"\nmembers = [{ name = \"pg1\", address = \"10.0.0.11\" }]\n[patroni]\ninstall = \"package\"\n";
    let cx = context("debian-12", site, "pg1", root.path());
    let units = planned_units(&cx);
    assert!(
        units["patroni.service"].contains("\nExecStart=/usr/bin/patroni /etc/patroni/patroni.yml\n"),
        "{}",
        units["patroni.service"]
    );
    let pip = context("debian-12", &site.replace("install = \"package\"", "install = \"pip\""), "pg1", root.path());
    assert!(
        planned_units(&pip)["patroni.service"]
            .contains("\nExecStart=/usr/local/bin/patroni /etc/patroni/patroni.yml\n")
    );
    // Patroni 3.0's validator (Debian 12's package) wants bootstrap.pg_hba: the same rules.
    let yml: serde_norway::Value = serde_norway::from_str(&hanode::patroni::config(&cx).unwrap()).unwrap();
    assert_eq!(yml["bootstrap"]["pg_hba"], yml["postgresql"]["pg_hba"]);
    assert!(yml["bootstrap"]["pg_hba"].as_sequence().is_some_and(|s| s.len() > 4));
}

#[test]
fn tls_on_every_wire_unless_the_site_turns_it_off() {
    let root = common::fixture_root("debian-12");
    let site = "[cluster]\nname = \"main\"\nmembers = [{ name = \"pg1\", address = \"10.0.0.11\" }, { name = \"pg2\", address = \"10.0.0.12\" }]\n[vip]\naddress = \"10.0.0.100/24\"\n";
    let cx = context("debian-12", site, "pg1", root.path());
    let yml: serde_norway::Value = serde_norway::from_str(&hanode::patroni::config(&cx).unwrap()).unwrap();
    let s = |v: &serde_norway::Value| v.as_str().unwrap_or_default().to_string();
    assert_eq!(s(&yml["restapi"]["certfile"]), "/etc/hanode/tls/patroni.crt");
    assert_eq!(s(&yml["restapi"]["verify_client"]), "optional");
    assert_eq!(s(&yml["restapi"]["authentication"]["username"]), "patroni");
    assert_eq!(s(&yml["ctl"]["cacert"]), hanode::tls::CA);
    assert_eq!(s(&yml["etcd3"]["protocol"]), "https");
    // etcd's authentication: Patroni logs in as its own user.
    assert_eq!(
        (s(&yml["etcd3"]["username"]), s(&yml["etcd3"]["password"])),
        ("patroni".into(), "etcd-patroni-secret-1".into())
    );
    assert_eq!(s(&yml["postgresql"]["parameters"]["ssl"]), "on");
    assert_eq!(s(&yml["postgresql"]["parameters"]["password_encryption"]), "scram-sha-256");
    for user in ["superuser", "replication"] {
        assert_eq!(s(&yml["postgresql"]["authentication"][user]["sslmode"]), "verify-ca", "{user}");
    }
    // Over the network: TLS and scram only; the superuser from the members, loopback and the
    // VIP, never from the rest of the VIP's subnet.
    let hba: Vec<String> = yml["postgresql"]["pg_hba"].as_sequence().unwrap().iter().map(s).collect();
    for line in &hba {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[0] {
            "local" => {}
            "hostssl" => assert_eq!(f[4], "scram-sha-256", "{line}"),
            "host" => assert_eq!((f[2], f[4]), ("postgres,replicator,rewinder", "reject"), "{line}"),
            _ => panic!("unexpected pg_hba line {line}"),
        }
        assert!(!line.contains("trust") && !line.contains("md5"), "{line}");
    }
    let reject = hba
        .iter()
        .position(|l| l == "host all postgres,replicator,rewinder 10.0.0.100/24 reject")
        .expect("the superuser and Patroni's roles rejected from the subnet");
    let subnet = hba.iter().position(|l| l == "hostssl all all 10.0.0.100/24 scram-sha-256").unwrap();
    assert!(reject < subnet);
    let etcd: serde_norway::Value = serde_norway::from_str(&hanode::dcs::etcd_config(&cx, "new").to_yaml()).unwrap();
    for side in ["client-transport-security", "peer-transport-security"] {
        assert_eq!(etcd[side]["client-cert-auth"], serde_norway::Value::Bool(true), "{side}");
        assert_eq!(s(&etcd[side]["trusted-ca-file"]), hanode::tls::CA);
    }
    assert!(s(&etcd["listen-client-urls"]).split(',').all(|u| u.starts_with("https://")));
    let vip: serde_norway::Value = serde_norway::from_str(&hanode::vip::config(&cx, "eth0").unwrap()).unwrap();
    assert_eq!(s(&vip["etcd-ca-file"]), hanode::tls::CA);
    assert_eq!(s(&vip["etcd-key-file"]), "/etc/hanode/tls/vip-manager.key");
    assert_eq!(s(&vip["etcd-cert-file"]), "/etc/hanode/tls/vip-manager.crt");
    assert!(s(&vip["dcs-endpoints"]).starts_with("https://"));
    assert_eq!(s(&vip["etcd-user"]), "vip-manager");

    // Off: plain http, host lines, no certificates anywhere.
    let off = context("debian-12", &format!("{site}[tls]\nenabled = false\n"), "pg1", root.path());
    let patroni = hanode::patroni::config(&off).unwrap();
    assert!(
        !patroni.contains("hostssl") && !patroni.contains("/etc/hanode/tls") && !patroni.contains("ctl:"),
        "{patroni}"
    );
    assert!(hanode::dcs::etcd_config(&off, "new").client_transport_security.is_none());
    assert!(hanode::vip::config(&off, "eth0").unwrap().contains("dcs-endpoints: http://10.0.0.11:2379,"));
    assert!(
        !hanode::patroni::config(&off).unwrap().contains("username: patroni\n  password: etcd-"),
        "etcd logins without TLS"
    );
}

/// `[postgresql] parameters` go to Patroni's dynamic configuration (bootstrap.dcs for a new
/// cluster; the units phase patches a running one), after hanode's own, which they override;
/// a number or a boolean arrives as the text PostgreSQL reads.
#[test]
fn site_parameters_join_the_dynamic_configuration() {
    let root = common::fixture_root("debian-12");
    let site = "[cluster]\nname = \"main\"\nmembers = [{ name = \"pg1\", address = \"10.0.0.11\" }]\n[postgresql]\nparameters = { max_wal_senders = 20, work_mem = \"8MB\", jit = false, wal_level = \"logical\", \"pg_stat_statements.max\" = 5000 }\n";
    let cx = context("debian-12", site, "pg1", root.path());
    let dynamic = serde_json::to_value(hanode::patroni::dynamic(&cx)).unwrap();
    let p = &dynamic["postgresql"]["parameters"];
    assert_eq!(p["max_wal_senders"], "20", "the site's value replaces hanode's 10");
    assert_eq!((&p["work_mem"], &p["jit"], &p["wal_level"]), (&"8MB".into(), &"off".into(), &"logical".into()));
    assert_eq!(p["pg_stat_statements.max"], "5000");
    assert_eq!(p["wal_keep_size"], "256MB", "hanode's own stay");
    let yml: serde_norway::Value = serde_norway::from_str(&hanode::patroni::config(&cx).unwrap()).unwrap();
    let boot = &yml["bootstrap"]["dcs"]["postgresql"]["parameters"];
    assert_eq!(boot["work_mem"].as_str(), Some("8MB"), "a new cluster starts with them");
    // Nothing to change when the DCS holds just that; the one value that differs otherwise.
    assert!(hanode::dynamic_config::differences(&dynamic, &dynamic).is_empty());
    let mut running = dynamic.clone();
    running["postgresql"]["parameters"]["work_mem"] = "4MB".into();
    let d = hanode::dynamic_config::differences(&running, &dynamic);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].name(), "postgresql.parameters.work_mem");
}

/// A member added to the site file: a running member (it has data) keeps the initial-cluster
/// its file says, which etcd no longer reads, so its configuration, and its etcd, stay as they
/// are; a member without data gets every member.
#[test]
fn a_grown_site_restarts_no_running_etcd() {
    let root = common::fixture_root("debian-12");
    let three = "[cluster]\nname = \"main\"\nmembers = [{ name = \"pg1\", address = \"10.0.0.11\" }, { name = \"pg2\", address = \"10.0.0.12\" }, { name = \"pg3\", address = \"10.0.0.13\" }]\n";
    let before = hanode::dcs::etcd_config_text(&context("debian-12", three, "pg1", root.path())).unwrap();
    std::fs::create_dir_all(root.path().join("etc/hanode")).unwrap();
    std::fs::write(root.path().join("etc/hanode/etcd.yml"), &before).unwrap();
    let four = three.replace("}]\n", "}, { name = \"pg4\", address = \"10.0.0.14\" }]\n");
    let fresh = hanode::dcs::etcd_config_text(&context("debian-12", &four, "pg1", root.path())).unwrap();
    assert!(fresh.contains("pg4=https://10.0.0.14:2380"), "without data, every member:\n{fresh}");
    std::fs::create_dir_all(root.path().join("var/lib/etcd/main/member")).unwrap();
    let running = hanode::dcs::etcd_config_text(&context("debian-12", &four, "pg1", root.path())).unwrap();
    assert_eq!(running, before, "a member with data keeps what it was written with");
}

/// `[postgresql] clients`: each network gets the superuser and Patroni's roles turned away
/// first, then TLS and scram-sha-256 for the databases and users it names; without TLS, `host`.
#[test]
fn client_networks_reach_only_what_the_site_names() {
    let root = common::fixture_root("debian-12");
    let site = "[cluster]\nname = \"main\"\nmembers = [{ name = \"pg1\", address = \"10.0.0.11\" }]\n[postgresql]\nusers = [\"app\"]\ndatabases = [{ name = \"app\", owner = \"app\" }]\nclients = [{ network = \"10.20.0.0/16\", databases = [\"app\"], users = [\"app\"] }, { network = \"fd00:1::/64\" }]\n";
    let hba = |site: &str| -> Vec<String> {
        let cx = context("debian-12", site, "pg1", root.path());
        let yml: serde_norway::Value = serde_norway::from_str(&hanode::patroni::config(&cx).unwrap()).unwrap();
        yml["postgresql"]["pg_hba"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    let on = hba(site);
    let at = |l: &str| on.iter().position(|x| x == l).unwrap_or_else(|| panic!("no `{l}` in {on:#?}"));
    assert!(
        at("host all postgres,replicator,rewinder 10.20.0.0/16 reject")
            < at("hostssl app app 10.20.0.0/16 scram-sha-256")
    );
    assert!(
        at("host all postgres,replicator,rewinder fd00:1::/64 reject")
            < at("hostssl all all fd00:1::/64 scram-sha-256")
    );
    assert!(
        at("hostssl all all 10.0.0.11/32 scram-sha-256")
            < at("host all postgres,replicator,rewinder 10.20.0.0/16 reject")
    );
    let off = hba(&format!("{site}[tls]\nenabled = false\n"));
    assert!(off.contains(&"host app app 10.20.0.0/16 scram-sha-256".to_string()), "{off:#?}");
}

/// The leader creates what is missing, roles before databases; a password that is not the
/// secrets file's is set again; a replica changes nothing. The password itself goes nowhere:
/// psql reads a SCRAM verifier on its standard input.
#[test]
fn roles_and_databases_are_added_never_dropped() {
    use hanode::roles::{Found, changes, verifier, verifies};
    let root = common::fixture_root("debian-12");
    let site = "[cluster]\nname = \"main\"\nmembers = [{ name = \"pg1\", address = \"10.0.0.11\" }]\n[postgresql]\nusers = [\"app\"]\ndatabases = [{ name = \"app\", owner = \"app\" }]\n";
    let cx = context("debian-12", site, "pg1", root.path());
    let summaries = |f: &Found| changes(&cx, f).unwrap().iter().map(|c| c.summary.clone()).collect::<Vec<_>>();
    let empty = Found { replica: Some(false), ..Found::default() };
    assert_eq!(
        summaries(&empty),
        ["create role app (login, password from the secrets file)", "create database app owned by app"]
    );
    let create = changes(&cx, &empty).unwrap().remove(0);
    let hanode::engine::Action::Run(cmd) = &create.action else { panic!("{:?}", create.action) };
    let sql = cmd.stdin.as_ref().unwrap().expose().to_string();
    assert!(!sql.contains("app-secret-1") && !cmd.argv.iter().any(|a| a.contains("app-secret-1")), "{sql}");
    let stored = sql.split('\'').nth(3).unwrap();
    assert!(verifies(stored, "app-secret-1"), "{sql}");
    assert!(sql.starts_with("set log_statement = 'none';") && sql.contains("log_min_error_statement = panic"), "{sql}");
    assert!(sql.contains("create role \"app\" login password 'SCRAM-SHA-256$4096:"), "{sql}");

    let ok = verifier("app-secret-1", b"0123456789abcdef", 4096);
    let mut found = Found { replica: Some(false), databases: ["app".to_string()].into(), ..Found::default() };
    found.roles.insert("app".into(), Some(ok));
    assert!(summaries(&found).is_empty(), "nothing to do");
    found.roles.insert("app".into(), Some(verifier("old-secret-1", b"0123456789abcdef", 4096)));
    assert_eq!(summaries(&found), ["set the password of role app (it is not the secrets file's)"]);
    found.roles.insert("app".into(), None);
    assert_eq!(summaries(&found).len(), 1, "a role without a password gets one");
    assert!(summaries(&Found { replica: Some(true), ..Found::default() }).is_empty(), "the leader's run creates them");
    assert!(changes(&cx, &Found::default()).is_err(), "no answer on recovery is no answer");
}

/// A new pin puts a new program behind the same link in bin_dir: the unit's config hash
/// changes with it, so the daemon restarts onto it; Patroni, which has no pin, is untouched.
#[test]
fn a_new_pin_restarts_the_daemon_onto_it() {
    let root = common::fixture_root("debian-12");
    let site = |v: &str| {
        format!(
            "[cluster]\nname = \"main\"\nmembers = [{{ name = \"pg1\", address = \"10.0.0.11\" }}]\n[artifacts.etcd]\nversion = \"{v}\"\nurl = \"https://example.org/etcd-v{v}-linux-amd64.tar.gz\"\nsha256 = \"{}\"\n",
            "0".repeat(64)
        )
    };
    let a = planned_units(&context("debian-12", &site("3.5.16"), "pg1", root.path()));
    let b = planned_units(&context("debian-12", &site("3.5.17"), "pg1", root.path()));
    use hanode::units::{Verb, verb_for};
    let (old, new) = (&a["etcd.service"], &b["etcd.service"]);
    let first = |u: &str| u.lines().next().unwrap_or_default().to_string();
    assert!(first(old).ends_with("; program 3.5.16") && first(new).ends_with("; program 3.5.17"), "{}", first(new));
    assert_eq!(old.split_once('\n').map(|x| x.1), new.split_once('\n').map(|x| x.1), "the rest is the same");
    // Even a daemon that reloads on a new configuration (Consul) restarts onto a new program;
    // a new configuration alone (another hash, the same pin) keeps the daemon's own verb.
    assert_eq!(verb_for(old, new, Verb::Reload), Verb::Restart);
    let hash = first(old).split("hmac-sha256 ").nth(1).unwrap().split(';').next().unwrap().to_string();
    assert_eq!(verb_for(old, &old.replacen(&hash, "0000", 1), Verb::Reload), Verb::Reload);
    assert_eq!(verb_for(old, &old.replacen("ExecStart=", "ExecStart=/x ", 1), Verb::Reload), Verb::Restart);
    assert_eq!(a["patroni.service"], b["patroni.service"]);
}
