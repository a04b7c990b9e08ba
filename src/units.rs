//! systemd units from the templates in `units/`; the daemons this node runs and how each one
//! shows that it works; starting them and waiting (with a deadline) until they are healthy.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{DcsKind, Role};
use crate::context::Context;
use crate::dcs;
use crate::exec::Cmd;

pub const ETCD: &str = include_str!("../units/etcd.service");
pub const PATRONI: &str = include_str!("../units/patroni.service");
pub const VIP_MANAGER: &str = include_str!("../units/vip-manager.service");
pub const CONSUL: &str = include_str!("../units/consul.service");

/// A value for a unit template's `{{name}}`, written the way systemd reads it back where the
/// placeholder stands (systemd.syntax(7), systemd.service(5)): a value is data, it never adds a
/// setting, a line, an argument or a specifier. What cannot be written there is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fill {
    /// The program of an `Exec*=` line: quoted unless plain, `%` doubled. systemd takes no `$`
    /// variables there and refuses quotes and backslashes in it.
    Program(PathBuf),
    /// One argument of an `Exec*=` line: quoted unless plain, C-escaped, `$` and `%` doubled.
    Arg(String),
    /// A setting's value, a part of one, or a comment: `%` doubled; a backslash (which would
    /// continue the line at its end) is refused.
    Text(String),
    /// One path of a whitespace-separated list (`ReadWritePaths=`), quoted, `%` doubled;
    /// `-` first: a path that does not exist is skipped, not a failed start.
    Paths(Vec<PathBuf>),
    /// `Environment=` lines, one a variable, quoted and C-escaped, `%` doubled.
    Env(Vec<(&'static str, String)>),
}

impl Fill {
    fn render(&self) -> Result<String, String> {
        let checked = |s: &str| match s.chars().find(|c| c.is_control()) {
            Some(c) => Err(format!("{s:?} holds the control character {c:?}")),
            None => Ok(s.replace('%', "%%")),
        };
        let refuse = |s: &str, bad: &str| match s.chars().find(|c| bad.contains(*c)) {
            Some(c) => Err(format!("{s:?}: systemd cannot take {c:?} here")),
            None => checked(s),
        };
        // A word of these characters reads back as itself unquoted: units stay as an operator
        // would write them (`ExecStart=/usr/bin/patroni /etc/patroni/patroni.yml`).
        let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+@:=,".contains(c));
        let quoted = |s: &str, dollar: bool| -> Result<String, String> {
            if plain(s) {
                return Ok(s.to_string());
            }
            let s = checked(s)?.replace('\\', "\\\\").replace('"', "\\\"");
            Ok(format!("\"{}\"", if dollar { s.replace('$', "$$") } else { s }))
        };
        let path = |p: &Path| -> Result<String, String> {
            let s = p.display().to_string();
            if !p.is_absolute() {
                return Err(format!("{s:?} is not an absolute path"));
            }
            let s = refuse(&s, "\"'\\")?;
            Ok(if plain(&s) { s } else { format!("\"{s}\"") })
        };
        match self {
            Fill::Program(p) => path(p),
            Fill::Arg(s) => quoted(s, true),
            Fill::Text(s) => refuse(s, "\\"),
            Fill::Paths(ps) => {
                ps.iter().map(|p| path(p).map(|q| format!("-{q}"))).collect::<Result<Vec<_>, _>>().map(|v| v.join(" "))
            }
            Fill::Env(vars) if vars.is_empty() => Ok("# (no environment)".into()),
            Fill::Env(vars) => vars
                .iter()
                .map(|(k, v)| quoted(&format!("{k}={v}"), false).map(|q| format!("Environment={q}")))
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.join("\n")),
        }
    }
}

/// Fills `{{name}}` placeholders; a value systemd would read otherwise is bad input, a
/// placeholder left unfilled a bug.
pub fn render(template: &str, vars: &[(&str, Fill)]) -> anyhow::Result<String> {
    // One pass over the template: a value is never searched for placeholders itself.
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out += &rest[..i];
        let name = rest[i + 2..].split_once("}}").map(|(n, _)| n).unwrap_or_default();
        let Some((_, fill)) = vars.iter().find(|(k, _)| *k == name) else {
            anyhow::bail!(
                "internal error: unit template placeholder left unfilled near `{}`",
                &rest[i..(i + 30).min(rest.len())]
            );
        };
        out += &fill.render().map_err(|why| crate::error::bad_input(format!("a systemd unit's {name}: {why}")))?;
        rest = &rest[i + 2 + name.len() + 2..];
    }
    Ok(out + rest)
}

/// What follows the configuration's hash on a unit's first line when a pinned program runs it.
pub const PROGRAM_MARK: &str = "; program ";

/// How a changed unit takes effect. A reload rereads the configuration only: a unit that
/// changes beyond its first line (another program path, user or limit), or whose first line
/// names another pinned version (a new program behind the same link), restarts its daemon;
/// one whose configuration alone changed gets the daemon's own verb.
pub fn verb_for(current: &str, new: &str, on_change: Verb) -> Verb {
    let split =
        |t: &str| t.split_once('\n').map_or((t.to_string(), String::new()), |(h, b)| (h.to_string(), b.to_string()));
    let ((old_head, old_body), (new_head, new_body)) = (split(current), split(new));
    let program = |head: &str| head.split_once(PROGRAM_MARK).map(|(_, v)| v.to_string());
    if old_body != new_body || program(&old_head) != program(&new_head) { Verb::Restart } else { on_change }
}

/// The node-local key of [`config_hash`]: root's only, made at first need.
pub const HASH_KEY: &str = "/var/lib/hanode/unit-hash.key";

/// What a unit carries of its configuration, so that a changed file changes the unit (and
/// restarts or reloads the daemon): HMAC-SHA256 under a key only root can read. A plain hash
/// in a world-readable unit would let anyone test guesses of the passwords in the file.
pub fn config_hash(cx: &Context, config: &str) -> anyhow::Result<String> {
    let path = cx.host_path(Path::new(HASH_KEY));
    let key = match std::fs::read(&path) {
        Ok(k) if k.len() == 32 => k,
        Ok(_) => anyhow::bail!("{} is not a 32-byte key: remove it, the next run makes a new one", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A plan writes nothing: its units show hashes under a key of its own, the same
            // for every unit of the plan.
            static PLAN_KEY: OnceLock<[u8; 32]> = OnceLock::new();
            if cx.dry_run {
                return Ok(hex::encode(hmac_sha256(PLAN_KEY.get_or_init(rand::random), config.as_bytes())));
            }
            let key: [u8; 32] = rand::random();
            crate::files::write_atomic(&path, &key, 0o600, None)?;
            key.to_vec()
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    };
    Ok(hex::encode(hmac_sha256(&key, config.as_bytes())))
}

/// HMAC (RFC 2104) over SHA-256: the units' config hashes, SCRAM verifiers.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), message);
    tag.as_ref().try_into().expect("HMAC-SHA256 is 32 bytes")
}

/// How a daemon shows that it works, by its own measure (an active unit is not enough).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Health {
    /// etcd answers the API Patroni uses: a v3 range request through the gRPC gateway (a
    /// linearizable read: only a member in touch with a quorum answers), and with vip-manager
    /// 1.x a v2 read as well.
    Etcd {
        url: String,
        v2: bool,
        /// The key range read: the cluster's own (`/service/<scope>/`).
        key: String,
        /// With etcd's authentication: Patroni's login (its token reads the range).
        login: Option<crate::etcd_auth::Login>,
    },
    /// Consul's agent knows a cluster leader (`GET /v1/status/leader`).
    Consul { url: String },
    /// Patroni's REST API: state `running` (its PostgreSQL runs), and it has reached the DCS
    /// within the leader key's TTL (`dcs_last_seen`, where the version reports it); with TLS,
    /// it serves the certificate on disk at `cert` (after a reload Patroni loads a new one at
    /// its next loop, not at once).
    Patroni { url: String, dcs_ttl: u64, cert: Option<std::path::PathBuf> },
    /// vip-manager: while this node holds the leader key (`GET /primary` on Patroni's REST API
    /// answers 200), the VIP is on one of this host's interfaces.
    Vip { patroni: String, address: IpAddr },
    /// The unit is active (no API to ask).
    Active,
}

/// What to do to a running unit whose files changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    Start,
    Restart,
    /// The daemon rereads its configuration (SIGHUP).
    Reload,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Restart => "restart",
            Verb::Reload => "reload",
        }
    }
}

/// The daemons hanode runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DaemonKind {
    Etcd,
    Consul,
    Patroni,
    VipManager,
}

impl DaemonKind {
    /// Its name in messages and step names.
    pub fn program(self) -> &'static str {
        match self {
            DaemonKind::Etcd => "etcd",
            DaemonKind::Consul => "Consul",
            DaemonKind::Patroni => "Patroni",
            DaemonKind::VipManager => "vip-manager",
        }
    }

    /// The configuration file hanode writes for it.
    /// The pinned artifact that brings its program, if one does (Patroni comes from pip or
    /// a package).
    pub fn artifact(self) -> Option<crate::artifacts::Kind> {
        match self {
            DaemonKind::Etcd => Some(crate::artifacts::Kind::Etcd),
            DaemonKind::Consul => Some(crate::artifacts::Kind::Consul),
            DaemonKind::VipManager => Some(crate::artifacts::Kind::VipManager),
            DaemonKind::Patroni => None,
        }
    }

    pub fn config(self) -> &'static str {
        match self {
            DaemonKind::Etcd => dcs::ETCD_CONFIG,
            DaemonKind::Consul => dcs::CONSUL_CONFIG,
            DaemonKind::Patroni => crate::patroni::CONFIG,
            DaemonKind::VipManager => crate::vip::CONFIG,
        }
    }

    /// Where its unit file goes.
    pub fn unit_path(self) -> PathBuf {
        unit_path(self.unit())
    }

    pub fn unit(self) -> &'static str {
        match self {
            DaemonKind::Etcd => "etcd.service",
            DaemonKind::Consul => "consul.service",
            DaemonKind::Patroni => "patroni.service",
            DaemonKind::VipManager => "vip-manager.service",
        }
    }
}

/// Where hanode installs a unit file.
pub fn unit_path(unit: &str) -> PathBuf {
    Path::new("/etc/systemd/system").join(unit)
}

/// A daemon this node runs.
#[derive(Debug, Clone, Serialize)]
pub struct Daemon {
    pub kind: DaemonKind,
    pub health: Health,
    /// How long a start may take until it is healthy.
    pub deadline_secs: u64,
    pub on_change: Verb,
}

impl Daemon {
    pub fn unit(&self) -> &'static str {
        self.kind.unit()
    }
}

/// The daemons this node runs, in the order they start: the DCS agent, Patroni, vip-manager.
/// The one place that decides it: the units phase, the health check and `status` read it.
pub fn daemons(cx: &Context) -> Vec<Daemon> {
    let site = &cx.site;
    let me = dcs::url_host(cx.node().address);
    let scheme = crate::tls::scheme(site);
    let rest = format!("{scheme}://{me}:{}", site.patroni.rest_api_port);
    let mut out = Vec::new();
    match site.dcs.kind {
        DcsKind::Etcd if dcs::is_server(cx) => out.push(Daemon {
            kind: DaemonKind::Etcd,
            health: Health::Etcd {
                url: dcs::etcd_url(site, cx.node().address),
                v2: dcs::etcd_v2(site),
                key: format!("/service/{}/", site.cluster.name),
                login: crate::etcd_auth::enabled(site).then(|| crate::etcd_auth::patroni(cx).ok()).flatten(),
            },
            deadline_secs: 180,
            on_change: Verb::Restart,
        }),
        DcsKind::Consul => out.push(Daemon {
            kind: DaemonKind::Consul,
            health: Health::Consul { url: dcs::consul_url(site) },
            deadline_secs: 120,
            on_change: Verb::Reload,
        }),
        DcsKind::Etcd => {}
    }
    if cx.role == Role::Postgres {
        out.push(Daemon {
            kind: DaemonKind::Patroni,
            health: Health::Patroni {
                url: rest.clone(),
                dcs_ttl: u64::from(site.patroni.ttl),
                cert: site.tls.enabled.then(|| cx.host_path(&crate::tls::cert_path(DaemonKind::Patroni))),
            },
            deadline_secs: 600,
            on_change: Verb::Reload,
        });
        if let Some(v) = &site.vip {
            out.push(Daemon {
                kind: DaemonKind::VipManager,
                health: Health::Vip { patroni: rest, address: v.address },
                deadline_secs: 60,
                on_change: Verb::Restart,
            });
        }
    }
    out
}

/// The one HTTP client for health checks, peer probes and `status` (short timeouts, no proxy).
/// Once this node's certificate is on disk it trusts only the cluster CA and presents that
/// certificate; before that (a first run, or TLS off) it is a plain client.
pub fn http() -> &'static reqwest::blocking::Client {
    static TLS: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    static PLAIN: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    if let Some(c) = TLS.get() {
        return c;
    }
    match crate::tls::node_client() {
        Some(c) => TLS.get_or_init(|| c),
        None => PLAIN.get_or_init(|| crate::tls::client(None).expect("an HTTP client with rustls builds")),
    }
}

/// GET a JSON document (Patroni answers some endpoints with 503 and a JSON body on replicas:
/// the body is what counts).
pub fn get_json(url: &str) -> Result<serde_json::Value, String> {
    let resp = http().get(url).send().map_err(|e| format!("GET {url}: {e}"))?;
    let text = resp.text().map_err(|e| format!("GET {url}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("GET {url}: {e}"))
}

fn systemctl(what: &str, args: &[&str]) -> Cmd {
    Cmd::new(what, "systemctl").args(args.iter().copied())
}

pub fn is_active(cx: &Context, unit: &str) -> anyhow::Result<bool> {
    let out = cx.runner.output(&systemctl(&format!("asking whether {unit} runs"), &["is-active", "--quiet", unit]))?;
    Ok(out.success())
}

pub fn is_enabled(cx: &Context, unit: &str) -> anyhow::Result<bool> {
    let out =
        cx.runner.output(&systemctl(&format!("asking whether {unit} is enabled"), &["is-enabled", "--quiet", unit]))?;
    Ok(out.success())
}

/// `systemctl show` properties of a unit, e.g. `ActiveState`, `NRestarts`, `MainPID`.
pub fn show(cx: &Context, unit: &str, prop: &str) -> anyhow::Result<String> {
    let out = cx.runner.run(&systemctl(&format!("reading {unit}'s {prop}"), &["show", "-p", prop, "--value", unit]))?;
    Ok(out.stdout.trim().to_string())
}

pub fn main_pid(cx: &Context, unit: &str) -> anyhow::Result<u32> {
    Ok(show(cx, unit, "MainPID")?.parse().unwrap_or(0))
}

/// Whether the daemon works now; else why not.
pub fn probe(cx: &Context, d: &Daemon) -> Result<(), String> {
    if !is_active(cx, d.unit()).unwrap_or(false) {
        let state = show(cx, d.unit(), "ActiveState").unwrap_or_else(|_| "unknown".into());
        return Err(format!("{} is not active ({state})", d.unit()));
    }
    answers(&d.health)
}

/// Whether the daemon's own API says it works (the unit aside); else why not.
pub fn answers(health: &Health) -> Result<(), String> {
    answers_with(http(), health)
}

/// [`answers`], asking with the given client.
pub fn answers_with(http: &reqwest::blocking::Client, health: &Health) -> Result<(), String> {
    let answer = |r: reqwest::Result<reqwest::blocking::Response>, what: &str| match r {
        Ok(r) if r.status().is_success() => Ok(r),
        Ok(r) => Err(format!("{what} answers {}", r.status())),
        // The causes say what happened: refused, timed out, no route.
        Err(e) => Err(format!("{what}: {:#}", anyhow::Error::new(e))),
    };
    match health {
        Health::Active => Ok(()),
        Health::Etcd { url, v2, key, login } => {
            let gw = crate::etcd_auth::Gateway { http, url: url.clone() };
            if *v2 {
                // What Patroni's etcd (v2) client does: a quorum read under its scope, as
                // Patroni where etcd's authentication is on; nothing there yet is an answer.
                gw.v2(reqwest::Method::GET, &format!("keys{key}?quorum=true"), None, login.as_ref())
                    .map_err(|e| format!("etcd's v2 API: {e}"))?;
                return Ok(());
            }
            // The range request Patroni's etcd3 client makes, through etcd's HTTP gateway, with
            // Patroni's token where etcd's authentication is on (not yet on: none).
            let token = match login {
                Some(l) => gw.authenticate(l)?,
                None => None,
            };
            let mut body = crate::etcd_auth::prefix_range(key);
            body["limit"] = serde_json::json!(1);
            let r = gw.post("kv/range", &body, token.as_deref()).map_err(|e| format!("etcd's v3 API: {e}"))?;
            r.get("header")
                .ok_or_else(|| format!("etcd's v3 API (POST {url}/v3/kv/range) answers without a header"))?;
            Ok(())
        }
        Health::Consul { url } => {
            let what = format!("Consul (GET {url}/v1/status/leader)");
            let leader = json(answer(http.get(format!("{url}/v1/status/leader")).send(), &what)?);
            match leader.as_str() {
                Some(l) if !l.is_empty() => Ok(()),
                _ => Err(format!("{what}: no cluster leader")),
            }
        }
        Health::Patroni { url, dcs_ttl, cert } => {
            let what = format!("Patroni (GET {url}/patroni)");
            let resp = answer(http.get(format!("{url}/patroni")).send(), &what)?;
            if let Some(path) = cert {
                let served = resp.extensions().get::<reqwest::tls::TlsInfo>().and_then(|i| i.peer_certificate());
                let on_disk = std::fs::read_to_string(path).map(|pem| crate::tls::ders(&pem)).unwrap_or_default();
                if let (Some(served), Some(on_disk)) = (served, on_disk.first()) {
                    if served != on_disk.as_slice() {
                        return Err(format!(
                            "{what}: the REST API still serves an older certificate than {} (Patroni loads it at its next loop)",
                            path.display()
                        ));
                    }
                }
            }
            let st = json(resp);
            // `running` (Patroni 3.0+ may say `streaming` for a replica).
            match st["state"].as_str() {
                Some("running" | "streaming") => {}
                other => return Err(format!("{what}: PostgreSQL is {}", other.unwrap_or("in no known state"))),
            }
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            match st["dcs_last_seen"].as_u64() {
                Some(seen) if now.saturating_sub(seen) > *dcs_ttl => Err(format!(
                    "{what}: PostgreSQL runs, but Patroni last reached the DCS {} s ago (ttl {dcs_ttl} s)",
                    now.saturating_sub(seen)
                )),
                _ => Ok(()),
            }
        }
        Health::Vip { patroni, address } => {
            let leader = http.get(format!("{patroni}/primary")).send().is_ok_and(|r| r.status().is_success());
            let local = crate::identity::local_facts().map(|(_, a)| a).unwrap_or_default();
            if leader && !local.contains(address) {
                return Err(format!("this node is the leader, but the VIP {address} is on none of its interfaces"));
            }
            Ok(())
        }
    }
}

fn json(r: reqwest::blocking::Response) -> serde_json::Value {
    r.text().ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// `HANODE_HEALTH_TIMEOUT` (seconds) caps every wait for a daemon to become healthy.
pub fn deadline(d: &Daemon) -> u64 {
    let cap = std::env::var("HANODE_HEALTH_TIMEOUT").ok().and_then(|v| v.parse::<u64>().ok());
    cap.map_or(d.deadline_secs, |c| c.min(d.deadline_secs))
}

/// A restart loop longer than this ends a wait at once.
const MAX_RESTARTS: u64 = 3;

/// Polls until the daemon is healthy; fails at once when its unit enters `failed` or keeps
/// restarting, else at the deadline, with the unit's last journal lines.
pub fn wait_healthy(cx: &Context, d: &Daemon) -> anyhow::Result<()> {
    let restarts = |cx: &Context| show(cx, d.unit(), "NRestarts").ok().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    let restarts_before = restarts(cx);
    let secs = deadline(d);
    let begun = Instant::now();
    let mut last_note = Instant::now();
    let why = loop {
        let why = match probe(cx, d) {
            Ok(()) => {
                crate::ui::info(&format!("{} is healthy after {:.1} s", d.unit(), begun.elapsed().as_secs_f32()));
                return Ok(());
            }
            Err(why) => why,
        };
        // A unit that stopped is not coming up by itself: no use waiting for it.
        if let Ok(state @ ("failed" | "inactive")) = show(cx, d.unit(), "ActiveState").as_deref() {
            break format!("{} is {state}", d.unit());
        }
        let n = restarts(cx).saturating_sub(restarts_before);
        if n >= MAX_RESTARTS {
            break format!("{} was restarted {n} times by systemd while hanode waited", d.unit());
        }
        if begun.elapsed() >= Duration::from_secs(secs) {
            break format!("{} did not become healthy within {secs} s: {why}", d.unit());
        }
        if last_note.elapsed() >= Duration::from_secs(15) {
            last_note = Instant::now();
            crate::ui::info(&format!(
                "waiting for {} ({:.0} s of {secs} s): {why}",
                d.unit(),
                begun.elapsed().as_secs_f32()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    anyhow::bail!("{why}; {}", journal(cx, d.unit()))
}

/// A unit's last journal lines, for an error message.
fn journal(cx: &Context, unit: &str) -> String {
    let cmd = Cmd::new("reading the journal", "journalctl").args(["-u", unit, "-n", "25", "--no-pager", "-o", "cat"]);
    match cx.runner.output(&cmd) {
        Ok(out) => format!(
            "its last journal lines (journalctl -u {unit}):\n    {}",
            out.stdout.trim_end().replace('\n', "\n    ")
        ),
        Err(e) => format!("its journal could not be read: {e:#}"),
    }
}

/// Starting (or restarting, reloading) a unit, then waiting until it is healthy.
#[derive(Debug, Clone, Serialize)]
pub struct Start {
    pub daemon: Daemon,
    pub verb: Verb,
}

/// Runs `systemctl VERB unit` and waits until the daemon is healthy; under enforcing SELinux a
/// failure comes with the AVC denials since the start.
pub fn start(cx: &Context, s: &Start) -> anyhow::Result<()> {
    let since = std::time::SystemTime::now();
    let unit = s.daemon.unit();
    if s.daemon.kind == DaemonKind::Patroni && s.verb == Verb::Restart {
        crate::patroni::hand_over_before_restart(cx)?;
    }
    cx.runner
        .run(&systemctl(&format!("{} {unit}", s.verb.as_str()), &[s.verb.as_str(), unit]))
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", journal(cx, unit)))
        .and_then(|_| wait_healthy(cx, &s.daemon))
        .map_err(|e| crate::selinux::explain(cx, since, e))
}

/// The end of every converging run: each daemon of this node is healthy (with its deadline),
/// or the run fails naming the ones that are not. Nothing to change is not the same as working.
pub fn verify(cx: &Context) -> anyhow::Result<()> {
    crate::ui::section("health");
    let since = std::time::SystemTime::now();
    let problems: Vec<String> =
        daemons(cx).iter().filter_map(|d| wait_healthy(cx, d).err().map(|e| format!("{e:#}"))).collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(crate::selinux::explain(
        cx,
        since,
        anyhow::anyhow!(
            "{} of this node's services {} not healthy:\n  {}",
            problems.len(),
            if problems.len() == 1 { "is" } else { "are" },
            problems.join("\n  ")
        ),
    ))
}

/// For `plan`: the daemons that run but do not work, as findings (no waiting).
pub fn findings(cx: &Context) -> Vec<crate::engine::Check> {
    daemons(cx)
        .iter()
        .filter(|d| is_active(cx, d.unit()).unwrap_or(false))
        .filter_map(|d| probe(cx, d).err().map(|why| crate::engine::Check::warn(&format!("health {}", d.unit()), why)))
        .collect()
}
