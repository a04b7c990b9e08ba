//! The `tls` phase: the cluster CA and this node's certificate and key in /etc/hanode/tls,
//! issued here from the CA in the secrets file, and issued again when they no longer fit. The
//! daemons' own copies of the certificate and key are written by their phases, once their
//! users exist.

use std::path::Path;

use crate::config::Role;
use crate::context::Context;
use crate::engine::{Change, Check, Phase, Stage, Step, Steps};
use crate::error::{Kind, not_yet};
use crate::files::FileSpec;
use crate::tls::{self, Fit};

pub const PHASE: Phase = Phase::new(
    "tls",
    "the cluster CA and this node's certificate, issued from the CA in the secrets file",
    Stage::Firstboot,
    Role::ALL,
    steps,
)
.with_checks(checks);

fn checks(cx: &Context) -> Vec<Check> {
    vec![check(cx)]
}

fn steps(cx: &Context) -> Steps {
    Ok(if cx.site.tls.enabled { vec![Box::new(NodeCertificate)] } else { Vec::new() })
}

/// TLS off is said loudly; TLS on needs the CA; a certificate near its end is reported.
pub fn check(cx: &Context) -> Check {
    if !cx.site.tls.enabled {
        return Check::warn(
            "tls",
            format!(
                "TLS IS OFF ([tls] enabled = false in {}): etcd, Patroni's REST API and PostgreSQL take plain-text connections, and anyone on the network can read passwords and rewrite the cluster's state; for labs only",
                cx.site.path.display()
            ),
        );
    }
    match cx.secrets.as_ref().map(|s| s.ca.is_some()) {
        Some(true) => {}
        None => {
            let msg = format!(
                "TLS needs the cluster CA from the secrets file {}, which is not there: write it with `hanode secrets generate` and copy it to every node",
                cx.secrets_path.display()
            );
            return Check::blocking("tls", Kind::BadInput, msg);
        }
        Some(false) => {
            let msg = format!(
                "the secrets file {} has no cluster CA ([tls] ca_cert and ca_key): add one with `hanode secrets add-missing --file {}` and copy the file to every node",
                cx.secrets_path.display(),
                cx.secrets_path.display()
            );
            return Check::blocking("tls", Kind::BadInput, msg);
        }
    }
    let ca_days = cx.secrets.as_ref().and_then(|s| s.ca.as_ref()).and_then(|ca| tls::days_left(&ca.cert_pem));
    if let Some(d) = ca_days.filter(|d| *d < tls::RENEW_DAYS) {
        return Check::warn(
            "tls",
            format!(
                "the cluster CA in {} expires in {d} days: the nodes' certificates cannot outlive it; roll out a new one with `hanode secrets rotate-ca` (three steps, README: TLS and authentication)",
                cx.secrets_path.display()
            ),
        );
    }
    match std::fs::read_to_string(cx.host_path(Path::new(tls::CERT))).ok().and_then(|c| tls::days_left(&c)) {
        Some(d) if d < tls::RENEW_DAYS => Check::warn(
            "tls",
            format!("this node's certificate {} expires in {d} days: `hanode init` issues a new one", tls::CERT),
        ),
        Some(d) => {
            let rotation = match cx.secrets.as_ref().map(|s| &s.ca_rotation) {
                Some(tls::Rotation::Next(_)) => "; CA rotation step 1 of 3: the next CA is trusted too",
                Some(tls::Rotation::Old(_)) => "; CA rotation step 2 of 3: the old CA is still trusted",
                _ => "",
            };
            Check::ok("tls", format!("node certificate valid for {d} more days{rotation}"))
        }
        None => Check::ok("tls", "the node certificate is issued in this run"),
    }
}

struct NodeCertificate;

impl Step for NodeCertificate {
    fn name(&self) -> String {
        "node certificate".into()
    }
    fn plan(&self, cx: &Context) -> anyhow::Result<Vec<Change>> {
        let mut changes: Vec<Change> =
            Change::for_dir(cx, Path::new(tls::DIR), 0o755, "root", "root")?.into_iter().collect();
        let (fit, ca, trusted) = tls::node_fit(cx).map_err(|e| not_yet("issue this node's certificate", e))?;
        let (cert, key, why) = match fit {
            Fit::Fits { .. } => {
                let read = |p: &str| std::fs::read_to_string(cx.host_path(Path::new(p)));
                (read(tls::CERT)?, read(tls::KEY)?, None)
            }
            Fit::Reissue(why) => {
                let (cert, key) = tls::issue(ca, &tls::names(cx))?;
                (cert, key.expose().to_string(), Some(why))
            }
        };
        for spec in [FileSpec::new(tls::CERT, cert, 0o644), FileSpec::new(tls::KEY, key, 0o600).secret()] {
            if let Some(mut c) = Change::for_file(cx, spec)? {
                if let Some(why) = &why {
                    c.summary = format!("{} (a new one: {why})", c.summary);
                }
                changes.push(c);
            }
        }
        // Peers are asked on a running host only (not in an image build); a plan shows a
        // refusal as what cannot go ahead yet.
        if cx.systemd_running() {
            refuse_to_strand_peers(cx, &trusted).map_err(|e| not_yet("trust only the new CA", e))?;
        }
        // The trusted CAs last: a run cut short before them issues the certificate again.
        changes.extend(Change::for_file(cx, FileSpec::new(tls::CA, trusted, 0o644))?);
        Ok(changes)
    }
}

/// The last step of a CA rotation drops a CA this node trusts. A member that still presents a
/// certificate of it (it missed step 2, or its daemon did not load the new one) would be cut
/// off from this node: refused, naming the member. Members that do not answer are passed over.
/// Only a node whose own certificate is of a CA it keeps asks (it has had step 2).
fn refuse_to_strand_peers(cx: &Context, trusted: &str) -> anyhow::Result<()> {
    let Ok(on_disk) = std::fs::read_to_string(cx.host_path(Path::new(tls::CA))) else { return Ok(()) };
    let keep = tls::ders(trusted);
    if tls::ders(&on_disk).iter().all(|c| keep.contains(c)) {
        return Ok(());
    }
    let read = |p: &str| std::fs::read(cx.host_path(Path::new(p)));
    let (Ok(cert), Ok(key)) = (read(tls::CERT), read(tls::KEY)) else { return Ok(()) };
    // This node's own certificate is of a dropped CA too: not a rotation's last step but a CA
    // replaced outright (or a step skipped here). Refusing would hold every node back, each
    // waiting for the others; it goes on, and the others follow at their runs.
    let own = tls::ders(&String::from_utf8_lossy(&cert)).into_iter().next().unwrap_or_default();
    if !tls::issued_by_any(&own, trusted) {
        return Ok(());
    }
    let http = tls::client(Some((on_disk.as_bytes(), &cert, &key)))?;
    let site = &cx.site;
    let servers: Vec<&str> = crate::dcs::servers(site).iter().map(|m| m.name.as_str()).collect();
    let mut stranded = Vec::new();
    for m in site.cluster.members.iter().filter(|m| m.name != cx.node().name) {
        let host = crate::dcs::url_host(m.address);
        let mut probes = Vec::new();
        if m.role == Role::Postgres {
            probes.push(("Patroni", format!("https://{host}:{}/health", site.patroni.rest_api_port)));
        }
        if site.dcs.kind == crate::config::DcsKind::Etcd && servers.contains(&m.name.as_str()) {
            probes.push(("etcd", format!("https://{host}:{}/version", site.dcs.client_port)));
        }
        for (daemon, url) in probes {
            let Ok(resp) = http.get(&url).send() else { continue };
            let presented = resp.extensions().get::<reqwest::tls::TlsInfo>().and_then(|i| i.peer_certificate());
            if presented.is_some_and(|der| !tls::issued_by_any(der, trusted)) {
                stranded.push(format!("{}'s {daemon} ({url})", m.name));
            }
        }
    }
    if stranded.is_empty() {
        return Ok(());
    }
    Err(crate::error::refused(format!(
        "this run drops a CA from {} (the last step of a CA rotation), but {} still present a certificate of it and would be cut off: run `hanode init` on those members first (it gives them a certificate of the new CA), then here again",
        tls::CA,
        stranded.join(", ")
    )))
}
