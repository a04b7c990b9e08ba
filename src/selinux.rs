//! SELinux: the mode the host runs in, the file contexts and port labels hanode's files and
//! ports need, and the AVC denials that explain a service that would not start. hanode never
//! switches enforcing off: what cannot work under it is an error that shows the denial.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::Role;
use crate::context::Context;
use crate::exec::Cmd;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Disabled,
    Permissive,
    Enforcing,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Disabled => "disabled",
            Mode::Permissive => "permissive",
            Mode::Enforcing => "enforcing",
        }
    }
}

/// The running kernel's mode (selinuxfs); in an image build's chroot this is the build host's.
pub fn mode(cx: &Context) -> Mode {
    match std::fs::read_to_string(cx.host_path(Path::new("/sys/fs/selinux/enforce"))) {
        Ok(s) if s.trim() == "1" => Mode::Enforcing,
        Ok(_) => Mode::Permissive,
        Err(_) => Mode::Disabled,
    }
}

/// The policy `/etc/selinux/config` names, when it is installed and not set to `disabled`:
/// an image with a policy gets hanode's rules in its store even while nothing enforces them.
pub fn policy(cx: &Context) -> Option<String> {
    let text = std::fs::read_to_string(cx.host_path(Path::new("/etc/selinux/config"))).ok()?;
    let value = |key: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().trim_matches('"').to_string()))
    };
    if value("SELINUX=").as_deref() == Some("disabled") {
        return None;
    }
    let name = value("SELINUXTYPE=")?;
    cx.host_path(&Path::new("/etc/selinux").join(&name)).is_dir().then_some(name)
}

/// A persistent file-context rule (`semanage fcontext`) and the tree it labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRule {
    pub spec: String,
    pub setype: &'static str,
    /// The directory `restorecon -R` applies it to.
    pub root: PathBuf,
    pub why: &'static str,
}

/// What hanode creates outside the paths the policy already knows.
pub fn file_rules(cx: &Context) -> Vec<FileRule> {
    let site = &cx.site;
    let prefix = regex_literal(&site.install.prefix);
    let names: Vec<&str> = crate::artifacts::Kind::ALL.iter().map(|k| k.name()).collect();
    let mut rules = vec![FileRule {
        spec: format!("{prefix}/({})-[^/]+(/.*)?", names.join("|")),
        setype: "bin_t",
        root: site.install.prefix.clone(),
        why: "the DCS and vip-manager binaries: files under /opt are usr_t, which is no entry point for a service",
    }];
    if cx.role == Role::Postgres && site.disks.is_some() {
        for mount in crate::node::volumes(cx).into_iter().map(|v| v.mount) {
            rules.push(FileRule {
                spec: format!("{}(/.*)?", regex_literal(&mount)),
                setype: "postgresql_db_t",
                root: mount,
                why: "PostgreSQL's data and WAL: the confined postgres (postgresql_t) may use only postgresql_db_t",
            });
        }
    }
    rules
}

/// A path as a file-context regular expression that matches exactly it: semanage's specs are
/// regexes (PCRE), so a mount point `/pg.data` would also label `/pgXdata`, and `/.*` everything.
pub fn regex_literal(path: &Path) -> String {
    let mut out = String::new();
    for c in path.display().to_string().chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Ports a confined daemon listens on that the policy does not label for it. Patroni, etcd,
/// Consul and vip-manager run unconfined (a venv and /opt binaries have no policy module);
/// PostgreSQL is confined and binds only postgresql_port_t.
pub fn port_rules(cx: &Context) -> Vec<(u16, &'static str, &'static str)> {
    let port = cx.site.patroni.postgres_port;
    if cx.role == Role::Postgres && port != 5432 {
        vec![(port, "postgresql_port_t", "PostgreSQL's port: the confined postgres may bind only postgresql_port_t")]
    } else {
        Vec::new()
    }
}

/// semanage loads (and to change a rule, rebuilds) the whole policy: minutes on a small or
/// emulated machine, so it gets the long timeout.
pub fn semanage(what: &str, args: &[&str]) -> Cmd {
    Cmd::new(what, "semanage").args(args.iter().copied()).timeout(Cmd::LONG_TIMEOUT)
}

/// The local file-context rules: spec and type.
pub fn local_fcontexts(cx: &Context) -> anyhow::Result<Vec<(String, String)>> {
    let out = cx.runner.run(&semanage("listing local file-context rules", &["fcontext", "-l", "-C", "-n"]))?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let spec = words.next()?;
            let setype = words.last()?.split(':').nth(2)?;
            Some((spec.to_string(), setype.to_string()))
        })
        .collect())
}

/// The type a TCP port is labelled with, if any, and whether by that very port (not a range):
/// `semanage port -l` lines are `type  proto  port, low-high, ...`.
pub fn tcp_port_type(cx: &Context, port: u16) -> anyhow::Result<Option<(String, bool)>> {
    let out = cx.runner.run(&semanage("listing port labels", &["port", "-l", "-n"]))?;
    Ok(parse_port_type(&out.stdout, port))
}

fn parse_port_type(listing: &str, port: u16) -> Option<(String, bool)> {
    let entries = listing.lines().filter_map(|l| {
        let mut words = l.split_whitespace();
        let (setype, proto) = (words.next()?, words.next()?);
        (proto == "tcp").then(|| (setype.to_string(), words.collect::<Vec<_>>().join("")))
    });
    let mut in_range = None;
    for (setype, ports) in entries {
        for r in ports.split(',') {
            match r.split_once('-') {
                None if r.parse::<u16>() == Ok(port) => return Some((setype, true)),
                Some((a, b))
                    if a.parse::<u16>().is_ok_and(|a| a <= port) && b.parse::<u16>().is_ok_and(|b| port <= b) =>
                {
                    in_range.get_or_insert((setype.clone(), false));
                }
                _ => {}
            }
        }
    }
    in_range
}

/// AVC denials logged since `since`: from auditd's log when it runs, else the kernel's log.
pub fn denials_since(cx: &Context, since: SystemTime) -> Vec<String> {
    let secs = since.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let audit = cx.host_path(Path::new("/var/log/audit/audit.log"));
    if let Ok(text) = std::fs::read_to_string(&audit) {
        return text
            .lines()
            .filter(|l| l.contains("avc:  denied"))
            .filter(|l| audit_time(l).is_some_and(|t| t >= secs))
            .map(str::to_string)
            .collect();
    }
    let since_arg = format!("@{}", secs as u64);
    let cmd =
        Cmd::new("reading the kernel log", "journalctl").args(["-k", "--no-pager", "-o", "cat", "--since", &since_arg]);
    cx.runner
        .output(&cmd)
        .map(|o| o.stdout.lines().filter(|l| l.contains("avc:  denied")).map(str::to_string).collect())
        .unwrap_or_default()
}

/// `msg=audit(1732400000.123:456)` -> 1732400000.123
fn audit_time(line: &str) -> Option<f64> {
    let rest = line.split("audit(").nth(1)?;
    rest.split(':').next()?.parse().ok()
}

/// A failed start under enforcing SELinux with denials since it began is a refusal that
/// shows them; any other failure passes through unchanged.
pub fn explain(cx: &Context, since: SystemTime, err: anyhow::Error) -> anyhow::Error {
    if mode(cx) != Mode::Enforcing {
        return err;
    }
    let denials = denials_since(cx, since);
    if denials.is_empty() {
        return err;
    }
    crate::error::refused(format!(
        "{err:#}\nSELinux (enforcing) denied these accesses while it started:\n    {}\nhanode keeps SELinux enforcing: label what the denial names (semanage fcontext / semanage port, then restorecon) or report it as a hanode bug",
        denials.join("\n    ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_listing() {
        let listing = "http_port_t                    tcp      80, 81, 443, 488, 8008, 8009, 8443, 9000\n\
                       postgresql_port_t              tcp      5432, 9898\n\
                       unreserved_port_t              tcp      61000-65535, 1024-32767\n\
                       postgresql_port_t              udp      5432\n";
        let t = |p| parse_port_type(listing, p);
        assert_eq!(t(8008), Some(("http_port_t".into(), true)));
        assert_eq!(t(5432), Some(("postgresql_port_t".into(), true)));
        assert_eq!(t(5433), Some(("unreserved_port_t".into(), false)));
        assert_eq!(t(999), None);
    }

    #[test]
    fn paths_are_literal_in_file_context_specs() {
        let lit = |p: &str| regex_literal(Path::new(p));
        assert_eq!(lit("/pgdata"), "/pgdata");
        assert_eq!(lit("/.*"), "/\\.\\*");
        assert_eq!(lit("/a.b/c+d(e)[f]{g}|h^$?\\i"), "/a\\.b/c\\+d\\(e\\)\\[f\\]\\{g\\}\\|h\\^\\$\\?\\\\i");
    }

    #[test]
    fn audit_timestamps() {
        let l = "type=AVC msg=audit(1732400000.123:456): avc:  denied  { read } for pid=1 comm=\"postgres\"";
        assert_eq!(audit_time(l), Some(1732400000.123));
    }
}
