//! The selinux phase's plans on every OS (os-release fixtures with an SELinux state, a
//! recording command runner). The rules themselves are proven under enforcing in a VM
//! (scripts/test-vm-selinux).

mod common;
use common::commands;

use std::sync::Arc;

use hanode::engine::Report;
use hanode::exec::{Output, Recording};

const SITE: &str = r#"[cluster]
name = "main"
members = [{ name = "pg1", address = "10.0.0.11" }]
[patroni]
postgres_port = 5433
[disks]
data = { device = "/dev/sdb" }
wal = { device = "/dev/sdc" }
"#;

const PORTS: &str = "http_port_t                    tcp      80, 81, 443, 8008\n\
                     postgresql_port_t              tcp      5432, 9898\n\
                     unreserved_port_t              tcp      61000-65535, 1024-32767\n";

/// A root whose kernel runs SELinux in `enforce` ("1"/"0"), or not at all (None), with `policy`
/// installed and configured.
fn root(fixture: &str, enforce: Option<&str>, policy: Option<&str>, semanage: bool) -> tempfile::TempDir {
    let root = common::fixture_root(fixture);
    let p = root.path();
    if let Some(e) = enforce {
        std::fs::create_dir_all(p.join("sys/fs/selinux")).unwrap();
        std::fs::write(p.join("sys/fs/selinux/enforce"), e).unwrap();
    }
    if let Some(name) = policy {
        std::fs::create_dir_all(p.join("etc/selinux").join(name)).unwrap();
        std::fs::write(p.join("etc/selinux/config"), format!("SELINUX=enforcing\nSELINUXTYPE={name}\n")).unwrap();
    }
    if semanage {
        std::fs::create_dir_all(p.join("usr/sbin")).unwrap();
        std::fs::write(p.join("usr/sbin/semanage"), "").unwrap();
    }
    std::fs::create_dir_all(p.join("pgdata")).unwrap();
    root
}

fn plan(root: &tempfile::TempDir, rec: Arc<Recording>) -> Report {
    common::plan_phase(root.path(), SITE, "pg1", "selinux", rec)
}

/// Tools `installed` or not, `local_rules` in the store, and whether restorecon finds files to relabel.
fn recording(installed: bool, local_rules: &str, relabel: bool) -> Arc<Recording> {
    let rec = Arc::new(Recording::default());
    let listing = if installed { "policycoreutils\npolicycoreutils-python-utils\n" } else { "" };
    rec.reply(
        &["rpm"],
        Output { code: Some(if installed { 0 } else { 2 }), stdout: listing.into(), ..Default::default() },
    );
    let dpkg = if installed { "policycoreutils\tii \npolicycoreutils-python-utils\tii \n" } else { "" };
    rec.reply(
        &["dpkg-query"],
        Output { code: Some(if installed { 0 } else { 1 }), stdout: dpkg.into(), ..Default::default() },
    );
    rec.reply(&["semanage", "fcontext"], Output { code: Some(0), stdout: local_rules.into(), ..Default::default() });
    rec.reply(&["semanage", "port"], Output { code: Some(0), stdout: PORTS.into(), ..Default::default() });
    let would = "Would relabel /pgdata from system_u:object_r:default_t:s0 to system_u:object_r:postgresql_db_t:s0\n";
    let stdout = if relabel { would.to_string() } else { String::new() };
    rec.reply(&["restorecon"], Output { code: Some(0), stdout, ..Default::default() });
    rec
}

#[test]
fn enforcing_hosts_get_tools_rules_port_and_labels_with_each_os_package_names() {
    let rules = [
        "semanage fcontext -a -t bin_t /opt/hanode/(etcd|consul|vip-manager)-[^/]+(/.*)?",
        "semanage fcontext -a -t postgresql_db_t /pgdata(/.*)?",
        "semanage fcontext -a -t postgresql_db_t /pgwal(/.*)?",
        "semanage port -a -t postgresql_port_t -p tcp 5433",
        "restorecon -R /pgdata",
    ];
    for (fixture, policy, install) in [
        ("redos-8", "targeted", vec!["dnf install -y -q policycoreutils policycoreutils-python-utils"]),
        ("redos-7.3", "targeted", vec!["dnf install -y -q policycoreutils policycoreutils-python-utils"]),
        (
            "debian-12",
            "default",
            vec![
                "apt-get update -q",
                "apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold policycoreutils policycoreutils-python-utils",
            ],
        ),
    ] {
        let r = root(fixture, Some("1"), Some(policy), true);
        let report = plan(&r, recording(false, "", true));
        let expected: Vec<String> = install.iter().chain(rules.iter()).map(|s| s.to_string()).collect();
        assert_eq!(commands(&report), expected, "{fixture}");
        assert!(report.changes.iter().any(|c| c.summary.contains("postgresql_t")), "each rule says why");
        let state = report.checks.iter().find(|c| c.name == "selinux").map(|c| c.detail.clone());
        assert_eq!(state, Some(format!("enforcing (policy {policy})")), "{fixture}");
    }
}

#[test]
fn rules_already_in_the_store_plan_nothing_but_what_differs() {
    let local = "/opt/hanode/(etcd|consul|vip-manager)-[^/]+(/.*)?  all files  system_u:object_r:bin_t:s0\n\
                 /pgdata(/.*)?   all files   system_u:object_r:postgresql_db_t:s0\n\
                 /pgwal(/.*)?    all files   system_u:object_r:default_t:s0\n";
    let r = root("redos-8", Some("1"), Some("targeted"), true);
    let report = plan(&r, recording(true, local, false));
    assert_eq!(
        commands(&report),
        vec![
            "semanage fcontext -m -t postgresql_db_t /pgwal(/.*)?".to_string(),
            "semanage port -a -t postgresql_port_t -p tcp 5433".to_string()
        ]
    );
}

#[test]
fn no_selinux_no_policy_no_phase_and_an_image_build_gets_rules_not_labels() {
    let r = root("debian-12", None, None, true);
    let report = plan(&r, recording(true, "", true));
    assert!(report.changes.is_empty(), "{:?}", commands(&report));

    // A chroot during an image build: the kernel has no SELinux, the image has a policy.
    let r = root("debian-12", None, Some("default"), true);
    let cmds = commands(&plan(&r, recording(true, "", true)));
    assert!(cmds.iter().any(|c| c.starts_with("semanage fcontext -a")), "{cmds:?}");
    assert!(cmds.iter().all(|c| !c.starts_with("restorecon")), "{cmds:?}");
}
