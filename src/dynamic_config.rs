//! Patroni's dynamic configuration on a running cluster: what the DCS holds (GET /config on
//! this member's REST API) against what the site file says ([`crate::patroni::dynamic`]), and
//! the PATCH that brings one to the other. Patroni gives it to every member; a parameter that
//! needs a restart leaves them `pending_restart` (`hanode status` shows it) until restarted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::context::Context;
use crate::exec::Cmd;

/// One setting whose value in the DCS is not the site file's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// Its keys, outermost first (`postgresql`, `parameters`, `work_mem`).
    pub path: Vec<String>,
    /// The value now (as text), if it is set.
    pub from: Option<String>,
    pub to: Value,
}

impl Setting {
    pub fn name(&self) -> String {
        self.path.join(".")
    }

    /// A PostgreSQL parameter's name, for a setting under `postgresql.parameters`.
    pub fn parameter(&self) -> Option<&str> {
        match self.path.as_slice() {
            [pg, params, name] if pg == "postgresql" && params == "parameters" => Some(name),
            _ => None,
        }
    }

    /// The PATCH body that sets this one value (Patroni merges it into the rest).
    pub fn body(&self) -> Value {
        self.path.iter().rev().fold(self.to.clone(), |inner, key| {
            let mut m = Map::new();
            m.insert(key.clone(), inner);
            Value::Object(m)
        })
    }
}

/// A value as text, so that `10` and `"10"`, as a YAML file or a PATCH left them, compare equal.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Every leaf of `want` whose value in `current` differs (what `current` has besides is left
/// alone: an operator's own settings stay).
pub fn differences(current: &Value, want: &Value) -> Vec<Setting> {
    fn walk(current: &Value, want: &Value, path: &mut Vec<String>, out: &mut Vec<Setting>) {
        if let Value::Object(w) = want {
            for (k, v) in w {
                path.push(k.clone());
                walk(current.get(k).unwrap_or(&Value::Null), v, path, out);
                path.pop();
            }
        } else if text(current) != text(want) {
            out.push(Setting { path: path.clone(), from: text(current), to: want.clone() });
        }
    }
    let mut out = Vec::new();
    walk(current, want, &mut Vec::new(), &mut out);
    out
}

/// PostgreSQL's parameters and their contexts (`postmaster`: needs a restart) as this node's
/// server lists them (`postgres --describe-config`); `None` while PostgreSQL is not installed.
pub fn known_parameters(cx: &Context) -> Option<HashMap<String, String>> {
    let postgres = format!("{}/postgres", crate::patroni::bin_dir(cx));
    if !cx.host_path(std::path::Path::new(&postgres)).exists() {
        return None;
    }
    // postgres refuses to run as root, even to describe itself.
    let cmd = Cmd::new("listing PostgreSQL's parameters", "runuser").args([
        "-u",
        "postgres",
        "--",
        &postgres,
        "--describe-config",
    ]);
    let out = cx.runner.run(&cmd).ok()?;
    let known: HashMap<String, String> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect();
    (!known.is_empty()).then_some(known)
}

/// One PATCH body that sets all of these (Patroni merges it into the rest): timings that
/// must agree with each other change together.
pub fn body(settings: &[Setting]) -> Value {
    fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }
    settings.iter().fold(Value::Object(Map::new()), |mut acc, s| {
        merge(&mut acc, s.body());
        acc
    })
}

/// Applies the settings through this member's REST API (as Patroni's REST user, with this
/// node's certificate), then waits until the member reads them back from the DCS.
pub fn apply(cx: &Context, url: &str, settings: &[Setting]) -> anyhow::Result<()> {
    let endpoint = format!("{url}/config");
    let want = body(settings);
    let names: Vec<String> = settings.iter().map(Setting::name).collect();
    crate::patroni::rest_call(cx, reqwest::Method::PATCH, &endpoint, &want, Duration::from_secs(10))
        .map_err(|e| e.context(format!("setting {}", names.join(", "))))?;
    // The member answers GET /config from its view of the DCS, which its next loop refreshes.
    let wait = Duration::from_secs(u64::from(cx.site.patroni.loop_wait) * 2 + 10);
    let begun = Instant::now();
    loop {
        let current = crate::units::get_json(&endpoint).map_err(|e| anyhow::anyhow!(e))?;
        if differences(&current, &want).is_empty() {
            return Ok(());
        }
        if begun.elapsed() > wait {
            anyhow::bail!(
                "Patroni took the change of {} but GET {endpoint} does not show it after {} s: see `patronictl -c /etc/patroni/patroni.yml show-config` and Patroni's journal (journalctl -u patroni)",
                names.join(", "),
                wait.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_compare_as_text_and_extra_settings_stay() {
        let current = json!({ "ttl": 30, "postgresql": { "parameters": { "max_wal_senders": 10, "work_mem": "4MB", "mine": "x" } } });
        let want = json!({ "ttl": 30, "loop_wait": 10, "postgresql": { "parameters": { "max_wal_senders": "10", "work_mem": "8MB" } } });
        let d = differences(&current, &want);
        let names: Vec<String> = d.iter().map(Setting::name).collect();
        assert_eq!(names, ["loop_wait", "postgresql.parameters.work_mem"]);
        assert_eq!(d[0].from, None);
        assert_eq!(d[1].from.as_deref(), Some("4MB"));
        assert_eq!(d[1].parameter(), Some("work_mem"));
        assert_eq!(d[1].body(), json!({ "postgresql": { "parameters": { "work_mem": "8MB" } } }));
        assert!(differences(&json!({ "synchronous_mode": true }), &json!({ "synchronous_mode": true })).is_empty());
        assert_eq!(
            body(&d),
            json!({ "loop_wait": 10, "postgresql": { "parameters": { "work_mem": "8MB" } } }),
            "one PATCH for all"
        );
    }
}
