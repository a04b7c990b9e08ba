//! Package plans for every supported OS (os-release fixtures, a recording command runner).

mod common;
use common::commands;

use std::sync::Arc;

use hanode::config::Role;
use hanode::context::{Context, Options};
use hanode::engine::{self, Action, Report};
use hanode::exec::{Output, Recording};

const SITE: &str = r#"[cluster]
name = "main"
members = [{ name = "pg1", address = "10.0.0.11" }, { name = "w1", address = "10.0.0.21", role = "dcs" }]
[disks]
data = { device = "/dev/sdb" }
wal = { device = "/dev/sdc" }
"#;

fn plan(fixture: &str, site: &str, node: &str, rec: Arc<Recording>) -> (Report, tempfile::TempDir) {
    let root = common::fixture_root(fixture);
    (common::plan_phase(root.path(), site, node, "packages", rec), root)
}

const APT: &str = "apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";

#[test]
fn plans_name_the_right_packages_and_commands_on_every_os() {
    let cases = [
        (
            "debian-12",
            vec![
                "apt-get update -q".to_string(),
                format!("{APT} postgresql-15 lvm2 e2fsprogs xfsprogs python3 python3-venv"),
            ],
        ),
        (
            "debian-13",
            vec![
                "apt-get update -q".to_string(),
                format!("{APT} postgresql-17 lvm2 e2fsprogs xfsprogs python3 python3-venv"),
            ],
        ),
        (
            "redos-7.3",
            vec![
                "dnf install -y -q postgresql15-server postgresql15-contrib lvm2 e2fsprogs xfsprogs python3"
                    .to_string(),
            ],
        ),
        (
            "redos-8",
            vec![
                "dnf install -y -q postgresql16-server postgresql16-contrib lvm2 e2fsprogs xfsprogs python3"
                    .to_string(),
            ],
        ),
    ];
    for (fixture, expected) in cases {
        // Nothing installed: dpkg-query lists nothing (exit 1), rpm lists nothing.
        let rec = Arc::new(Recording::default());
        rec.reply(&["dpkg-query"], Output { code: Some(1), ..Default::default() });
        rec.reply(&["rpm"], Output { code: Some(5), stdout: String::new(), stderr: String::new() });
        let (report, _root) = plan(fixture, SITE, "pg1", rec.clone());
        assert_eq!(commands(&report), expected, "{fixture}");
        let observed = rec.calls();
        assert_eq!(observed.len(), 1, "{fixture}: observing ran {observed:?}");
        let is_apt = fixture.starts_with("debian");
        assert_eq!(observed[0][0], if is_apt { "dpkg-query" } else { "rpm" });
        // Debian: no `main` cluster may be created by the package.
        let conf = report
            .changes
            .iter()
            .any(|c| c.summary.starts_with("create /etc/postgresql-common/createcluster.d/hanode.conf"));
        assert_eq!(conf, is_apt, "{fixture}");
    }
}

#[test]
fn installed_packages_plan_nothing() {
    let rec = Arc::new(Recording::default());
    let listing = ["postgresql-15", "lvm2", "e2fsprogs", "xfsprogs", "python3", "python3-venv"]
        .map(|p| format!("{p}\tii \n"))
        .concat();
    rec.reply(&["dpkg-query"], Output { code: Some(0), stdout: listing, stderr: String::new() });
    let (report, root) = plan("debian-12", SITE, "pg1", rec);
    assert!(commands(&report).is_empty(), "{:?}", commands(&report));
    drop(root);

    // A package half-removed ("rc") counts as missing.
    let rec = Arc::new(Recording::default());
    rec.reply(
        &["rpm"],
        Output {
            code: Some(1),
            stdout: "postgresql16-server\nlvm2\ne2fsprogs\nxfsprogs\npython3\n".into(),
            stderr: String::new(),
        },
    );
    let (report, _root) = plan("redos-8", SITE, "pg1", rec);
    assert_eq!(commands(&report), vec!["dnf install -y -q postgresql16-contrib"]);
}

#[test]
fn a_dcs_node_installs_no_postgresql() {
    let rec = Arc::new(Recording::default());
    rec.reply(&["dpkg-query"], Output { code: Some(1), ..Default::default() });
    let site = SITE.replace("[packages]", "") + "[packages]\nextra = [\"chrony\"]\n";
    let (report, _root) = plan("debian-12", &site, "w1", rec);
    assert_eq!(commands(&report), vec!["apt-get update -q".to_string(), format!("{APT} chrony")]);
    assert!(report.changes.iter().all(|c| !c.summary.contains("createcluster")));
}

#[test]
fn an_existing_main_cluster_is_disabled_not_dropped() {
    let rec = Arc::new(Recording::default());
    rec.reply(&["dpkg-query"], Output { code: Some(1), ..Default::default() });
    let root = common::fixture_root("debian-12");
    std::fs::create_dir_all(root.path().join("etc/postgresql/15/main")).unwrap();
    std::fs::write(root.path().join("etc/postgresql/15/main/start.conf"), "auto\n").unwrap();
    std::fs::create_dir_all(root.path().join("run/systemd/system")).unwrap(); // systemd runs this host
    let p = common::write(root.path(), "site.toml", SITE, 0o644);
    let opts = Options {
        root: root.path().into(),
        config: Some(p),
        node: Some("pg1".into()),
        role: Some(Role::Postgres),
        ..Options::default()
    };
    let cx = Context::load(&opts, Box::new(rec)).unwrap();
    let phases = hanode::phases::select(cx.role, engine::Stage::All, &[], Some("packages")).unwrap();
    let mut report = Report::default();
    engine::converge(&cx, &phases, true, &mut report).unwrap();
    let summaries: Vec<&str> = report.changes.iter().map(|c| c.summary.as_str()).collect();
    assert!(summaries.iter().any(|s| s.starts_with("update /etc/postgresql/15/main/start.conf")), "{summaries:?}");
    assert!(summaries.contains(&"systemctl stop postgresql@15-main"), "{summaries:?}");
    assert!(commands(&report).iter().all(|c| !c.contains("pg_dropcluster")));
}

#[test]
fn pgdg_on_debian_adds_the_repository_with_the_shipped_key() {
    let rec = Arc::new(Recording::default());
    rec.reply(&["dpkg-query"], Output { code: Some(1), ..Default::default() });
    let site = format!("{SITE}[packages]\nrepository = \"pgdg\"\n")
        .replace("name = \"main\"", "name = \"main\"\npostgres_version = 17");
    let (report, _root) = plan("debian-12", &site, "pg1", rec);
    let repo = report
        .changes
        .iter()
        .find(|c| c.summary.starts_with("create /etc/apt/sources.list.d/pgdg.list"))
        .expect("pgdg list");
    assert!(repo.diff.as_deref().unwrap().contains("+deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main"));
    assert!(commands(&report).iter().any(|c| c.ends_with("postgresql-common ca-certificates")));
    assert!(commands(&report).iter().any(|c| c.contains("postgresql-17 lvm2") || c.ends_with("postgresql-17")));
}

#[test]
fn patroni_goes_into_a_venv_with_hash_checked_pip() {
    let rec = Arc::new(Recording::default());
    rec.reply(&["dpkg-query"], Output { code: Some(1), ..Default::default() });
    let (report, _root) = plan("debian-12", SITE, "pg1", rec);
    let venv = report
        .changes
        .iter()
        .find_map(|c| match &c.action {
            Action::InstallVenv(p) => Some(p.clone()),
            _ => None,
        })
        .expect("a venv change");
    assert_eq!(venv.requirements.patroni_version, "4.0.3");
    let dir = format!("/opt/hanode/patroni-4.0.3-{}", &venv.requirements.sha256[..8]);
    let argv: Vec<String> = hanode::venv::commands(&venv).iter().map(|c| c.argv.join(" ")).collect();
    let pip =
        format!("{dir}/bin/pip install --disable-pip-version-check --no-input --require-hashes --only-binary :all:");
    assert_eq!(
        argv,
        vec![
            format!("python3 -m venv {dir}"),
            format!("{pip} -r {dir}/hanode-build-requirements.txt"),
            format!("{pip} --no-binary python-etcd --no-build-isolation -r {dir}/hanode-requirements.txt"),
            format!("{dir}/bin/patroni --version"),
        ]
    );
    // Every requirement carries a hash.
    let text = &venv.requirements.text;
    let pins = text.lines().filter(|l| l.contains("==")).count();
    let hashed = text.split("==").skip(1).filter(|chunk| chunk.contains("--hash=sha256:")).count();
    assert!(pins >= 10 && pins == hashed, "{pins} pins, {hashed} hashed");
    let links: Vec<&str> =
        report.changes.iter().map(|c| c.summary.as_str()).filter(|s| s.starts_with("link")).collect();
    assert_eq!(
        links,
        vec![
            format!("link /usr/local/bin/patroni -> {dir}/bin/patroni"),
            format!("link /usr/local/bin/patronictl -> {dir}/bin/patronictl")
        ]
    );
}

#[test]
fn a_plain_http_pip_index_is_trusted_by_host_and_the_plan_says_so() {
    let rec = Arc::new(Recording::default());
    rec.reply(&["dpkg-query"], Output { code: Some(1), ..Default::default() });
    let site = format!("{SITE}[install]\npip_index = \"http://pypi.internal:8080/simple\"\n");
    let (report, _root) = plan("debian-12", &site, "pg1", rec);
    let change = report.changes.iter().find(|c| matches!(c.action, Action::InstallVenv(_))).expect("a venv change");
    assert!(
        change.summary.contains("plain-http index pypi.internal:8080 is passed to pip as trusted"),
        "{}",
        change.summary
    );
    let Action::InstallVenv(venv) = &change.action else { unreachable!() };
    for c in hanode::venv::commands(venv).iter().filter(|c| c.argv.iter().any(|a| a == "install")) {
        let env: Vec<(&str, &str)> = c.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(env.contains(&("PIP_INDEX_URL", "http://pypi.internal:8080/simple")), "{env:?}");
        assert!(env.contains(&("PIP_TRUSTED_HOST", "pypi.internal:8080")), "{env:?}");
        assert!(!c.argv.iter().any(|a| a.contains("pypi.internal")), "the index is not in argv: {:?}", c.argv);
    }
    assert_eq!(hanode::venv::insecure_host("https://pypi.internal/simple"), None, "https needs no trust");
}

#[test]
fn patroni_from_the_package_comes_with_the_client_of_its_dcs() {
    for (fixture, dcs, client) in [
        ("debian-12", "etcd", "python3-etcd"),
        ("debian-13", "etcd", "python3-etcd"),
        ("debian-13", "consul", "python3-consul"),
    ] {
        let rec = Arc::new(Recording::default());
        rec.reply(&["dpkg-query"], Output { code: Some(1), ..Default::default() });
        let site = format!("{SITE}[patroni]\ninstall = \"package\"\n[dcs]\ntype = \"{dcs}\"\n");
        let (report, _root) = plan(fixture, &site, "pg1", rec);
        let install = commands(&report).into_iter().find(|c| c.starts_with(APT)).expect("an install");
        assert!(install.ends_with(&format!(" patroni {client}")), "{fixture} {dcs}: {install}");
        assert!(!install.contains("python3-venv"), "no venv with the package: {install}");
    }
}
