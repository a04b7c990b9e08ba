//! Consul's ACL policies and tokens as hanode sets them up, against a stand-in for the agent's
//! ACL API on loopback (no Consul binary can run here: its licence is not open source). The
//! stand-in keeps policies and tokens as Consul documents them (`/v1/acl/policy`,
//! `/v1/acl/policy/name/:name`, `/v1/acl/token`, `/v1/acl/token/self`, the 403 "ACL not
//! found" of an unknown token) and refuses every call without the management token.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use hanode::config::secrets::Secret;
use hanode::consul_acl::{Agent, Call};
use hanode::context::{Context, Options};
use hanode::exec::Recording;
use serde_json::{Value, json};

const MANAGEMENT: &str = "11111111-2222-4333-8444-555555555555";

#[derive(Default)]
struct Acl {
    policies: HashMap<String, Value>,
    tokens: HashMap<String, Value>,
    /// Every request: method and path.
    log: Vec<String>,
}

fn answer(conn: &mut TcpStream, code: u16, body: &str) {
    let _ = write!(conn, "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
}

fn serve(mut conn: TcpStream, acl: &Mutex<Acl>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let (mut token, mut len) = (String::new(), 0usize);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or(("", ""));
        match k.to_ascii_lowercase().as_str() {
            "x-consul-token" => token = v.trim().to_string(),
            "content-length" => len = v.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut acl = acl.lock().unwrap();
    acl.log.push(format!("{method} {path}"));
    if path == "/v1/acl/token/self" {
        return match acl.tokens.get(&token) {
            Some(t) => answer(&mut conn, 200, &t.to_string()),
            None => answer(&mut conn, 403, "ACL not found"),
        };
    }
    if token != MANAGEMENT {
        return answer(&mut conn, 403, "Permission denied: token lacks acl:write");
    }
    let id = |prefix: &str, n: usize| format!("{prefix}0000000-0000-4000-8000-{n:012}");
    match (method.as_str(), path.as_str()) {
        ("GET", p) if p.starts_with("/v1/acl/policy/name/") => {
            let name = p.trim_start_matches("/v1/acl/policy/name/");
            match acl.policies.values().find(|v| v["Name"] == json!(name)) {
                Some(v) => answer(&mut conn, 200, &v.to_string()),
                None => answer(&mut conn, 404, "ACL not found"),
            }
        }
        ("PUT", "/v1/acl/policy") => {
            if acl.policies.values().any(|v| v["Name"] == body["Name"]) {
                return answer(&mut conn, 500, "Invalid Policy: A Policy with Name already exists");
            }
            let mut p = body.clone();
            p["ID"] = json!(id("a", acl.policies.len()));
            acl.policies.insert(p["ID"].as_str().unwrap().to_string(), p.clone());
            answer(&mut conn, 200, &p.to_string());
        }
        ("PUT", p) if p.starts_with("/v1/acl/policy/") => {
            let pid = p.trim_start_matches("/v1/acl/policy/").to_string();
            let mut p = body.clone();
            p["ID"] = json!(pid);
            acl.policies.insert(pid, p.clone());
            answer(&mut conn, 200, &p.to_string());
        }
        ("PUT", "/v1/acl/token") => {
            let secret = body["SecretID"].as_str().unwrap_or("").to_string();
            if acl.tokens.contains_key(&secret) {
                return answer(&mut conn, 500, "Invalid Token: SecretID is already in use");
            }
            let mut t = body.clone();
            t["AccessorID"] = json!(id("b", acl.tokens.len()));
            acl.tokens.insert(secret, t.clone());
            answer(&mut conn, 200, &t.to_string());
        }
        ("PUT", p) if p.starts_with("/v1/acl/token/") => {
            let accessor = p.trim_start_matches("/v1/acl/token/");
            let secret = acl.tokens.iter().find(|(_, t)| t["AccessorID"] == json!(accessor)).map(|(s, _)| s.clone());
            match secret {
                Some(s) => {
                    let mut t = body.clone();
                    t["AccessorID"] = json!(accessor);
                    acl.tokens.insert(s, t.clone());
                    answer(&mut conn, 200, &t.to_string());
                }
                None => answer(&mut conn, 404, "ACL not found"),
            }
        }
        _ => answer(&mut conn, 404, "no such endpoint"),
    }
}

fn start() -> (String, Arc<Mutex<Acl>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let acl = Arc::new(Mutex::new(Acl::default()));
    let a = acl.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            serve(conn, &a);
        }
    });
    (url, acl)
}

fn context(root: &std::path::Path) -> Context {
    let site = "[cluster]\nname = \"sirius\"\nmembers = [{ name = \"pg1\", address = \"10.0.0.11\" }, { name = \"pg2\", address = \"10.0.0.12\" }, { name = \"consul1\", address = \"10.0.0.21\", role = \"dcs\" }]\n[vip]\naddress = \"10.0.0.100/24\"\ninterface = \"eth0\"\n[dcs]\ntype = \"consul\"\n";
    let site = common::write(root, "site.toml", site, 0o644);
    let secrets = format!(
        "[postgres]\nsuperuser_password = \"superuser-1\"\nreplication_password = \"replication-1\"\n[consul]\nacl_token = \"{MANAGEMENT}\"\npatroni_token = \"22222222-2222-4333-8444-555555555555\"\nvip_manager_token = \"33333333-2222-4333-8444-555555555555\"\n"
    );
    let secrets = common::write(root, "secrets.toml", &secrets, 0o600);
    let opts = Options {
        root: root.into(),
        config: Some(site),
        secrets: Some(secrets),
        node: Some("pg1".into()),
        ..Options::default()
    };
    Context::load(&opts, Box::new(Arc::new(Recording::default()))).unwrap()
}

#[test]
fn patroni_and_vip_manager_get_tokens_of_their_own_once() {
    let root = common::fixture_root("redos-8");
    let cx = context(root.path());
    let (url, acl) = start();
    let http = reqwest::blocking::Client::new();
    let agent = Agent { http: &http, url };
    let management = hanode::consul_acl::management(&cx).unwrap();
    let clients = hanode::consul_acl::clients(&cx).unwrap();

    let calls = agent.plan(&management, &clients).unwrap();
    let summaries: Vec<String> = calls.iter().map(Call::summary).collect();
    assert_eq!(calls.len(), 4, "two policies, two tokens: {summaries:?}");
    for call in &calls {
        agent.apply(&management, call).unwrap();
    }
    // Another member racing: the same token again is done, not an error.
    agent.apply(&management, &calls[1]).unwrap();
    assert!(agent.plan(&management, &clients).unwrap().is_empty(), "a second run plans nothing");

    let st = acl.lock().unwrap();
    let patroni = st.tokens.get("22222222-2222-4333-8444-555555555555").expect("Patroni's token");
    assert_eq!(patroni["Policies"], json!([{ "Name": "hanode-patroni-sirius" }]));
    let policy = st.policies.values().find(|p| p["Name"] == "hanode-patroni-sirius").unwrap();
    let rules: Value = serde_json::from_str(policy["Rules"].as_str().unwrap()).unwrap();
    assert_eq!(rules["key_prefix"], json!({ "service/sirius/": { "policy": "write" } }));
    assert_eq!(rules["session"]["pg1"], json!({ "policy": "write" }));
    assert_eq!(rules["service"], json!({ "sirius": { "policy": "write" } }));
    let vip = st.policies.values().find(|p| p["Name"] == "hanode-vip-manager-sirius").unwrap();
    let rules: Value = serde_json::from_str(vip["Rules"].as_str().unwrap()).unwrap();
    assert_eq!(rules, json!({ "key": { "service/sirius/leader": { "policy": "read" } } }), "vip-manager: one read");
    assert!(!st.log.iter().any(|l| l.contains("2222-4333")), "a token in a URL: {:?}", st.log);
    drop(st);

    // Rules changed by hand are set back; a token stripped of its policy gets it again.
    {
        let mut st = acl.lock().unwrap();
        let id = st.policies.values().find(|p| p["Name"] == "hanode-vip-manager-sirius").unwrap()["ID"].clone();
        st.policies.get_mut(id.as_str().unwrap()).unwrap()["Rules"] =
            json!(r#"{"key_prefix":{"":{"policy":"write"}}}"#);
        st.tokens.get_mut("22222222-2222-4333-8444-555555555555").unwrap()["Policies"] = json!([]);
    }
    let calls = agent.plan(&management, &clients).unwrap();
    assert!(
        matches!(calls.as_slice(), [Call::TokenUpdate { .. }, Call::PolicyUpdate { .. }]),
        "{:?}",
        calls.iter().map(Call::summary).collect::<Vec<_>>()
    );

    // A token that carries other policies (the management token's, say) is not changed.
    acl.lock().unwrap().tokens.get_mut("22222222-2222-4333-8444-555555555555").unwrap()["Policies"] =
        json!([{ "Name": "global-management" }]);
    let err = agent.plan(&management, &clients).unwrap_err();
    assert!(err.contains("carries other policies (global-management)"), "{err}");

    // A wrong management token: the error names the call and Consul's answer.
    let wrong = Secret::new("44444444-2222-4333-8444-555555555555");
    let err = agent.apply(&wrong, &calls[0]).unwrap_err().to_string();
    assert!(err.contains("hanode-patroni-sirius") && err.contains("403"), "{err}");
}
