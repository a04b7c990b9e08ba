//! Consul's ACLs: the agents deny what no token allows (`default_policy = deny`); the
//! management token (`[consul] acl_token` in the secrets file) is the servers' initial
//! management token and the agents' own. Patroni and vip-manager get tokens of their own
//! (`patroni_token`, `vip_manager_token`), each bound to a policy with no more than that
//! client needs. They are created through the local agent's HTTP API, as the management
//! token, after Consul has a leader and before Patroni starts; every node runs it, the first
//! one does the work. Tokens travel in headers and bodies, never in argv.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::secrets::Secret;
use crate::context::Context;

/// One kind of access in a policy's rules (Consul's JSON form of its HCL rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Rule {
    policy: Access,
}

/// A policy's rules: resource kind → name (or prefix) → access.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rules {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    key: BTreeMap<String, Rule>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    key_prefix: BTreeMap<String, Rule>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    session: BTreeMap<String, Rule>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    service: BTreeMap<String, Rule>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    node: BTreeMap<String, Rule>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    agent: BTreeMap<String, Rule>,
}

impl Rules {
    /// The rules as Consul stores them (a JSON document in a string).
    pub fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A client's token and the one policy it carries.
#[derive(Debug, Clone, Serialize)]
pub struct Client {
    pub policy: String,
    #[serde(skip)]
    pub rules: Rules,
    pub description: String,
    #[serde(skip)]
    pub secret: Secret,
}

fn token(
    cx: &Context,
    key: &str,
    pick: fn(&crate::config::secrets::Secrets) -> &Option<Secret>,
) -> anyhow::Result<Secret> {
    cx.secrets.as_ref().and_then(|s| pick(s).clone()).ok_or_else(|| {
        crate::error::bad_input(format!(
            "Consul's ACLs need [consul] {key} in the secrets file {}: `hanode secrets add-missing --file {}` adds it",
            cx.secrets_path.display(),
            cx.secrets_path.display()
        ))
    })
}

/// The management token: the servers' initial management token, the agents' own, and what
/// hanode creates the clients' tokens with.
pub fn management(cx: &Context) -> anyhow::Result<Secret> {
    token(cx, "acl_token", |s| &s.consul_token)
}

pub fn patroni_token(cx: &Context) -> anyhow::Result<Secret> {
    token(cx, "patroni_token", |s| &s.consul_patroni_token)
}

pub fn vip_manager_token(cx: &Context) -> anyhow::Result<Secret> {
    token(cx, "vip_manager_token", |s| &s.consul_vip_manager_token)
}

/// What Patroni and vip-manager may do. Patroni: its keys (`service/<scope>/`), a session on
/// each member's agent (its leader lock), its service (`register_service`), and reads of the
/// members' nodes and agents; vip-manager: a read of the leader key.
pub fn clients(cx: &Context) -> anyhow::Result<Vec<Client>> {
    let scope = &cx.site.cluster.name;
    let rule = |policy| Rule { policy };
    let members = || cx.site.cluster.members.iter().map(|m| m.name.clone());
    let patroni = Rules {
        key_prefix: [(format!("service/{scope}/"), rule(Access::Write))].into(),
        session: members().map(|m| (m, rule(Access::Write))).collect(),
        service: [(scope.clone(), rule(Access::Write))].into(),
        node: members().map(|m| (m, rule(Access::Read))).collect(),
        agent: members().map(|m| (m, rule(Access::Read))).collect(),
        ..Rules::default()
    };
    let vip = Rules { key: [(format!("service/{scope}/leader"), rule(Access::Read))].into(), ..Rules::default() };
    let mut out = vec![Client {
        policy: format!("hanode-patroni-{scope}"),
        rules: patroni,
        description: format!("Patroni of cluster {scope} (hanode)"),
        secret: patroni_token(cx)?,
    }];
    if cx.site.vip.is_some() {
        out.push(Client {
            policy: format!("hanode-vip-manager-{scope}"),
            rules: vip,
            description: format!("vip-manager of cluster {scope} (hanode)"),
            secret: vip_manager_token(cx)?,
        });
    }
    Ok(out)
}

/// One call to Consul's ACL API, as a plan shows it (tokens are not shown).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    PolicyCreate { client: Client },
    PolicyUpdate { id: String, client: Client },
    TokenCreate { client: Client },
    TokenUpdate { accessor: String, client: Client },
}

impl Call {
    pub fn summary(&self) -> String {
        match self {
            Call::PolicyCreate { client } => format!("Consul: add ACL policy {}", client.policy),
            Call::PolicyUpdate { client, .. } => format!("Consul: set ACL policy {}'s rules", client.policy),
            Call::TokenCreate { client } => {
                format!(
                    "Consul: add the token of {} with policy {} (from the secrets file)",
                    client.description, client.policy
                )
            }
            Call::TokenUpdate { client, .. } => {
                format!("Consul: give the token of {} policy {}", client.description, client.policy)
            }
        }
    }

    fn request(&self) -> (String, Value) {
        let policy = |c: &Client| json!({ "Name": c.policy, "Description": c.description, "Rules": c.rules.text() });
        let token = |c: &Client| json!({ "SecretID": c.secret.expose(), "Description": c.description, "Policies": [{ "Name": c.policy }] });
        match self {
            Call::PolicyCreate { client } => ("acl/policy".into(), policy(client)),
            Call::PolicyUpdate { id, client } => (format!("acl/policy/{id}"), policy(client)),
            Call::TokenCreate { client } => ("acl/token".into(), token(client)),
            Call::TokenUpdate { accessor, client } => (format!("acl/token/{accessor}"), token(client)),
        }
    }
}

/// The local Consul agent's HTTP API.
pub struct Agent<'a> {
    pub http: &'a reqwest::blocking::Client,
    pub url: String,
}

impl Agent<'_> {
    /// A request with this token; Consul's "not found" (a 404, or the 403 "ACL not found" of a
    /// token it does not know) is `Ok(None)`; other errors carry Consul's own message.
    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        token: &Secret,
    ) -> Result<Option<Value>, String> {
        let url = format!("{}/v1/{path}", self.url);
        let mut req = self.http.request(method.clone(), &url).header("X-Consul-Token", token.expose());
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b.to_string());
        }
        let resp = req.send().map_err(|e| format!("{method} {url}: {:#}", anyhow::Error::new(e)))?;
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        if status.is_success() {
            return Ok(Some(serde_json::from_str(&text).unwrap_or_default()));
        }
        let not_found = status == reqwest::StatusCode::NOT_FOUND
            || (status == reqwest::StatusCode::FORBIDDEN && text.contains("ACL not found"));
        if not_found {
            return Ok(None);
        }
        Err(format!("{method} {url}: {status} {}", text.trim()))
    }

    /// What must be done so that every client has its policy with these rules and its token.
    pub fn plan(&self, management: &Secret, clients: &[Client]) -> Result<Vec<Call>, String> {
        use reqwest::Method;
        let mut calls = Vec::new();
        for c in clients {
            match self.call(Method::GET, &format!("acl/policy/name/{}", c.policy), None, management)? {
                None => calls.push(Call::PolicyCreate { client: c.clone() }),
                Some(p) if p["Rules"].as_str().map(parse) != Some(parse(&c.rules.text())) => {
                    let id = p["ID"].as_str().ok_or("a policy without an ID")?.to_string();
                    calls.push(Call::PolicyUpdate { id, client: c.clone() });
                }
                Some(_) => {}
            }
            // The token asks about itself: Consul says whether it knows it and what it carries.
            match self.call(Method::GET, "acl/token/self", None, &c.secret)? {
                None => calls.push(Call::TokenCreate { client: c.clone() }),
                Some(t) => {
                    let names = t["Policies"].as_array().cloned().unwrap_or_default();
                    let others: Vec<&str> =
                        names.iter().filter_map(|p| p["Name"].as_str()).filter(|n| *n != c.policy).collect();
                    if !others.is_empty() {
                        return Err(format!(
                            "the token the secrets file gives {} carries other policies ({}): hanode does not change it; give it a token of its own",
                            c.description,
                            others.join(", ")
                        ));
                    }
                    if !names.iter().any(|p| p["Name"] == json!(c.policy)) {
                        let accessor = t["AccessorID"].as_str().ok_or("a token without an AccessorID")?.to_string();
                        calls.push(Call::TokenUpdate { accessor, client: c.clone() });
                    }
                }
            }
        }
        Ok(calls)
    }

    /// Runs a call as the management token. A token another member created meanwhile counts
    /// as done.
    pub fn apply(&self, management: &Secret, call: &Call) -> anyhow::Result<()> {
        let (path, body) = call.request();
        match self.call(reqwest::Method::PUT, &path, Some(&body), management) {
            Ok(_) => Ok(()),
            Err(e) if e.contains("already in use") || e.contains("already exists") => Ok(()),
            Err(e) => anyhow::bail!("{}: {e}", call.summary()),
        }
    }
}

/// Rules compared as documents, not as text (Consul may store them reformatted).
fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!(text))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rules_are_consul_json_with_only_what_is_set() {
        use super::*;
        let r = Rules {
            key: [("service/main/leader".to_string(), Rule { policy: Access::Read })].into(),
            ..Rules::default()
        };
        assert_eq!(r.text(), r#"{"key":{"service/main/leader":{"policy":"read"}}}"#);
    }

    #[test]
    fn summaries_never_carry_tokens() {
        use super::*;
        let client = Client {
            policy: "p".into(),
            rules: Rules::default(),
            description: "Patroni".into(),
            secret: Secret::new("0b8e6a1c-hunter2"),
        };
        let call = Call::TokenCreate { client };
        assert!(!call.summary().contains("hunter2"));
        assert!(!serde_json::to_string(&call).unwrap().contains("hunter2"));
    }
}
