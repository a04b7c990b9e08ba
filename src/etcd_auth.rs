//! etcd's own authentication, on with TLS: a root user, and users with no more than each
//! client needs (Patroni: read and write under `/service/<scope>/`; vip-manager: read of the
//! leader key). A certificate of the cluster CA alone gets a client nothing. Everything goes
//! through etcd's HTTP APIs with hanode's client certificate: passwords travel in request
//! bodies, never in argv or the environment.
//!
//! etcd keeps two separate stores with two separate authentications. On the etcd3 path the
//! clients use v3 (through its JSON gateway) and v2 is off. On the v2 path (vip-manager 1.x)
//! they use v2, whose users and roles hanode sets up through `/v2/auth`, and v3 gets its root
//! user alone, so that nobody but root writes there either.

use base64::Engine;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::secrets::Secret;
use crate::config::{DcsKind, Site};
use crate::context::Context;

/// Whether this cluster's etcd runs with authentication.
pub fn enabled(site: &Site) -> bool {
    site.tls.enabled && site.dcs.kind == DcsKind::Etcd
}

/// Which of etcd's two APIs (and stores) a call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    V3,
    V2,
}

/// A user name and password to log in to etcd with.
#[derive(Debug, Clone, Serialize)]
pub struct Login {
    pub user: String,
    #[serde(skip)]
    pub password: Secret,
}

/// The key range a role may use: one key, or a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub key: String,
    pub prefix: bool,
    pub write: bool,
}

/// A user of etcd with the one role (of its own name) that carries its permission.
#[derive(Debug, Clone)]
pub struct User {
    pub login: Login,
    /// None for root (etcd's built-in root role).
    pub grant: Option<Grant>,
}

fn missing(cx: &Context, key: &str) -> anyhow::Error {
    crate::error::bad_input(format!(
        "etcd's authentication needs [etcd] {key} in the secrets file {}: `hanode secrets add-missing --file {}` adds it",
        cx.secrets_path.display(),
        cx.secrets_path.display()
    ))
}

fn password(
    cx: &Context,
    key: &str,
    pick: fn(&crate::config::secrets::EtcdPasswords) -> &Option<Secret>,
) -> anyhow::Result<Secret> {
    cx.secrets.as_ref().and_then(|s| pick(&s.etcd).clone()).ok_or_else(|| missing(cx, key))
}

/// Patroni's login, for patroni.yml and the health check.
pub fn patroni(cx: &Context) -> anyhow::Result<Login> {
    Ok(Login { user: "patroni".into(), password: password(cx, "patroni_password", |e| &e.patroni)? })
}

pub fn vip_manager(cx: &Context) -> anyhow::Result<Login> {
    Ok(Login { user: "vip-manager".into(), password: password(cx, "vip_manager_password", |e| &e.vip_manager)? })
}

pub fn root(cx: &Context) -> anyhow::Result<Login> {
    Ok(Login { user: "root".into(), password: password(cx, "root_password", |e| &e.root)? })
}

/// Root's login where etcd's authentication is on; `None` where it is off.
pub fn root_if_enabled(cx: &Context) -> anyhow::Result<Option<Login>> {
    if enabled(&cx.site) { root(cx).map(Some) } else { Ok(None) }
}

/// Whether a member is alive in the cluster's eyes: the first of these members (client URLs)
/// with a live connection to member `id`. Each is asked (one cut off from it alone would not
/// see it); a peer powered off a moment ago may still count as connected for a few seconds,
/// so a connection must last 10 s to count.
pub fn live_connection(urls: &[String], id: &str) -> Result<Option<String>, String> {
    let begun = std::time::Instant::now();
    loop {
        let mut connected = None;
        for u in urls {
            let asked = Gateway { http: crate::units::http(), url: u.clone() };
            if asked.peer_active(id)? {
                connected = Some(u.clone());
            }
        }
        if connected.is_none() || begun.elapsed() > std::time::Duration::from_secs(10) {
            return Ok(connected);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// The users each of etcd's APIs must have: the clients' on the API they use, root on both.
pub fn users(cx: &Context) -> anyhow::Result<Vec<(Api, Vec<User>)>> {
    let scope = &cx.site.cluster.name;
    let clients = vec![
        User {
            login: patroni(cx)?,
            grant: Some(Grant { key: format!("/service/{scope}/"), prefix: true, write: true }),
        },
        User {
            login: vip_manager(cx)?,
            grant: Some(Grant { key: format!("/service/{scope}/leader"), prefix: false, write: false }),
        },
        User { login: root(cx)?, grant: None },
    ];
    Ok(if crate::dcs::etcd_v2(&cx.site) {
        vec![(Api::V3, vec![User { login: root(cx)?, grant: None }]), (Api::V2, clients)]
    } else {
        vec![(Api::V3, clients)]
    })
}

/// One call to etcd's auth or cluster API, as a plan shows it (passwords are not shown).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    RoleAdd {
        role: String,
    },
    RoleGrant {
        role: String,
        grant: Grant,
    },
    UserAdd {
        login: Login,
    },
    UserGrantRole {
        user: String,
        role: String,
    },
    ChangePassword {
        login: Login,
    },
    AuthEnable,
    /// v2 only: what the `guest` role (anonymous clients) may still read and write, taken.
    GuestRevoke {
        read: Vec<String>,
        write: Vec<String>,
    },
    MemberAdd {
        name: String,
        peer_url: String,
    },
    /// A member whose host is gone for good (its replacement has the same name and address).
    MemberRemove {
        id: String,
        name: String,
        peer_url: String,
    },
}

impl Call {
    /// What the call does, on which API.
    pub fn summary_on(&self, api: Api) -> String {
        match api {
            Api::V3 => self.summary(),
            Api::V2 => format!("{} (v2 API)", self.summary()),
        }
    }

    pub fn summary(&self) -> String {
        match self {
            Call::RoleAdd { role } => format!("etcd: add role {role}"),
            Call::RoleGrant { role, grant } => format!(
                "etcd: grant role {role} {} on {}{}",
                if grant.write { "read and write" } else { "read" },
                grant.key,
                if grant.prefix { "*" } else { "" }
            ),
            Call::UserAdd { login } => format!("etcd: add user {} (password from the secrets file)", login.user),
            Call::UserGrantRole { user, role } => format!("etcd: give user {user} role {role}"),
            Call::ChangePassword { login } => {
                format!("etcd: set user {}'s password to the secrets file's", login.user)
            }
            Call::AuthEnable => "etcd: turn authentication on".into(),
            Call::GuestRevoke { read, write } => format!(
                "etcd: take from the guest role (anonymous clients) read of [{}] and write of [{}]",
                read.join(", "),
                write.join(", ")
            ),
            Call::MemberAdd { name, peer_url } => {
                format!("etcd: add member {name} ({peer_url}) to the running cluster")
            }
            Call::MemberRemove { id, name, peer_url } => {
                format!("etcd: remove the dead member {name} ({peer_url}, ID {id})")
            }
        }
    }

    /// The call on etcd's v2 API: PUT `/v2/auth/<path>` with this body.
    fn request_v2(&self) -> (String, Value) {
        let kv = |g: &Grant| {
            let pattern = if g.prefix { format!("{}*", g.key) } else { g.key.clone() };
            let write: Vec<&str> = if g.write { vec![&pattern] } else { Vec::new() };
            json!({ "kv": { "read": [&pattern], "write": write } })
        };
        match self {
            Call::RoleAdd { role } => (format!("roles/{role}"), json!({ "role": role })),
            Call::RoleGrant { role, grant } => (format!("roles/{role}"), json!({ "role": role, "grant": kv(grant) })),
            Call::UserAdd { login } | Call::ChangePassword { login } => {
                (format!("users/{}", login.user), json!({ "user": login.user, "password": login.password.expose() }))
            }
            Call::UserGrantRole { user, role } => (format!("users/{user}"), json!({ "user": user, "grant": [role] })),
            Call::AuthEnable => ("enable".into(), json!({})),
            Call::GuestRevoke { read, write } => {
                ("roles/guest".into(), json!({ "role": "guest", "revoke": { "kv": { "read": read, "write": write } } }))
            }
            Call::MemberAdd { .. } | Call::MemberRemove { .. } => unreachable!("members change through v3"),
        }
    }

    fn request(&self) -> (&'static str, Value) {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        match self {
            Call::RoleAdd { role } => ("auth/role/add", json!({ "name": role })),
            Call::RoleGrant { role, grant } => {
                let mut perm = if grant.prefix { prefix_range(&grant.key) } else { json!({ "key": b64(&grant.key) }) };
                perm["permType"] = json!(if grant.write { "READWRITE" } else { "READ" });
                ("auth/role/grant", json!({ "name": role, "perm": perm }))
            }
            Call::UserAdd { login } => {
                ("auth/user/add", json!({ "name": login.user, "password": login.password.expose() }))
            }
            Call::UserGrantRole { user, role } => ("auth/user/grant", json!({ "user": user, "role": role })),
            Call::ChangePassword { login } => {
                ("auth/user/changepw", json!({ "name": login.user, "password": login.password.expose() }))
            }
            Call::AuthEnable => ("auth/enable", json!({})),
            Call::GuestRevoke { .. } => unreachable!("v2 only"),
            Call::MemberAdd { peer_url, .. } => ("cluster/member/add", json!({ "peerURLs": [peer_url] })),
            Call::MemberRemove { id, .. } => ("cluster/member/remove", json!({ "ID": id })),
        }
    }
}

/// The end of the range of keys that start with `prefix` (its last byte plus one).
fn prefix_end(prefix: &str) -> String {
    let mut b = prefix.as_bytes().to_vec();
    if let Some(last) = b.last_mut() {
        *last += 1;
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// The gateway's `key` and `range_end` (base64) for every key that starts with `prefix`.
pub fn prefix_range(prefix: &str) -> Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({ "key": b64(prefix), "range_end": b64(&prefix_end(prefix)) })
}

/// What etcd's v2 store needs (`Gateway::plan_v2`).
#[derive(Debug)]
pub struct V2Plan {
    pub calls: Vec<Call>,
    pub auth_left_off: bool,
}

/// Sends a request to etcd: its status, its body, and that body as JSON (null if it is not).
fn exchange(
    req: reqwest::blocking::RequestBuilder,
    method: &str,
    url: &str,
) -> Result<(reqwest::StatusCode, String, Value), String> {
    let resp = req.send().map_err(|e| format!("{method} {url}: {:#}", anyhow::Error::new(e)))?;
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or_default();
    Ok((status, text, v))
}

/// etcd's JSON gateway at one member.
pub struct Gateway<'a> {
    pub http: &'a reqwest::blocking::Client,
    pub url: String,
}

impl Gateway<'_> {
    /// POST /v3/PATH; an error carries etcd's own message.
    pub fn post(&self, path: &str, body: &Value, token: Option<&str>) -> Result<Value, String> {
        let url = format!("{}/v3/{path}", self.url);
        let mut req = self.http.post(&url).header("Content-Type", "application/json").body(body.to_string());
        if let Some(t) = token {
            req = req.header("Authorization", t);
        }
        let (status, text, v) = exchange(req, "POST", &url)?;
        if status.is_success() && v.get("error").is_none() {
            Ok(v)
        } else {
            let why = v["message"]
                .as_str()
                .or(v["error"].as_str())
                .map_or_else(|| format!("{status} {}", text.trim()), str::to_string);
            Err(format!("POST {url}: {why}"))
        }
    }

    /// A token for this login; `None` while authentication is off.
    pub fn authenticate(&self, login: &Login) -> Result<Option<String>, String> {
        let body = json!({ "name": login.user, "password": login.password.expose() });
        match self.post("auth/authenticate", &body, None) {
            Ok(v) => Ok(v["token"].as_str().map(str::to_string)),
            Err(e) if e.contains("authentication is not enabled") => Ok(None),
            Err(e) if e.contains("authentication failed") => {
                Err(format!("etcd refuses user {}'s password from the secrets file: {e}", login.user))
            }
            Err(e) => Err(format!("logging in to etcd as {}: {e}", login.user)),
        }
    }

    /// A token for root where etcd's authentication is in use; none without it.
    fn root_token(&self, root: Option<&Login>) -> Result<Option<String>, String> {
        match root {
            Some(r) => self.authenticate(r),
            None => Ok(None),
        }
    }

    /// A request to etcd's v2 API as `login` (basic auth, which etcd ignores while v2
    /// authentication is off); an error carries etcd's own message. Not found is `Ok(None)`.
    pub fn v2(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        login: Option<&Login>,
    ) -> Result<Option<Value>, String> {
        let url = format!("{}/v2/{path}", self.url);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(l) = login {
            req = req.basic_auth(&l.user, Some(l.password.expose()));
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b.to_string());
        }
        let (status, text, v) = exchange(req, method.as_str(), &url)?;
        match status {
            s if s.is_success() => Ok(Some(v)),
            // etcd's own "not found" (a key, user or role) is JSON; a path it does not serve
            // (v2 off) is not.
            reqwest::StatusCode::NOT_FOUND if v.is_object() => Ok(None),
            reqwest::StatusCode::UNAUTHORIZED => Err(match login {
                Some(l) => format!(
                    "{method} {url}: etcd refuses user {} (the secrets file's password is not etcd's, or the user may not do this)",
                    l.user
                ),
                None => format!("{method} {url}: etcd asks for a login"),
            }),
            _ => Err(format!(
                "{method} {url}: {}",
                v["message"].as_str().map_or_else(|| format!("{status} {}", text.trim()), str::to_string)
            )),
        }
    }

    /// Runs a call; with authentication on, as root. A thing that is there already (another
    /// member made it meanwhile) counts as done.
    pub fn apply(&self, root: Option<&Login>, api: Api, call: &Call) -> anyhow::Result<()> {
        if api == Api::V2 {
            let root = root.ok_or_else(|| anyhow::anyhow!("{}: needs etcd's root login", call.summary_on(api)))?;
            let (path, body) = call.request_v2();
            return match self.v2(reqwest::Method::PUT, &format!("auth/{path}"), Some(&body), Some(root)) {
                Ok(_) => Ok(()),
                // Another member did it meanwhile: etcd says so in these words.
                Err(e)
                    if ["already exists", "already enabled", "duplicate", "not updated"]
                        .iter()
                        .any(|w| e.contains(w)) =>
                {
                    Ok(())
                }
                Err(e) => anyhow::bail!("{}: {e}", call.summary_on(api)),
            };
        }
        let (path, body) = call.request();
        let mut token = self.root_token(root).map_err(|e| anyhow::anyhow!(e))?;
        // Another member may turn authentication on between the login and the call: once more
        // with a token then.
        for attempt in 0..2 {
            match self.post(path, &body, token.as_deref()) {
                Ok(_) => return Ok(()),
                // "member not found": another run removed the dead member meanwhile.
                Err(e) if ["already exists", "already granted", "member not found"].iter().any(|w| e.contains(w)) => {
                    return Ok(());
                }
                Err(e)
                    if attempt == 0
                        && token.is_none()
                        && (e.contains("user name is empty") || e.contains("permission denied")) =>
                {
                    token = self.root_token(root).map_err(|e| anyhow::anyhow!(e))?;
                }
                Err(e) => anyhow::bail!("{}: {e}", call.summary()),
            }
        }
        anyhow::bail!("{}: etcd refused it twice", call.summary())
    }

    /// What must be done so that etcd has these users and its authentication is on.
    pub fn plan(&self, users: &[User]) -> Result<Vec<Call>, String> {
        let root = users.iter().find(|u| u.grant.is_none()).map(|u| &u.login).ok_or("no root user")?;
        let token = self.authenticate(root).map_err(|e| {
            if e.contains("refuses") {
                format!("{e}. etcd's root password was set from another secrets file: put that password back in [etcd] root_password, or change it in etcd (`etcdctl user passwd root`) to the secrets file's")
            } else {
                e
            }
        })?;
        let on = token.is_some();
        let t = token.as_deref();
        let existing: Vec<String> = self.post("auth/user/list", &json!({}), t)?["users"]
            .as_array()
            .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let mut calls = Vec::new();
        for u in users {
            let name = &u.login.user;
            let role = if u.grant.is_some() { name.clone() } else { "root".to_string() };
            if let Some(g) = &u.grant {
                match self.post("auth/role/get", &json!({ "role": role }), t) {
                    Ok(v) => {
                        // The same key, range and permission as planned (the gateway leaves
                        // out a READ type and an empty range end).
                        let (_, want) = Call::RoleGrant { role: role.clone(), grant: g.clone() }.request();
                        let want = &want["perm"];
                        let same = |p: &Value| {
                            p["key"] == want["key"]
                                && p.get("range_end").unwrap_or(&json!(null))
                                    == want.get("range_end").unwrap_or(&json!(null))
                                && p.get("permType").and_then(Value::as_str).unwrap_or("READ") == want["permType"]
                        };
                        if !v["perm"].as_array().is_some_and(|ps| ps.iter().any(same)) {
                            calls.push(Call::RoleGrant { role: role.clone(), grant: g.clone() });
                        }
                    }
                    Err(_) => {
                        calls.push(Call::RoleAdd { role: role.clone() });
                        calls.push(Call::RoleGrant { role: role.clone(), grant: g.clone() });
                    }
                }
            }
            if !existing.contains(name) {
                calls.push(Call::UserAdd { login: u.login.clone() });
                calls.push(Call::UserGrantRole { user: name.clone(), role });
                continue;
            }
            let roles = self.post("auth/user/get", &json!({ "name": name }), t)?["roles"].clone();
            if !roles.as_array().is_some_and(|r| r.iter().any(|x| x == &json!(role))) {
                calls.push(Call::UserGrantRole { user: name.clone(), role });
            }
            // With authentication on, a password that no longer logs in is set anew. While it is
            // off, a login cannot be tried: every existing user gets the secrets file's password
            // before authentication goes on (one left from another secrets file would lock
            // everyone out).
            if !on || (u.grant.is_some() && self.authenticate(&u.login).is_err()) {
                calls.push(Call::ChangePassword { login: u.login.clone() });
            }
        }
        if !on {
            calls.push(Call::AuthEnable);
        }
        Ok(calls)
    }

    /// What must be done so that etcd's v2 store has these users (with the roles of their
    /// names) and its authentication is on, with nothing left to the `guest` role. In a running
    /// cluster (Patroni's `initialize` key is there) whose v2 authentication is off, made by an
    /// older hanode, it stays off (`auth_left_off`): the members not yet re-run have no login
    /// and would lose etcd.
    pub fn plan_v2(&self, users: &[User], scope: &str) -> Result<V2Plan, String> {
        use reqwest::Method;
        let root = users.iter().find(|u| u.grant.is_none()).map(|u| &u.login).ok_or("no root user")?;
        let on = self.v2(Method::GET, "auth/enable", None, Some(root))?.is_some_and(|v| v["enabled"] == json!(true));
        let mut calls = Vec::new();
        for u in users {
            let name = &u.login.user;
            if let Some(g) = &u.grant {
                let (_, want) = Call::RoleGrant { role: name.clone(), grant: g.clone() }.request_v2();
                match self.v2(Method::GET, &format!("auth/roles/{name}"), None, Some(root))? {
                    None => {
                        calls.push(Call::RoleAdd { role: name.clone() });
                        calls.push(Call::RoleGrant { role: name.clone(), grant: g.clone() });
                    }
                    Some(have) => {
                        let has = |rw: &str| {
                            want["grant"]["kv"][rw]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .all(|p| have["permissions"]["kv"][rw].as_array().is_some_and(|ps| ps.contains(p)))
                        };
                        if !(has("read") && has("write")) {
                            calls.push(Call::RoleGrant { role: name.clone(), grant: g.clone() });
                        }
                    }
                }
            }
            match self.v2(Method::GET, &format!("auth/users/{name}"), None, Some(root))? {
                None => {
                    calls.push(Call::UserAdd { login: u.login.clone() });
                    if u.grant.is_some() {
                        calls.push(Call::UserGrantRole { user: name.clone(), role: name.clone() });
                    }
                }
                Some(have) => {
                    let roles = have["roles"].as_array().cloned().unwrap_or_default();
                    let has_role = roles.iter().any(|r| r == &json!(name) || r["role"] == json!(name));
                    if u.grant.is_some() && !has_role {
                        calls.push(Call::UserGrantRole { user: name.clone(), role: name.clone() });
                    }
                    // As on v3: every existing user gets the secrets file's password before
                    // authentication goes on; once on, one that no longer logs in is set anew.
                    let logs_in =
                        |g: &Grant| self.v2(Method::GET, &format!("keys{}", g.key), None, Some(&u.login)).is_ok();
                    if !on || u.grant.as_ref().is_some_and(|g| !logs_in(g)) {
                        calls.push(Call::ChangePassword { login: u.login.clone() });
                    }
                }
            }
        }
        // The guest role is emptied (or made empty) before authentication goes on: etcd keeps
        // a guest role it finds, and would otherwise make one that may do everything.
        let guest = self.v2(Method::GET, "auth/roles/guest", None, Some(root))?;
        let perms = |rw: &str| -> Vec<String> {
            let kv = guest.as_ref().map(|g| g["permissions"]["kv"][rw].clone()).unwrap_or_default();
            kv.as_array().into_iter().flatten().filter_map(|p| p.as_str().map(str::to_string)).collect()
        };
        let (read, write) = (perms("read"), perms("write"));
        if guest.is_none() {
            calls.push(Call::RoleAdd { role: "guest".into() });
        } else if !read.is_empty() || !write.is_empty() {
            calls.push(Call::GuestRevoke { read, write });
        }
        let running = || self.v2(Method::GET, &format!("keys/service/{scope}/initialize"), None, Some(root));
        let auth_left_off = !on && running()?.is_some();
        if !on && !auth_left_off {
            calls.push(Call::AuthEnable);
        }
        Ok(V2Plan { calls, auth_left_off })
    }

    /// The cluster's members (as root once authentication is on).
    pub fn members(&self, root: Option<&Login>) -> Result<Vec<Member>, String> {
        let token = self.root_token(root)?;
        let v = self.post("cluster/member/list", &json!({}), token.as_deref())?;
        Ok(members_of(&v))
    }
}

impl Gateway<'_> {
    /// Whether this member has a live connection to the member `id` (its `/metrics`:
    /// `etcd_network_active_peers`, labelled with IDs in hex). The cluster's view, not this
    /// host's: a connection to this node's own address would never leave this host.
    pub fn peer_active(&self, id: &str) -> Result<bool, String> {
        let hex = id
            .parse::<u64>()
            .map(|n| format!("{n:x}"))
            .map_err(|_| format!("etcd member ID {id:?} is not a number"))?;
        let url = format!("{}/metrics", self.url);
        let text = self.http.get(&url).send().and_then(|r| r.error_for_status()).and_then(|r| r.text());
        let text = text.map_err(|e| format!("GET {url}: {:#}", anyhow::Error::new(e)))?;
        Ok(active_in_metrics(&text, &hex))
    }
}

fn active_in_metrics(metrics: &str, hex: &str) -> bool {
    let remote = format!("Remote=\"{hex}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("etcd_network_active_peers{") && l.contains(&remote))
        .any(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v > 0.0))
}

/// A member of the etcd cluster, as `cluster/member/list` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// etcd's uint64 ID, as the JSON gateway spells it (a decimal string).
    pub id: String,
    /// Empty for a member added to the cluster whose etcd has not started yet.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

fn members_of(v: &Value) -> Vec<Member> {
    let strings = |m: &Value, k: &str| -> Vec<String> {
        m[k].as_array().into_iter().flatten().filter_map(|u| u.as_str().map(str::to_string)).collect()
    };
    v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| Member {
            // The gateway writes uint64 as a string; a number is taken too.
            id: m["ID"].as_str().map_or_else(|| m["ID"].as_u64().unwrap_or(0).to_string(), str::to_string),
            name: m["name"].as_str().unwrap_or_default().to_string(),
            peer_urls: strings(m, "peerURLs"),
            client_urls: strings(m, "clientURLs"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_prefix_ends_after_its_last_key() {
        assert_eq!(super::prefix_end("/service/main/"), "/service/main0");
    }

    #[test]
    fn summaries_never_carry_passwords() {
        let login = super::Login { user: "patroni".into(), password: super::Secret::new("hunter2hunter2") };
        let call = super::Call::UserAdd { login };
        assert!(!call.summary().contains("hunter2"));
        assert!(!serde_json::to_string(&call).unwrap().contains("hunter2"));
    }

    #[test]
    fn members_are_read_as_the_gateway_writes_them() {
        // As etcd 3.4's gateway answers: IDs as strings, an unstarted member without a name.
        let v = serde_json::json!({ "members": [
            { "ID": "10276657743932975437", "name": "pg1", "peerURLs": ["https://10.77.0.11:2380"], "clientURLs": ["https://10.77.0.11:2379"] },
            { "ID": 42, "peerURLs": ["https://10.77.0.12:2380"] },
        ]});
        let m = super::members_of(&v);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].id.as_str(), m[0].name.as_str()), ("10276657743932975437", "pg1"));
        assert_eq!(m[0].client_urls, ["https://10.77.0.11:2379"]);
        assert_eq!((m[1].id.as_str(), m[1].name.as_str(), m[1].client_urls.len()), ("42", "", 0));
        let call = super::Call::MemberRemove { id: m[0].id.clone(), name: "pg1".into(), peer_url: "u".into() };
        assert_eq!(call.request().1, serde_json::json!({ "ID": "10276657743932975437" }));
    }

    #[test]
    fn a_peer_is_active_only_with_a_live_connection() {
        let m = "# HELP etcd_network_active_peers The current number of active peer connections.\netcd_network_active_peers{Local=\"8e9e05c52164694d\",Remote=\"2b2a8f9e2ad2a0d\"} 1\netcd_network_active_peers{Local=\"8e9e05c52164694d\",Remote=\"91bc3c398fb3c146\"} 0\n";
        assert!(super::active_in_metrics(m, "2b2a8f9e2ad2a0d"));
        assert!(!super::active_in_metrics(m, "91bc3c398fb3c146"));
        assert!(!super::active_in_metrics(m, "fd422379fda50e48"));
    }
}
