//! The phases that make this node a member of the running cluster: `dcs` (etcd or Consul),
//! `patroni`, `vip` (vip-manager) and `units` (systemd: install, enable, start, wait).

use std::path::{Path, PathBuf};

use crate::config::{DcsKind, Role};
use crate::context::Context;
use crate::engine::{Action, Change, Check, Phase, Stage, Step};
use crate::error::Kind;
use crate::exec::Cmd;
use crate::files::FileSpec;
use crate::units::{self, DaemonKind, Start, Verb};
use crate::{consul_acl, dcs, etcd_auth, patroni, vip};

type Steps = anyhow::Result<Vec<Box<dyn Step>>>;
type Observe = Box<dyn Fn(&Context) -> anyhow::Result<Vec<Change>>>;

/// A phase made of a list of steps, for the small phases here.
struct Simple {
    name: &'static str,
    about: &'static str,
    roles: &'static [Role],
    applies: fn(&Context) -> bool,
    checks: fn(&Context) -> Vec<Check>,
    steps: fn(&Context) -> Steps,
}

impl Phase for Simple {
    fn name(&self) -> &'static str {
        self.name
    }
    fn about(&self) -> &'static str {
        self.about
    }
    fn stage(&self) -> Stage {
        Stage::Firstboot
    }
    fn roles(&self) -> &'static [Role] {
        self.roles
    }
    fn checks(&self, cx: &Context) -> Vec<Check> {
        if (self.applies)(cx) { (self.checks)(cx) } else { Vec::new() }
    }
    fn steps(&self, cx: &Context) -> anyhow::Result<Vec<Box<dyn Step>>> {
        if (self.applies)(cx) { (self.steps)(cx) } else { Ok(Vec::new()) }
    }
}

/// A step from a closure: observe and return the changes.
struct FnStep(String, Observe);

impl Step for FnStep {
    fn name(&self) -> String {
        self.0.clone()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        (self.1)(cx)
    }
}

fn step(name: &str, f: impl Fn(&Context) -> anyhow::Result<Vec<Change>> + 'static) -> Box<dyn Step> {
    Box::new(FnStep(name.to_string(), Box::new(f)))
}

/// In a dry run, what cannot be rendered yet (no secrets file, an address not on this host)
/// is shown as pending with the reason; in a real run it is the error it is.
fn or_pending<T>(
    cx: &Context,
    what: &str,
    r: anyhow::Result<T>,
    then: impl FnOnce(T) -> anyhow::Result<Vec<Change>>,
) -> anyhow::Result<Vec<Change>> {
    match r {
        Ok(v) => then(v),
        Err(e) if cx.dry_run => Ok(vec![Change::new(
            format!("{what} (cannot be planned yet: {e:#})"),
            Action::Pending { waits_for: what.to_string() },
        )]),
        Err(e) => Err(e),
    }
}

fn file(cx: &Context, spec: FileSpec) -> anyhow::Result<Vec<Change>> {
    Ok(Change::for_file(cx, spec)?.into_iter().collect())
}

fn dir(cx: &Context, path: &Path, mode: u32, owner: &str, group: &str) -> anyhow::Result<Vec<Change>> {
    Ok(Change::for_dir(cx, path, mode, owner, group)?.into_iter().collect())
}

/// A system user for a daemon, created if missing.
fn system_user(name: &'static str, home: &'static str) -> Box<dyn Step> {
    step(&format!("user {name}"), move |_cx| {
        if nix::unistd::User::from_name(name)?.is_some() {
            return Ok(Vec::new());
        }
        let cmd = Cmd::new(format!("creating the system user {name}"), "useradd").args([
            "--system",
            "--user-group",
            "--home-dir",
            home,
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ]);
        Ok(vec![Change::run(format!("useradd --system {name}"), cmd)])
    })
}

pub fn phases() -> Vec<Box<dyn Phase>> {
    vec![
        Box::new(Simple {
            name: "dcs",
            about: "an etcd member or a Consul agent: user, data directory, configuration",
            roles: &[Role::Postgres, Role::Dcs],
            applies: |cx| cx.site.dcs.kind == DcsKind::Consul || dcs::is_server(cx),
            checks: |cx| etcd_scheme_check(cx).into_iter().collect(),
            steps: |cx| {
                Ok(match cx.site.dcs.kind {
                    DcsKind::Etcd => vec![
                        system_user("etcd", "/var/lib/etcd"),
                        step("etcd's TLS certificate and key", |cx| {
                            super::tls::key_copy(cx, DaemonKind::Etcd, "etcd", "etcd")
                        }),
                        step("etcd data directory", |cx| dir(cx, &dcs::etcd_data_dir(&cx.site), 0o700, "etcd", "etcd")),
                        step("etcd member", etcd_member),
                        step("etcd configuration", |cx| {
                            file(
                                cx,
                                FileSpec::new(
                                    dcs::ETCD_CONFIG,
                                    dcs::etcd_config(cx, &etcd_state(cx)?).to_yaml(),
                                    0o640,
                                )
                                .owned_by("root", "etcd"),
                            )
                        }),
                    ],
                    DcsKind::Consul => vec![
                        system_user("consul", "/var/lib/consul"),
                        step("Consul's TLS certificate and key", |cx| {
                            super::tls::key_copy(cx, DaemonKind::Consul, "consul", "consul")
                        }),
                        step("consul data directory", |cx| {
                            dir(cx, &dcs::consul_data_dir(&cx.site), 0o700, "consul", "consul")
                        }),
                        step("consul configuration", |cx| {
                            or_pending(cx, "write the Consul configuration", dcs::consul_config(cx), |text| {
                                file(
                                    cx,
                                    FileSpec::new(dcs::CONSUL_CONFIG, text, 0o640).owned_by("root", "consul").secret(),
                                )
                            })
                        }),
                    ],
                })
            },
        }),
        Box::new(Simple {
            name: "patroni",
            about: "patroni.yml from the site and secrets files, checked by patroni --validate-config",
            roles: &[Role::Postgres],
            applies: |_| true,
            checks: |cx| match &cx.secrets {
                Some(_) => Vec::new(),
                None => {
                    let msg = format!(
                        "Patroni needs passwords from {}: write it with `hanode secrets generate` (mode 0600)",
                        cx.secrets_path.display()
                    );
                    vec![if cx.dry_run {
                        Check::warn("secrets", msg)
                    } else {
                        Check::error("secrets", Kind::BadInput, msg)
                    }]
                }
            },
            steps: |_| {
                Ok(vec![
                    step("configuration directory", |cx| {
                        let pg = &cx.profile.postgres;
                        dir(cx, Path::new("/etc/patroni"), 0o750, "root", &pg.group)
                    }),
                    step("data directory parent", |cx| {
                        let (data, _) = patroni::dirs(cx);
                        let pg = &cx.profile.postgres;
                        match (&cx.site.disks, data.parent()) {
                            (None, Some(parent)) => dir(cx, parent, 0o750, &pg.user, &pg.group),
                            _ => Ok(Vec::new()),
                        }
                    }),
                    step("Patroni's and PostgreSQL's TLS certificate and key", |cx| {
                        let pg = &cx.profile.postgres;
                        super::tls::key_copy(cx, DaemonKind::Patroni, &pg.user, &pg.group)
                    }),
                    step("patroni.yml", patroni_yml),
                ])
            },
        }),
        Box::new(Simple {
            name: "vip",
            about: "vip-manager's configuration: the VIP follows the leader key",
            roles: &[Role::Postgres],
            applies: |cx| cx.site.vip.is_some(),
            checks: |cx| match vip::interface(cx) {
                Ok(i) => vec![Check::ok("vip interface", i)],
                Err(e) if cx.dry_run => vec![Check::warn("vip interface", format!("{e:#}"))],
                Err(e) => vec![Check::error("vip interface", Kind::BadInput, format!("{e:#}"))],
            },
            steps: |_| {
                Ok(vec![
                    system_user(vip::USER, "/nonexistent"),
                    step("vip-manager's TLS certificate and key", |cx| {
                        super::tls::key_copy(cx, DaemonKind::VipManager, vip::USER, vip::USER)
                    }),
                    step("vip-manager.yml", |cx| {
                        let text = vip::interface(cx).and_then(|i| vip::config(cx, &i));
                        or_pending(cx, "write vip-manager.yml", text, |text| {
                            // It holds its DCS password or token: readable by vip-manager, not
                            // writable by it.
                            file(cx, FileSpec::new(vip::CONFIG, text, 0o640).owned_by("root", vip::USER).secret())
                        })
                    }),
                ])
            },
        }),
        Box::new(Simple {
            name: "units",
            about: "systemd units; enable and start in order, wait until healthy",
            roles: &[Role::Postgres, Role::Dcs],
            applies: |_| true,
            checks: |_| Vec::new(),
            steps: |cx| match services(cx) {
                Ok(s) => {
                    let mut steps = Vec::new();
                    for service in s {
                        let kind = service.daemon.kind;
                        steps.push(Box::new(service) as Box<dyn Step>);
                        if kind == DaemonKind::Etcd && etcd_auth::enabled(&cx.site) {
                            steps.push(Box::new(EtcdAuth));
                        }
                        if kind == DaemonKind::Consul {
                            steps.push(Box::new(ConsulAcl));
                        }
                    }
                    Ok(steps)
                }
                Err(e) if cx.dry_run => Ok(vec![step("services", move |_| {
                    Ok(vec![Change::new(
                        format!("install and start the services (cannot be planned yet: {e:#})"),
                        Action::Pending { waits_for: "the services".into() },
                    )])
                })]),
                Err(e) => Err(e),
            },
        }),
    ]
}

/// A member with data keeps the peer URLs its cluster stored: a re-run must not switch it
/// between http and https ([tls] enabled changed, or a hanode that made TLS its default
/// meets a plain cluster) — its peers would no longer reach it, and, node by node, the
/// cluster would lose its quorum.
fn etcd_scheme_check(cx: &Context) -> Option<Check> {
    if cx.site.dcs.kind != DcsKind::Etcd || !cx.host_path(&dcs::etcd_data_dir(&cx.site).join("member")).exists() {
        return None;
    }
    let current = std::fs::read_to_string(cx.host_path(Path::new(dcs::ETCD_CONFIG))).ok()?;
    let peer =
        serde_norway::from_str::<serde_norway::Value>(&current).ok()?.get("listen-peer-urls")?.as_str()?.to_string();
    let want = crate::tls::scheme(&cx.site);
    if peer.starts_with(&format!("{want}://")) {
        return None;
    }
    Some(Check::error(
        "etcd scheme",
        Kind::Refused,
        format!(
            "this etcd member runs with {peer} and the site file now asks for {want}: a re-run does not move a running etcd cluster between http and https (its members would stop reaching each other). Keep [tls] enabled = {} in {} for this cluster, or build the cluster anew",
            want == "http",
            cx.site.path.display()
        ),
    ))
}

/// `new` for the first bootstrap; `existing` when this member joins a running cluster. Once
/// the member has data, what was written stays (etcd ignores it then).
fn etcd_state(cx: &Context) -> anyhow::Result<String> {
    let site = &cx.site;
    if cx.host_path(&dcs::etcd_data_dir(site).join("member")).exists() {
        let current = std::fs::read_to_string(cx.host_path(Path::new(dcs::ETCD_CONFIG))).unwrap_or_default();
        let state = serde_norway::from_str::<serde_norway::Value>(&current)
            .ok()
            .and_then(|v| v.get("initial-cluster-state")?.as_str().map(str::to_string));
        return Ok(state.unwrap_or_else(|| "new".into()));
    }
    Ok(if running_peers(cx).is_empty() { "new".into() } else { "existing".into() })
}

/// Other etcd members that answer healthy now.
fn running_peers(cx: &Context) -> Vec<String> {
    dcs::servers(&cx.site)
        .iter()
        .filter(|m| m.name != cx.node().name)
        .map(|m| dcs::etcd_url(&cx.site, m.address))
        .filter(|u| dcs::etcd_health(u).is_ok())
        .collect()
}

/// A member joining a running cluster is first added to it (through a running member's
/// gateway; as root where etcd's authentication is on).
fn etcd_member(cx: &Context) -> anyhow::Result<Vec<Change>> {
    if cx.host_path(&dcs::etcd_data_dir(&cx.site).join("member")).exists() {
        return Ok(Vec::new());
    }
    let Some(peer) = running_peers(cx).into_iter().next() else {
        return Ok(Vec::new());
    };
    let root = if etcd_auth::enabled(&cx.site) { Some(etcd_auth::root(cx)?) } else { None };
    let gw = etcd_auth::Gateway { http: units::http(), url: peer.clone() };
    let urls = gw.member_peer_urls(root.as_ref()).map_err(|e| anyhow::anyhow!("listing etcd's members: {e}"))?;
    let peer_url =
        format!("{}://{}:{}", crate::tls::scheme(&cx.site), dcs::url_host(cx.node().address), cx.site.dcs.peer_port);
    if urls.contains(&peer_url) {
        return Ok(Vec::new());
    }
    let call = etcd_auth::Call::MemberAdd { name: cx.node().name.clone(), peer_url };
    Ok(vec![Change::new(call.summary(), Action::Etcd { url: peer, api: etcd_auth::Api::V3, call })])
}

/// Polls this member's /health until it has quorum, or fails at the etcd's deadline.
fn wait_for_quorum(cx: &Context, url: &str) -> anyhow::Result<()> {
    let secs = units::daemons(cx).iter().find(|d| d.kind == DaemonKind::Etcd).map_or(180, units::deadline);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let why = match dcs::etcd_health(url) {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if std::time::Instant::now() >= end {
            anyhow::bail!(
                "etcd.service did not become healthy within {secs} s ({why}): its users and roles cannot be checked"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// What a running daemon's API says must be done, or what to plan instead (`Err`): nothing in
/// an image build (nothing runs there), a pending change in a plan made before it answers.
fn asked<T>(
    cx: &Context,
    what: &str,
    daemon: &str,
    plan: Result<Vec<T>, String>,
) -> anyhow::Result<Result<Vec<T>, Vec<Change>>> {
    match plan {
        Ok(calls) => Ok(Ok(calls)),
        Err(_) if !cx.systemd_running() => Ok(Err(Vec::new())),
        Err(e) if cx.dry_run => Ok(Err(vec![Change::new(
            format!("{what} (cannot be planned yet: {e})"),
            Action::Pending { waits_for: daemon.into() },
        )])),
        Err(e) => anyhow::bail!("reading {what}: {e}"),
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
        // Only an etcd with quorum can be asked (its /health needs no login, which may be what
        // this step is to repair).
        if cx.systemd_running() && !cx.dry_run {
            wait_for_quorum(cx, &url)?;
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
            let calls = match asked(cx, "etcd's users, roles and authentication", "etcd", calls)? {
                Ok(calls) => calls,
                Err(instead) => return Ok(instead),
            };
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
        let calls = match asked(cx, what, "Consul", agent.plan(&management, &clients))? {
            Ok(calls) => calls,
            Err(instead) => return Ok(instead),
        };
        Ok(calls
            .into_iter()
            .map(|call| Change::new(call.summary(), Action::Consul { url: url.clone(), call }))
            .collect())
    }
}

fn patroni_yml(cx: &Context) -> anyhow::Result<Vec<Change>> {
    or_pending(cx, "write patroni.yml", patroni::config(cx), |text| patroni_file(cx, text))
}

fn patroni_file(cx: &Context, text: String) -> anyhow::Result<Vec<Change>> {
    let pg = &cx.profile.postgres;
    let changes = file(cx, FileSpec::new(patroni::CONFIG, text.clone(), 0o600).owned_by(&pg.user, &pg.group).secret())?;
    if !changes.is_empty() {
        validate(cx, &text)?;
    }
    Ok(changes)
}

/// Where hanode keeps what only it may read while it runs (on the host: tmpfs, gone at boot).
const PRIVATE_DIR: &str = "/run/hanode";

/// `patroni --validate-config` on the rendered file, where the installed Patroni has it.
fn validate(cx: &Context, text: &str) -> anyhow::Result<()> {
    let bin = patroni::program(cx);
    if !cx.host_path(&bin).exists() {
        return Ok(());
    }
    // The copy holds passwords: never in /tmp, never left behind.
    let dir = crate::files::private_dir(&cx.host_path(Path::new(PRIVATE_DIR)), "patroni")?;
    let copy = dir.path().join("patroni.yml");
    crate::files::write_new(&copy, text.as_bytes(), 0o600)?;
    let inside = Path::new(PRIVATE_DIR).join(dir.path().file_name().unwrap_or_default()).join("patroni.yml");
    let out = cx.runner.output(
        &Cmd::new("validating patroni.yml", bin.display().to_string())
            .args(["--validate-config", &inside.display().to_string()]),
    )?;
    // Patroni also checks that the DCS answers; on a first run it starts later (units phase).
    let problems: Vec<&str> = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .filter(|l| !l.trim().is_empty() && !l.contains("is not reachable"))
        .collect();
    if !out.success() && !problems.is_empty() {
        anyhow::bail!("patroni --validate-config rejects the rendered patroni.yml:\n    {}", problems.join("\n    "));
    }
    Ok(())
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
    let common = |program: PathBuf, config: &str, text: &str| -> anyhow::Result<Vec<(&'static str, units::Fill)>> {
        Ok(vec![
            ("cluster", Text(site.cluster.name.clone())),
            ("program", Program(program)),
            ("config", Arg(config.to_string())),
            ("config_hash", Text(units::config_hash(cx, &format!("{text}{certs}"))?)),
        ])
    };
    let daemons = units::daemons(cx);
    // Patroni and vip-manager start after this node's DCS agent, if it runs one.
    let dcs_unit =
        daemons.iter().find(|d| matches!(d.kind, DaemonKind::Etcd | DaemonKind::Consul)).map_or("", |d| d.unit());
    let mut out = Vec::new();
    for daemon in daemons.iter().cloned() {
        let text = match daemon.kind {
            DaemonKind::Etcd => {
                // The hash of the file the dcs phase wrote in this run: rendering again would
                // probe the peers again, and a peer that came up in between turns `new` into
                // `existing` — a unit whose hash no later run agrees with, so etcd restarts.
                let written = std::fs::read_to_string(cx.host_path(Path::new(dcs::ETCD_CONFIG)));
                let text = match written {
                    Ok(text) if !cx.dry_run => text,
                    _ => dcs::etcd_config(cx, &etcd_state(cx)?).to_yaml(),
                };
                let mut vars = common(bin.join("etcd"), dcs::ETCD_CONFIG, &text)?;
                vars.push(("data_dir", Paths(vec![dcs::etcd_data_dir(site)])));
                units::render(units::ETCD, &vars)?
            }
            DaemonKind::Consul => {
                let text = dcs::consul_config(cx)?;
                let mut vars = common(bin.join("consul"), dcs::CONSUL_CONFIG, &text)?;
                vars.extend([
                    ("config_arg", Arg(format!("-config-file={}", dcs::CONSUL_CONFIG))),
                    ("data_dir", Paths(vec![dcs::consul_data_dir(site)])),
                ]);
                units::render(units::CONSUL, &vars)?
            }
            DaemonKind::Patroni => {
                let text = patroni::config(cx)?;
                let pg = &cx.profile.postgres;
                let mut vars = common(patroni::program(cx), patroni::CONFIG, &text)?;
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
                let iface = vip::interface(cx)?;
                let text = vip::config(cx, &iface)?;
                let mut vars = common(bin.join("vip-manager"), vip::CONFIG, &text)?;
                vars.extend([
                    ("config_arg", Arg(format!("--config={}", vip::CONFIG))),
                    ("dcs_unit", Text(dcs_unit.to_string())),
                    ("vip", Text(v.address.to_string())),
                    ("vip_cidr", Arg(format!("{}/{}", v.address, v.prefix))),
                    ("interface", Arg(iface)),
                    ("environment", units::Fill::Env(vip::environment(cx))),
                ]);
                units::render(units::VIP_MANAGER, &vars)?
            }
        };
        out.push(Service { daemon, text });
    }
    Ok(out)
}

pub fn unit_path(unit: &str) -> PathBuf {
    Path::new("/etc/systemd/system").join(unit)
}

impl Service {
    /// A reload rereads the configuration only: when the unit itself changes beyond the line
    /// that carries the configuration's hash (another program, user or limit), restart.
    fn verb_on_change(&self, cx: &Context) -> Verb {
        let body = |t: &str| t.split_once('\n').map_or(String::new(), |(_, rest)| rest.to_string());
        let current = std::fs::read_to_string(cx.host_path(&unit_path(self.daemon.unit()))).unwrap_or_default();
        if body(&current) == body(&self.text) { self.daemon.on_change } else { Verb::Restart }
    }
}

impl Step for Service {
    fn name(&self) -> String {
        self.daemon.unit().to_string()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let unit = self.daemon.unit();
        let mut changes = file(cx, FileSpec::new(unit_path(unit), self.text.clone(), 0o644))?;
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
            changes.push(Change::new(
                format!("systemctl {} {unit} and wait until healthy ({deadline} s at most)", verb.as_str()),
                Action::Start(Start { daemon: self.daemon.clone(), verb }),
            ));
        }
        Ok(changes)
    }
}
