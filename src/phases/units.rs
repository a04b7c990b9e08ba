//! The `units` phase: the systemd units of this node's daemons ([`units::daemons`]), enabled
//! and started in order, each waited for until healthy; etcd's logins and Consul's tokens
//! between the DCS and Patroni.

use std::path::{Path, PathBuf};

use super::file;
use crate::config::Role;
use crate::context::Context;
use crate::engine::{Action, Change, Phase, Stage, Step, Steps};
use crate::error::{not_yet, not_yet_for};
use crate::exec::Cmd;
use crate::files::FileSpec;
use crate::units::{self, DaemonKind, Start, Verb};
use crate::{consul_acl, dcs, etcd_auth, patroni, vip};

pub const PHASE: Phase = Phase::new(
    "units",
    "systemd units; enable and start in order, wait until healthy",
    Stage::Firstboot,
    Role::ALL,
    steps,
);

fn steps(cx: &Context) -> Steps {
    let mut steps: Vec<Box<dyn Step>> = Vec::new();
    for service in services(cx).map_err(|e| not_yet("install and start the services", e))? {
        let kind = service.daemon.kind;
        steps.push(Box::new(service));
        if kind == DaemonKind::Etcd && etcd_auth::enabled(&cx.site) {
            steps.push(Box::new(EtcdAuth));
        }
        if kind == DaemonKind::Consul {
            steps.push(Box::new(ConsulAcl));
        }
        if kind == DaemonKind::Patroni {
            steps.push(Box::new(DynamicConfig));
            steps.push(Box::new(Roles));
        }
    }
    Ok(steps)
}

/// What a running daemon's API says must be done: nothing in an image build (nothing runs
/// there); not yet observable while it does not answer.
fn asked<T>(cx: &Context, what: &str, plan: Result<Vec<T>, String>) -> anyhow::Result<Vec<T>> {
    match plan {
        Ok(calls) => Ok(calls),
        Err(_) if !cx.systemd_running() => Ok(Vec::new()),
        Err(e) => Err(not_yet(what, anyhow::anyhow!("{e}"))),
    }
}

/// etcd's users and roles, then its authentication on: after this member's etcd is healthy,
/// before Patroni starts (it logs in). Every member runs it; the first one does the work.
struct EtcdAuth;

impl Step for EtcdAuth {
    fn name(&self) -> String {
        "etcd authentication".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let url = dcs::etcd_url(&cx.site, cx.node().address);
        let gw = etcd_auth::Gateway { http: units::http(), url: url.clone() };
        let what = "etcd's users, roles and authentication";
        // Only an etcd with quorum can be asked (its /health needs no login, which may be what
        // this step is to repair): a run waits for it as long as for etcd's start.
        if cx.systemd_running() {
            let daemons = units::daemons(cx);
            let wait = daemons.iter().find(|d| d.kind == DaemonKind::Etcd).map_or(180, units::deadline);
            dcs::etcd_health(&url).map_err(|why| {
                not_yet_for(
                    what,
                    std::time::Duration::from_secs(wait),
                    anyhow::anyhow!(
                        "{} did not become healthy ({why}): its users and roles cannot be checked until it has quorum",
                        DaemonKind::Etcd.unit()
                    ),
                )
            })?;
        }
        let mut changes = Vec::new();
        for (api, users) in etcd_auth::users(cx)? {
            let (calls, auth_left_off) = match api {
                etcd_auth::Api::V3 => (gw.plan(&users), false),
                etcd_auth::Api::V2 => match gw.plan_v2(&users, &cx.site.cluster.name) {
                    Ok(p) => (Ok(p.calls), p.auth_left_off),
                    Err(e) => (Err(e), false),
                },
            };
            let calls = asked(cx, what, calls)?;
            if auth_left_off {
                crate::ui::check(
                    crate::ui::Status::Warn,
                    "etcd authentication",
                    "cluster runs with etcd's v2 authentication off: left off, or the members not yet re-run would lose etcd; run `hanode init` on every member (each gets its logins), then turn it on as etcd's root (the secrets file's root_password): curl --cacert /etc/hanode/tls/ca.crt --cert /etc/hanode/tls/node.crt --key /etc/hanode/tls/node.key -u root -X PUT https://<member>:2379/v2/auth/enable",
                );
            }
            changes.extend(
                calls
                    .into_iter()
                    .map(|call| Change::new(call.summary_on(api), Action::Etcd { url: url.clone(), api, call })),
            );
        }
        Ok(changes)
    }
}

/// Patroni's and vip-manager's Consul tokens and policies: after this node's agent is healthy
/// (its cluster has a leader), before Patroni starts. Every node runs it; the first does it.
struct ConsulAcl;

impl Step for ConsulAcl {
    fn name(&self) -> String {
        "Consul ACL tokens".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let url = dcs::consul_url(&cx.site);
        let agent = consul_acl::Agent { http: units::http(), url: url.clone() };
        let (management, clients) = (consul_acl::management(cx)?, consul_acl::clients(cx)?);
        let what = "Consul's ACL policies and tokens for Patroni and vip-manager";
        let calls = asked(cx, what, agent.plan(&management, &clients))?;
        Ok(calls
            .into_iter()
            .map(|call| Change::new(call.summary(), Action::Consul { url: url.clone(), call }))
            .collect())
    }
}

/// Patroni's dynamic configuration (timings, `[postgresql] parameters`) brought to the site
/// file's, once this member's Patroni is healthy: a new cluster starts with it, a running one
/// gets a changed value here (every member then applies it). What the DCS holds besides is
/// left alone.
struct DynamicConfig;

impl Step for DynamicConfig {
    fn name(&self) -> String {
        "Patroni's dynamic configuration".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        use crate::dynamic_config as dynamic;
        if !cx.systemd_running() {
            return Ok(Vec::new());
        }
        let url = patroni::rest_url(cx);
        let what = "Patroni's dynamic configuration";
        // Patroni healthy a moment ago may still be slow to answer (just started, busy with
        // its first loop): a run waits for it a while.
        let current = units::get_json(&format!("{url}/config"))
            .map_err(|e| not_yet_for(what, std::time::Duration::from_secs(60), anyhow::anyhow!(e)))?;
        let want = serde_json::to_value(patroni::dynamic(cx))?;
        let settings = dynamic::differences(&current, &want);
        if settings.is_empty() {
            return Ok(Vec::new());
        }
        // Which parameters need a restart, where this node's PostgreSQL can say (the patroni
        // phase's check has refused unknown names already).
        let known = dynamic::known_parameters(cx);
        let lines: Vec<String> = settings
            .iter()
            .map(|s| {
                let restart =
                    s.parameter().and_then(|n| known.as_ref()?.get(n)).is_some_and(|context| context == "postmaster");
                format!(
                    "set {} to {} (was {}){}",
                    s.name(),
                    s.to,
                    s.from.as_deref().unwrap_or("unset"),
                    if restart {
                        "; PostgreSQL must restart for it: pending until `hanode restart --rolling`"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        let summary = format!(
            "Patroni: {} setting{} of the dynamic configuration, for every member (one PATCH /config)",
            settings.len(),
            if settings.len() == 1 { "" } else { "s" }
        );
        Ok(vec![Change {
            diff: Some(lines.join("\n")),
            ..Change::new(summary, Action::DynamicConfig { url, settings })
        }])
    }
}

/// The site file's application roles and databases ([`crate::roles`]), on the leader once
/// Patroni is healthy.
struct Roles;

impl Step for Roles {
    fn name(&self) -> String {
        "PostgreSQL roles and databases".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let pg = &cx.site.postgresql;
        if !cx.systemd_running() || (pg.users.is_empty() && pg.databases.is_empty()) {
            return Ok(Vec::new());
        }
        // A PostgreSQL just (re)started by Patroni may not take connections yet.
        let found = crate::roles::observe(cx)
            .map_err(|e| not_yet_for("the site file's roles and databases", std::time::Duration::from_secs(60), e))?;
        crate::roles::changes(cx, &found)
    }
}

/// One daemon of this node with its rendered unit file.
struct Service {
    daemon: units::Daemon,
    text: String,
}

fn services(cx: &Context) -> anyhow::Result<Vec<Service>> {
    use units::Fill::{Arg, Paths, Program, Text};
    let site = &cx.site;
    let bin = &site.install.bin_dir;
    // The certificates count as configuration: a new one restarts or reloads the daemons.
    let certs = crate::tls::fingerprint(cx);
    let common = |kind: DaemonKind, program: PathBuf, text: &str| -> anyhow::Result<Vec<(&'static str, units::Fill)>> {
        // A new pin puts a new program behind the same link in bin_dir: the unit's first line
        // names the version, and a new one restarts the daemon onto it (units::verb_for).
        let hash = units::config_hash(cx, &format!("{text}{certs}"))?;
        let stamp = match kind.artifact().and_then(|a| site.artifact(a)) {
            Some(pin) => format!("{hash}{}{}", units::PROGRAM_MARK, pin.version),
            None => hash,
        };
        Ok(vec![
            ("cluster", Text(site.cluster.name.clone())),
            ("program", Program(program)),
            ("config", Arg(kind.config().to_string())),
            ("config_hash", Text(stamp)),
        ])
    };
    let daemons = units::daemons(cx);
    // Patroni and vip-manager start after this node's DCS agent, if it runs one.
    let dcs_unit =
        daemons.iter().find(|d| matches!(d.kind, DaemonKind::Etcd | DaemonKind::Consul)).map_or("", |d| d.unit());
    let mut out = Vec::new();
    for daemon in daemons.iter().cloned() {
        let kind = daemon.kind;
        let text = match kind {
            DaemonKind::Etcd => {
                // What the dcs phase wrote in this run; in a run without it (`init phase
                // units`), the file etcd runs with, not a new render that could differ.
                let on_disk = || std::fs::read_to_string(cx.host_path(Path::new(kind.config()))).ok();
                let text = match cx.rendered_already(kind).or_else(on_disk) {
                    Some(text) => text,
                    None => dcs::etcd_config_text(cx)?,
                };
                let mut vars = common(kind, bin.join("etcd"), &text)?;
                vars.push(("data_dir", Paths(vec![dcs::etcd_data_dir(site)])));
                units::render(units::ETCD, &vars)?
            }
            DaemonKind::Consul => {
                let mut vars = common(kind, bin.join("consul"), &dcs::consul_config(cx)?)?;
                vars.extend([
                    ("config_arg", Arg(format!("-config-file={}", kind.config()))),
                    ("data_dir", Paths(vec![dcs::consul_data_dir(site)])),
                ]);
                units::render(units::CONSUL, &vars)?
            }
            DaemonKind::Patroni => {
                let pg = &cx.profile.postgres;
                let mut vars = common(kind, patroni::program(cx), &patroni::config_text(cx)?)?;
                vars.extend([
                    ("dcs_unit", Text(dcs_unit.to_string())),
                    ("pg_user", Text(pg.user.clone())),
                    ("pg_group", Text(pg.group.clone())),
                    ("write_paths", Paths(patroni::write_paths(cx))),
                ]);
                units::render(units::PATRONI, &vars)?
            }
            DaemonKind::VipManager => {
                let v = site.vip.as_ref().expect("vip-manager runs only with a VIP");
                let mut vars = common(kind, bin.join("vip-manager"), &vip::config_text(cx)?)?;
                vars.extend([
                    ("config_arg", Arg(format!("--config={}", kind.config()))),
                    ("dcs_unit", Text(dcs_unit.to_string())),
                    ("vip", Text(v.address.to_string())),
                    ("vip_cidr", Arg(format!("{}/{}", v.address, v.prefix))),
                    ("interface", Arg(vip::interface(cx)?)),
                    ("environment", units::Fill::Env(vip::environment(cx))),
                ]);
                units::render(units::VIP_MANAGER, &vars)?
            }
        };
        out.push(Service { daemon, text });
    }
    Ok(out)
}

impl Service {
    fn verb_on_change(&self, cx: &Context) -> Verb {
        let current = std::fs::read_to_string(cx.host_path(&self.daemon.kind.unit_path())).unwrap_or_default();
        units::verb_for(&current, &self.text, self.daemon.on_change)
    }
}

impl Step for Service {
    fn name(&self) -> String {
        self.daemon.unit().to_string()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let unit = self.daemon.unit();
        let mut changes = file(cx, FileSpec::new(self.daemon.kind.unit_path(), self.text.clone(), 0o644))?;
        let changed = !changes.is_empty();
        // In an image build nothing runs: the unit file is installed, the rest waits for boot.
        if !cx.systemd_running() {
            return Ok(changes);
        }
        let sys = |what: String, args: &[&str]| Cmd::new(what, "systemctl").args(args.iter().copied());
        if changed {
            changes.push(Change::run(
                "systemctl daemon-reload",
                sys("reloading systemd's units".into(), &["daemon-reload"]),
            ));
        }
        if !units::is_enabled(cx, unit)? {
            changes.push(Change::run(
                format!("systemctl enable {unit}"),
                sys(format!("enabling {unit}"), &["enable", unit]),
            ));
        }
        let active = units::is_active(cx, unit)?;
        // A unit that failed (its restart limit hit, say) starts again only once reset.
        if !active && units::show(cx, unit, "ActiveState")? == "failed" {
            changes.push(Change::run(
                format!("systemctl reset-failed {unit} (it had failed)"),
                sys(format!("resetting the failed state of {unit}"), &["reset-failed", unit]),
            ));
        }
        let verb = if !active {
            Some(Verb::Start)
        } else if changed {
            Some(self.verb_on_change(cx))
        } else {
            None
        };
        if let Some(verb) = verb {
            let deadline = self.daemon.deadline_secs;
            let handover = if self.daemon.kind == DaemonKind::Patroni && verb == Verb::Restart {
                " (a switchover first if this node leads)"
            } else {
                ""
            };
            changes.push(Change::new(
                format!("systemctl {} {unit}{handover} and wait until healthy ({deadline} s at most)", verb.as_str()),
                Action::Start(Start { daemon: self.daemon.clone(), verb }),
            ));
        }
        Ok(changes)
    }
}
