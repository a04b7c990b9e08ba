//! etcd as hanode configures it, for real: Debian's etcd binary (re-packed by
//! scripts/fixtures) started on loopback with the rendered config file, asked through the
//! API Patroni will use: v3 through the gRPC gateway (Patroni's `etcd3`), or v2 (`etcd`, for
//! vip-manager 1.x). hanode's own health check is what asks, with this node's certificate:
//! a client without one, or with one from another CA, is refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hanode::context::{Context, Options};
use hanode::etcd_auth::Api::{V2, V3};
use hanode::exec::Recording;
use hanode::units::{Health, answers_with};

/// The etcd binary of a fixture set: bookworm's 3.4 (`""`) or trixie's 3.5 (`"trixie"`).
fn etcd_binary(dir: &Path, suite: &str) -> PathBuf {
    let fixtures = std::env::var("HANODE_TEST_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixtures"))
        .join(suite);
    let versions = std::fs::read_to_string(fixtures.join("versions")).unwrap_or_else(|_| {
        panic!("no test fixtures in {}: run scripts/fixtures first (scripts/test does)", fixtures.display())
    });
    let v = versions.lines().find_map(|l| l.strip_prefix("etcd=")).unwrap();
    let tarball = fixtures.join(format!("etcd-v{v}-linux-amd64.tar.gz"));
    let ok = Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(dir).status().unwrap().success();
    assert!(ok, "unpacking {}", tarball.display());
    dir.join(format!("etcd-v{v}-linux-amd64/etcd"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Etcd(Child);
impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A client of the cluster: hanode's own, one without a certificate, one from another CA.
struct Clients {
    node: reqwest::blocking::Client,
    no_cert: reqwest::blocking::Client,
    other_ca: reqwest::blocking::Client,
}

/// Starts etcd with hanode's rendered file for a one-member cluster on 127.0.0.1 (TLS with
/// files the tls phase would write, here under `root`; `tls = false`: the site turns it off)
/// and returns it with the health check hanode uses for it.
fn start(root: &Path, vip_manager: &str, suite: &str, tls: bool) -> (Etcd, Health, Clients) {
    let (client, peer) = (free_port(), free_port());
    let site = format!(
        "[cluster]\nname = \"api\"\nmembers = [{{ name = \"pg1\", address = \"127.0.0.1\" }}]\n[vip]\naddress = \"127.0.0.100/8\"\ninterface = \"lo\"\n[dcs]\nclient_port = {client}\npeer_port = {peer}\n[artifacts.vip-manager]\nversion = \"{vip_manager}\"\nurl = \"https://example.org/vip-manager_{vip_manager}_Linux_x86_64.tar.gz\"\nsha256 = \"{}\"\n[tls]\nenabled = {tls}\n",
        "a".repeat(64)
    );
    let s = common::write(root, "site.toml", &site, 0o644);
    let secrets = root.join("secrets.toml");
    hanode::config::secrets::generate(&secrets).unwrap();
    let opts = Options {
        root: root.into(),
        config: Some(s),
        secrets: Some(secrets),
        node: Some("pg1".into()),
        ..Options::default()
    };
    let cx = Context::load(&opts, Box::new(Arc::new(Recording::default()))).unwrap();
    let mut config = hanode::dcs::etcd_config(&cx, "new");
    config.data_dir = root.join("data").display().to_string();
    let ca = hanode::tls::generate_ca().unwrap();
    let (cert, key) = hanode::tls::issue(&ca, &hanode::tls::names(&cx)).unwrap();
    let ca_file = common::write(root, "ca.crt", &ca.cert_pem, 0o644);
    let cert_file = common::write(root, "node.crt", &cert, 0o644);
    let key_file = common::write(root, "node.key", key.expose(), 0o600);
    for side in [&mut config.client_transport_security, &mut config.peer_transport_security] {
        if let Some(t) = side.as_mut() {
            (t.trusted_ca_file, t.cert_file, t.key_file) =
                (ca_file.display().to_string(), cert_file.display().to_string(), key_file.display().to_string());
        }
    }
    let file = common::write(root, "etcd.yml", &config.to_yaml(), 0o600);
    let etcd = etcd_binary(root, suite);
    let log = std::fs::File::create(root.join("etcd.log")).unwrap();
    let child = Command::new(etcd).arg("--config-file").arg(file).stdout(log.try_clone().unwrap()).stderr(log).spawn();
    let child = Etcd(child.unwrap());
    let health =
        hanode::units::daemons(&cx).into_iter().find(|d| d.kind == hanode::units::DaemonKind::Etcd).unwrap().health;
    let node =
        hanode::tls::client(tls.then_some((ca.cert_pem.as_bytes(), cert.as_bytes(), key.expose().as_bytes()))).unwrap();
    let stranger = hanode::tls::generate_ca().unwrap();
    let (s_cert, s_key) = hanode::tls::issue(&stranger, &hanode::tls::names(&cx)).unwrap();
    let other_ca =
        hanode::tls::client(Some((ca.cert_pem.as_bytes(), s_cert.as_bytes(), s_key.expose().as_bytes()))).unwrap();
    let no_cert = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    (child, health, Clients { node, no_cert, other_ca })
}

fn poll(http: &reqwest::blocking::Client, health: &Health, root: &Path) {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        match answers_with(http, health) {
            Ok(()) => return,
            Err(e) if Instant::now() > end => {
                let log = std::fs::read_to_string(root.join("etcd.log")).unwrap_or_default();
                panic!("etcd never answered as Patroni needs: {e}\netcd's log:\n{log}");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Only a client with a certificate of the cluster CA gets an answer.
fn refuses_strangers(c: &Clients, health: &Health) {
    for (who, http) in [("a client without a certificate", &c.no_cert), ("a certificate of another CA", &c.other_ca)] {
        let r = answers_with(http, health);
        assert!(r.is_err(), "etcd answered {who}");
    }
}

/// Without vip-manager 1.x: Patroni's etcd3 client, through the gateway; the v2 API stays off.
fn etcd3_path(suite: &str) {
    let root = common::fixture_root("debian-12");
    let (_etcd, health, c) = start(root.path(), "2.8.0", suite, true);
    let Health::Etcd { url, v2, .. } = &health else { panic!("etcd's health is an API check: {health:?}") };
    assert!(!v2, "without vip-manager 1.x Patroni uses etcd3");
    assert!(url.starts_with("https://"), "{url}");
    poll(&c.node, &health, root.path());
    refuses_strangers(&c, &health);
    let mut v2_read = health.clone();
    if let Health::Etcd { v2, .. } = &mut v2_read {
        *v2 = true;
    }
    assert!(answers_with(&c.node, &v2_read).is_err(), "the v2 API answers although vip-manager 1.x is not in use");
}

/// With vip-manager 1.x: the v2 API for it (and Patroni), v3 as well.
fn v2_path(suite: &str) {
    let root = common::fixture_root("debian-12");
    let (_etcd, health, c) = start(root.path(), "1.0.2", suite, true);
    let Health::Etcd { v2, .. } = &health else { panic!("etcd's health is an API check: {health:?}") };
    assert!(v2, "vip-manager 1.x reads etcd's v2 API");
    poll(&c.node, &health, root.path());
    refuses_strangers(&c, &health);
    let mut v3_read = health.clone();
    if let Health::Etcd { v2, .. } = &mut v3_read {
        *v2 = false;
    }
    assert_eq!(answers_with(&c.node, &v3_read), Ok(()), "v3 answers as well");
}

#[test]
fn etcd_3_4_etcd3_path_answers_v3_range_requests_through_the_gateway() {
    etcd3_path("");
}

#[test]
fn etcd_3_4_v2_path_for_vip_manager_1_answers_v2_reads() {
    v2_path("");
}

#[test]
fn etcd_3_5_etcd3_path_answers_v3_range_requests_through_the_gateway() {
    etcd3_path("trixie");
}

#[test]
fn etcd_3_5_v2_path_for_vip_manager_1_answers_v2_reads() {
    v2_path("trixie");
}

/// `[tls] enabled = false` (a lab): plain http, as before TLS was the default.
#[test]
fn etcd_3_5_without_tls_answers_over_plain_http() {
    let root = common::fixture_root("debian-12");
    let (_etcd, health, c) = start(root.path(), "2.8.0", "trixie", false);
    let Health::Etcd { url, .. } = &health else { panic!("{health:?}") };
    assert!(url.starts_with("http://"), "{url}");
    poll(&c.node, &health, root.path());
}

/// The node of the site and secrets files `start` wrote.
fn node(root: &Path) -> Context {
    let opts = Options {
        root: root.into(),
        config: Some(root.join("site.toml")),
        secrets: Some(root.join("secrets.toml")),
        node: Some("pg1".into()),
        ..Options::default()
    };
    Context::load(&opts, Box::new(Arc::new(Recording::default()))).unwrap()
}

/// etcd's authentication as hanode sets it up, on a real etcd: a certificate of the cluster CA
/// alone may not write; Patroni may write under its scope only, vip-manager only read the
/// leader key; a second run changes nothing; a changed password is set anew.
fn auth(suite: &str) {
    let root = common::fixture_root("debian-12");
    let (_etcd, health, c) = start(root.path(), "2.8.0", suite, true);
    let Health::Etcd { url, login, .. } = &health else { panic!("{health:?}") };
    assert!(login.is_some(), "the health check logs in as Patroni");
    poll(&c.node, &health, root.path());
    let cx = node(root.path());
    let gw = hanode::etcd_auth::Gateway { http: &c.node, url: url.clone() };
    let mut apis = hanode::etcd_auth::users(&cx).unwrap();
    assert_eq!(apis.len(), 1, "the etcd3 path sets up v3 only");
    let (_, users) = apis.remove(0);
    // A user left from another secrets file: its password is set before authentication goes
    // on (else that login would be locked out).
    let stale = hanode::etcd_auth::Login {
        user: "patroni".into(),
        password: hanode::config::secrets::Secret::new("from-another-file"),
    };
    gw.apply(None, V3, &hanode::etcd_auth::Call::UserAdd { login: stale }).unwrap();
    let calls = gw.plan(&users).unwrap();
    assert!(
        calls.iter().any(|c| matches!(c, hanode::etcd_auth::Call::ChangePassword { login } if login.user == "patroni")),
        "{calls:?}"
    );
    assert!(matches!(calls.last(), Some(hanode::etcd_auth::Call::AuthEnable)), "{calls:?}");
    let root_login = hanode::etcd_auth::root(&cx).unwrap();
    for call in &calls {
        gw.apply(Some(&root_login), V3, call).unwrap();
    }
    assert_eq!(gw.plan(&users).unwrap().len(), 0, "a second run plans nothing");
    poll(&c.node, &health, root.path());
    // `hanode status` asks each member's /health, which needs no login.
    let h = c.node.get(format!("{url}/health")).send().unwrap().text().unwrap();
    assert!(h.contains("\"true\""), "/health with authentication on: {h}");

    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let put = |token: Option<&str>, key: &str| {
        gw.post("kv/put", &serde_json::json!({ "key": b64(key), "value": b64("x") }), token)
    };
    let get = |token: Option<&str>, key: &str| gw.post("kv/range", &serde_json::json!({ "key": b64(key) }), token);
    assert!(put(None, "/service/api/leader").is_err(), "a client certificate alone wrote a key");
    let patroni = gw.authenticate(&hanode::etcd_auth::patroni(&cx).unwrap()).unwrap();
    assert!(patroni.is_some(), "no token for Patroni");
    put(patroni.as_deref(), "/service/api/leader").unwrap();
    assert!(put(patroni.as_deref(), "/service/other/leader").is_err(), "Patroni wrote outside its scope");
    let vip = gw.authenticate(&hanode::etcd_auth::vip_manager(&cx).unwrap()).unwrap();
    get(vip.as_deref(), "/service/api/leader").unwrap();
    assert!(put(vip.as_deref(), "/service/api/leader").is_err(), "vip-manager wrote the leader key");

    // The secrets file's password for Patroni changes: the next run sets it.
    let mut changed = users.clone();
    changed[0].login.password = hanode::config::secrets::Secret::new("a-new-password-1");
    let calls = gw.plan(&changed).unwrap();
    assert!(matches!(calls.as_slice(), [hanode::etcd_auth::Call::ChangePassword { .. }]), "{calls:?}");
}

#[test]
fn etcd_3_4_authentication_grants_each_client_only_its_keys() {
    auth("");
}

#[test]
fn etcd_3_5_authentication_grants_each_client_only_its_keys() {
    auth("trixie");
}

/// On the v2 path (vip-manager 1.x) the clients' users are v2's, set up through `/v2/auth`,
/// and v3 gets root alone: a certificate of the cluster CA alone writes in neither store.
fn auth_v2(suite: &str) {
    use reqwest::Method;
    let root = common::fixture_root("debian-12");
    let (_etcd, health, c) = start(root.path(), "1.0.2", suite, true);
    let Health::Etcd { url, .. } = &health else { panic!("{health:?}") };
    poll(&c.node, &health, root.path());
    let cx = node(root.path());
    let gw = hanode::etcd_auth::Gateway { http: &c.node, url: url.clone() };
    let root_login = hanode::etcd_auth::root(&cx).unwrap();
    let plan = |gw: &hanode::etcd_auth::Gateway| {
        let mut all = Vec::new();
        for (api, users) in hanode::etcd_auth::users(&cx).unwrap() {
            let calls = if api == V2 { gw.plan_v2(&users, "api").map(|p| p.calls) } else { gw.plan(&users) }.unwrap();
            all.extend(calls.into_iter().map(|c| (api, c)));
        }
        all
    };
    // A cluster Patroni already made (an older hanode's, without v2 authentication): it stays
    // off, and the plan says so; without that cluster it goes on.
    let (_, v2_users) = hanode::etcd_auth::users(&cx).unwrap().remove(1);
    let anonymous = c.node.put(format!("{url}/v2/keys/service/api/initialize")).form(&[("value", "x")]).send();
    assert!(anonymous.unwrap().status().is_success());
    let running = gw.plan_v2(&v2_users, "api").unwrap();
    assert!(running.auth_left_off, "{running:?}");
    assert!(!running.calls.iter().any(|c| matches!(c, hanode::etcd_auth::Call::AuthEnable)), "{running:?}");
    assert!(c.node.delete(format!("{url}/v2/keys/service/api/initialize")).send().unwrap().status().is_success());
    assert!(!gw.plan_v2(&v2_users, "api").unwrap().auth_left_off);
    let calls = plan(&gw);
    // An empty guest role before authentication goes on: etcd keeps it rather than making one
    // that may do everything, so no anonymous client gets a moment of full access.
    let guest = calls
        .iter()
        .position(|(api, c)| *api == V2 && matches!(c, hanode::etcd_auth::Call::RoleAdd { role } if role == "guest"));
    let enable = calls.iter().position(|(api, c)| *api == V2 && matches!(c, hanode::etcd_auth::Call::AuthEnable));
    assert!(guest.is_some() && guest < enable, "{calls:?}");
    for (api, call) in &calls {
        gw.apply(Some(&root_login), *api, call).unwrap_or_else(|e| panic!("{}: {e:#}", call.summary_on(*api)));
    }
    // A second member racing through the same calls finds them done.
    for (api, call) in &calls {
        gw.apply(Some(&root_login), *api, call).unwrap_or_else(|e| panic!("again, {}: {e:#}", call.summary_on(*api)));
    }
    let again = plan(&gw);
    assert!(again.is_empty(), "a second run plans nothing: {again:?}");
    poll(&c.node, &health, root.path());

    let patroni = hanode::etcd_auth::patroni(&cx).unwrap();
    let vip = hanode::etcd_auth::vip_manager(&cx).unwrap();
    // Whether a v2 write went through (etcd may also drop the connection of a refused one).
    let put = |login: Option<&hanode::etcd_auth::Login>, key: &str| {
        let mut req = c.node.request(Method::PUT, format!("{url}/v2/keys{key}")).form(&[("value", "x")]);
        if let Some(l) = login {
            req = req.basic_auth(&l.user, Some(l.password.expose()));
        }
        req.send().map(|r| r.status())
    };
    let wrote = |r: reqwest::Result<reqwest::StatusCode>| r.is_ok_and(|s| s.is_success());
    assert!(!wrote(put(None, "/service/api/leader")), "a client certificate alone wrote a v2 key");
    let r = put(Some(&patroni), "/service/api/leader");
    assert!(matches!(r, Ok(s) if s.is_success()), "Patroni cannot write under its scope: {r:?}");
    assert!(!wrote(put(Some(&patroni), "/service/other/leader")), "Patroni wrote outside its scope");
    assert!(!wrote(put(Some(&vip), "/service/api/leader")), "vip-manager wrote the leader key");
    let read = gw.v2(Method::GET, "keys/service/api/leader", None, Some(&vip)).unwrap();
    assert!(read.is_some_and(|v| v["node"]["value"] == "x"), "vip-manager cannot read the leader key");
    assert!(gw.v2(Method::GET, "keys/service/api/leader", None, None).is_err(), "an anonymous v2 read");
    // v3: root alone.
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let v3_put = serde_json::json!({ "key": b64("/x"), "value": b64("x") });
    assert!(gw.post("kv/put", &v3_put, None).is_err(), "a client certificate alone wrote a v3 key");
    assert!(gw.authenticate(&patroni).is_err(), "Patroni has a v3 login on the v2 path");
    let token = gw.authenticate(&root_login).unwrap();
    gw.post("kv/put", &v3_put, token.as_deref()).unwrap();
}

#[test]
fn etcd_3_4_v2_path_authentication_grants_each_client_only_its_keys() {
    auth_v2("");
}

#[test]
fn etcd_3_5_v2_path_authentication_grants_each_client_only_its_keys() {
    auth_v2("trixie");
}

/// A host replacing a dead member finds it listed under its own peer URL; hanode removes that
/// member only when nothing answers there. Here a live etcd does (another host has this
/// address, say): the plan refuses (exit 3) and names the member, and nothing is removed.
#[test]
fn a_listed_member_that_still_answers_is_never_removed() {
    let root = common::fixture_root("debian-12");
    let (client, peer) = (free_port(), free_port());
    // pg1 (this node, no etcd data) at 127.0.0.1; pg2, the running peer, at 127.0.0.2.
    let site = format!(
        "[cluster]\nname = \"api\"\nmembers = [{{ name = \"pg1\", address = \"127.0.0.1\" }}, {{ name = \"pg2\", address = \"127.0.0.2\" }}]\n[dcs]\nclient_port = {client}\npeer_port = {peer}\n[tls]\nenabled = false\n"
    );
    common::write(root.path(), "site.toml", &site, 0o644);
    hanode::config::secrets::generate(&root.path().join("secrets.toml")).unwrap();
    // One live etcd: the running peer at pg2's client URL, listed at pg1's peer URL.
    let etcd = etcd_binary(root.path(), "");
    let pg1_peer = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(root.path().join("etcd.log")).unwrap();
    let child = Command::new(etcd)
        .args(["--name", "pg1", "--data-dir"])
        .arg(root.path().join("live"))
        .args(["--listen-peer-urls", &pg1_peer, "--initial-advertise-peer-urls", &pg1_peer])
        .args(["--initial-cluster", &format!("pg1={pg1_peer}")])
        .args(["--listen-client-urls", &format!("http://127.0.0.2:{client}")])
        .args(["--advertise-client-urls", &format!("http://127.0.0.2:{client}")])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn();
    let _etcd = Etcd(child.unwrap());
    let end = Instant::now() + Duration::from_secs(60);
    while hanode::dcs::etcd_health(&format!("http://127.0.0.2:{client}")).is_err() {
        assert!(
            Instant::now() < end,
            "etcd never became healthy: {}",
            std::fs::read_to_string(root.path().join("etcd.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut cx = node(root.path());
    cx.dry_run = true;
    let phases = hanode::phases::select(cx.role, hanode::engine::Stage::All, &[], Some("dcs")).unwrap();
    let mut report = hanode::engine::Report::default();
    let err = hanode::engine::converge(&cx, &phases, true, &mut report).expect_err("the plan refuses");
    assert_eq!(hanode::error::kind_of(&err), hanode::error::Kind::Refused, "{err:#}");
    let msg = format!("{err:#}");
    assert!(msg.contains("lists member pg1") && msg.contains(&format!("answers at {pg1_peer}")), "{msg}");
    assert!(!report.changes.iter().any(|c| c.summary.contains("remove")), "{:?}", report.changes);
}
