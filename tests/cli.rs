//! The command line as users and scripts see it: output, exit codes, OS detection.

mod common;
use common::{fixture_root, hanode, repo, write};

#[test]
fn dry_run_on_this_debian_machine() {
    // The real root: this machine's own /etc/os-release.
    let run = hanode(&[
        "init",
        "--role",
        "postgres",
        "--dry-run",
        "--config",
        &repo("examples/debian-nodisks.toml"),
        "--node",
        "pg1",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("[preflight]"), "{}", run.stdout);
    assert!(run.stdout.contains("[OK] os: ") && run.stdout.contains("profile debian-"), "{}", run.stdout);
    assert!(run.stdout.contains("[OK] config: "), "{}", run.stdout);
    assert!(run.stdout.contains("[OK] artifact etcd: etcd 3.5.6"), "{}", run.stdout);
    assert!(run.stdout.contains("[WARN] artifact vip-manager: "), "{}", run.stdout);
    assert!(run.stdout.contains("would install etcd 3.5.6 into /opt/hanode/etcd-3.5.6"), "{}", run.stdout);
    assert!(
        run.stdout.contains("would link /usr/local/bin/etcdctl -> /opt/hanode/etcd-3.5.6/etcdctl"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("nothing was changed (dry run)"), "{}", run.stdout);
    assert!(!std::path::Path::new("/opt/hanode/etcd-3.5.6").exists());
}

#[test]
fn lines_to_the_journal_carry_their_syslog_priority() {
    // As under systemd: stdout is the stream JOURNAL_STREAM names (here a file, by device and
    // inode). journald reads `<4>` as warning and strips it.
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let run = |journal: bool| {
        let out = std::fs::File::create(dir.path().join("out")).unwrap();
        let meta = out.metadata().unwrap();
        let mut cmd = std::process::Command::new(common::bin());
        cmd.args(["plan", "--role", "postgres", "--config", &repo("examples/debian-nodisks.toml"), "--node", "pg1"]);
        cmd.stdout(out).env_remove("JOURNAL_STREAM");
        if journal {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        }
        assert!(cmd.status().unwrap().success());
        std::fs::read_to_string(dir.path().join("out")).unwrap()
    };
    let journal = run(true);
    assert!(journal.lines().all(|l| l.starts_with('<')), "{journal}");
    assert!(journal.contains("<6>[preflight]") && journal.contains("<6>[OK] config: "), "{journal}");
    assert!(journal.contains("<4>[WARN] artifact vip-manager: "), "{journal}");
    let plain = run(false);
    assert!(plain.contains("\n[WARN] artifact vip-manager: ") && !plain.contains("<6>"), "{plain}");
}

#[test]
fn a_missing_pin_stops_a_real_run_before_anything_changes() {
    let root = fixture_root("debian-13");
    let r = root.path().display().to_string();
    let run = hanode(&[
        "init",
        "--role",
        "postgres",
        "--root",
        &r,
        "--config",
        &repo("examples/debian-etcd.toml"),
        "--node",
        "pg1",
    ]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stdout.contains("[ERROR] artifact vip-manager: "), "{}", run.stdout);
    assert!(run.stderr.contains("hanode pin vip-manager VERSION"), "{}", run.stderr);
    assert!(!root.path().join("opt").exists() && !root.path().join("var").exists());
}

#[test]
fn other_systems_by_fixture() {
    for (fixture, profile, pretty) in [
        ("redos-8", "redos-8", "RED OS 8.0.2"),
        ("redos-7.3", "redos-7.3", "RED OS MUROM (7.3.2)"),
        ("debian-13", "debian-13", "Debian GNU/Linux 13"),
    ] {
        let root = fixture_root(fixture);
        let run = hanode(&[
            "init",
            "--role",
            "postgres",
            "--dry-run",
            "--root",
            &root.path().display().to_string(),
            "--config",
            &repo("examples/redos-etcd.toml"),
            "--node",
            "db2",
            "--skip-phases",
            "packages,disks",
        ]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert!(run.stdout.contains(&format!("profile {profile}")), "{fixture}: {}", run.stdout);
        assert!(run.stdout.contains(pretty), "{fixture}: {}", run.stdout);
    }
}

#[test]
fn an_unknown_os_is_refused_with_the_supported_list() {
    let root = fixture_root("ubuntu");
    let run = hanode(&[
        "check",
        "--root",
        &root.path().display().to_string(),
        "--config",
        &repo("examples/debian-etcd.toml"),
        "--node",
        "pg1",
    ]);
    assert_eq!(run.code, 2, "{}", run.all());
    for name in ["unsupported OS", "ubuntu", "Debian 12", "Debian 13", "RED OS 7.3", "RED OS 8"] {
        assert!(run.stderr.contains(name), "{name}: {}", run.stderr);
    }
}

#[test]
fn plan_json_is_the_only_thing_on_stdout() {
    let root = fixture_root("redos-8");
    let run = hanode(&[
        "plan",
        "--output",
        "json",
        "--root",
        &root.path().display().to_string(),
        "--config",
        &repo("examples/redos-consul.toml"),
        "--node",
        "consul2",
        "--role",
        "dcs",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    assert_eq!(doc["profile"], "redos-8");
    assert_eq!(doc["node"]["name"], "consul2");
    assert_eq!(doc["role"], "dcs");
    assert_eq!(doc["applied"], false);
    assert!(doc["checks"].as_array().unwrap().iter().any(|c| c["name"] == "os" && c["status"] == "ok"));
    // A Consul server: its user, data directory and (pending the secrets file) configuration.
    let changes = doc["changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["phase"] == "dcs" && c["summary"].as_str().unwrap().contains("/var/lib/consul/sirius")),
        "{changes:?}"
    );
    assert!(changes.iter().any(|c| c["action"]["kind"] == "pending"), "{changes:?}");
    // Schema 2: modes as people write them.
    assert_eq!(doc["schema"], 2);
    let dir = changes.iter().find(|c| c["action"]["kind"] == "dir").expect("a directory change");
    assert_eq!(dir["action"]["mode"], "0700", "{dir}");
}

/// `init phase --help` lists every phase with its help line, in the order they run.
#[test]
fn init_phase_help_lists_the_phases() {
    let run = hanode(&["init", "phase", "--help"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let listed: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Phases, in the order they run:"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let want: Vec<&str> = hanode::phases::all().iter().map(|p| p.name).collect();
    assert_eq!(listed, want, "{}", run.stdout);
    assert!(run.stdout.contains("patroni.yml from the site and secrets files"), "{}", run.stdout);
}

#[test]
fn commands_for_another_root_run_inside_it_never_on_this_host() {
    // The temporary root has no dpkg-query: the packages phase fails there, as it must.
    let root = fixture_root("debian-13");
    let run = hanode(&[
        "plan",
        "--root",
        &root.path().display().to_string(),
        "--config",
        &repo("examples/redos-etcd.toml"),
        "--node",
        "db1",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("chroot: failed to run command"), "{}", run.stderr);
}

#[test]
fn input_errors_exit_2_and_say_what_to_do() {
    let ex = repo("examples/debian-etcd.toml");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["init", "--config", &ex, "--node", "pg1"], "init needs --role"),
        (vec!["init", "--role", "postgres", "--dry-run", "--config", &ex, "--node", "pg9"], "no such member"),
        (vec!["init", "--role", "dcs", "--dry-run", "--config", &ex, "--node", "pg1"], "has role \"postgres\""),
        (
            vec!["init", "--role", "postgres", "--dry-run", "--config", &ex, "--node", "pg1", "--skip-phases", "dsiks"],
            "unknown phase `dsiks`",
        ),
        (
            vec!["init", "phase", "nosuch", "--role", "postgres", "--config", &ex, "--node", "pg1"],
            "unknown phase `nosuch`",
        ),
        (
            vec!["init", "phase", "disks", "--role", "postgres", "--stage", "image", "--config", &ex, "--node", "pg1"],
            "the disks phase does not run for role postgres at stage image: it runs for postgres at stage firstboot",
        ),
        (vec!["init", "--role", "primary"], "invalid value 'primary'"),
        (vec!["check", "--config", "/nonexistent/hanode.toml"], "cannot read the site file /nonexistent/hanode.toml"),
        // Read up to a cap, not until memory runs out.
        (vec!["check", "--config", "/dev/zero"], "cannot read the site file /dev/zero: larger than 1024 KiB"),
        (vec!["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, words) in cases {
        let run = hanode(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(run.stderr.contains(words), "{args:?}: expected {words:?} in {}", run.stderr);
    }
}

#[test]
fn a_member_is_found_by_its_local_address() {
    // 127.0.0.1 is on every host's loopback: a member with that address is this host.
    let root = fixture_root("debian-13");
    let site = "[cluster]\nname = \"lab\"\nmembers = [{ name = \"elsewhere\", address = \"192.0.2.1\" }, { name = \"here\", address = \"127.0.0.1\" }]\n";
    let p = write(root.path(), "site.toml", site, 0o644);
    let run = hanode(&["check", "--root", &root.path().display().to_string(), "--config", &p.display().to_string()]);
    // `init` would stop at the missing etcd pin, so `check` says so by its exit code.
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stdout.contains("[ERROR] artifact etcd"), "{}", run.stdout);
    assert!(
        run.stdout.contains("[OK] identity: member here (127.0.0.1, role postgres) of cluster lab, by local address"),
        "{}",
        run.stdout
    );
}

#[test]
fn help_and_version() {
    let run = hanode(&["--help"]);
    assert_eq!(run.code, 0);
    for cmd in ["init", "plan", "check"] {
        assert!(run.stdout.contains(cmd), "{}", run.stdout);
    }
    let version = hanode(&["--version"]).stdout;
    assert!(version.starts_with(&format!("hanode {} (commit ", env!("CARGO_PKG_VERSION"))), "{version}");
}

#[test]
fn completions_and_man_page_come_from_the_command_line_definition() {
    let bash = hanode(&["completions", "bash"]);
    assert_eq!(bash.code, 0, "{}", bash.stderr);
    assert!(bash.stdout.contains("complete -F _hanode"), "{}", bash.stdout);
    assert!(bash.stdout.contains("--skip-phases"), "init's flags are completed");
    let zsh = hanode(&["completions", "zsh"]);
    assert!(zsh.stdout.starts_with("#compdef hanode"), "{}", zsh.stdout);
    for shell in ["fish", "elvish", "powershell"] {
        let run = hanode(&["completions", shell]);
        assert!(run.code == 0 && run.stdout.contains("skip-phases"), "{shell}: {}", run.all());
    }
    assert_eq!(hanode(&["completions", "tcsh"]).code, 2, "an unknown shell is bad input");
    let man = hanode(&["man"]);
    assert_eq!(man.code, 0, "{}", man.stderr);
    assert!(man.stdout.contains(".TH hanode 8"), "{}", man.stdout);
    assert!(man.stdout.contains("completions"), "the subcommands are listed");
}

#[test]
fn the_image_stage_needs_no_identity_and_installs_the_first_boot_unit() {
    // This machine's hostname and addresses match no member of the example cluster.
    let root = fixture_root("debian-12");
    let r = root.path().display().to_string();
    let cfg = repo("examples/debian-etcd.toml");
    let image = |extra: &[&str]| {
        let mut args = vec!["init", "phase", "boot-unit", "--role", "postgres", "--stage", "image", "--root", &r];
        args.extend(["--config", &cfg]);
        args.extend(extra);
        hanode(&args)
    };
    let first = image(&[]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert!(first.stdout.contains("[OK] identity: none yet (image stage)"), "{}", first.stdout);
    let unit = std::fs::read_to_string(root.path().join("etc/systemd/system/hanode-firstboot.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/sbin/hanode init --role postgres --stage firstboot\n"), "{unit}");
    assert!(unit.contains("ConditionPathExists=/etc/hanode/hanode.toml\n"), "{unit}");
    assert!(unit.contains("ConditionPathExists=!/var/lib/hanode/firstboot.done\n"), "{unit}");
    let wants = root.path().join("etc/systemd/system/multi-user.target.wants/hanode-firstboot.service");
    assert_eq!(
        std::fs::read_link(wants).unwrap(),
        std::path::Path::new("/etc/systemd/system/hanode-firstboot.service")
    );
    let again = image(&[]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(again.stdout.contains("no changes: this host is converged"), "{}", again.stdout);
    assert!(!root.path().join("var/lib/hanode/firstboot.done").exists(), "the image stage is no first boot");

    // The firstboot stage does need to know which member this host is.
    let firstboot =
        hanode(&["init", "--role", "postgres", "--stage", "firstboot", "--dry-run", "--root", &r, "--config", &cfg]);
    assert_eq!(firstboot.code, 2, "{}", firstboot.all());
    assert!(firstboot.stderr.contains("this host is no member of cluster"), "{}", firstboot.stderr);
}

#[test]
fn the_kickstart_snippet_plans_the_image_stage_on_red_os() {
    // The site file and the %post command of scripts/kickstart/redos-hanode.ks, on a RED OS 8 root.
    let ks = std::fs::read_to_string(repo("scripts/kickstart/redos-hanode.ks")).unwrap();
    let site = ks.split("<<'SITE'\n").nth(1).and_then(|s| s.split("\nSITE\n").next()).expect("a SITE heredoc");
    assert!(ks.contains("hanode init --role postgres --stage image\n"), "the %post runs the image stage");
    let root = fixture_root("redos-8");
    let cfg = write(root.path(), "site.toml", site, 0o644);
    let r = root.path().display().to_string();
    let plan = hanode(&[
        "plan",
        "--role",
        "postgres",
        "--stage",
        "image",
        "--root",
        &r,
        "--config",
        &cfg.display().to_string(),
    ]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("[OK] identity: none yet (image stage)"), "{}", plan.stdout);
    assert!(plan.stdout.contains("would create /etc/systemd/system/hanode-firstboot.service"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("[disks]"), "the image stage leaves disks to first boot:\n{}", plan.stdout);
}

#[test]
fn a_plan_on_a_fresh_host_shows_what_it_cannot_observe_yet_as_pending() {
    // This machine's real root; on a fresh one lvm2 is not installed, and the packages phase
    // plans it: the disks phase cannot read LVM yet, and says so instead of failing.
    let run = hanode(&["plan", "--role", "postgres", "--config", &repo("examples/debian-etcd.toml"), "--node", "pg1"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let has_lvs = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join("lvs").exists());
    if !has_lvs {
        assert!(
            run.stdout.lines().any(|l| l.starts_with("would apt-get install") && l.contains(" lvm2")),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains(
                "would observe volumes (cannot be planned yet: needs `lvs`, which the changes above install)"
            ),
            "{}",
            run.stdout
        );
    }
    assert!(run.stdout.contains("nothing was changed (dry run)"), "{}", run.stdout);
}

#[test]
fn secrets_add_missing_completes_an_old_file_and_show_ca_prints_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let old = "[postgres]\nsuperuser_password = \"superuser-1\"\nreplication_password = \"replication-1\"\n";
    let file = write(dir.path(), "secrets.toml", old, 0o600);
    let f = file.to_string_lossy().into_owned();
    let shown = hanode(&["secrets", "show-ca", "--file", &f]);
    assert_eq!(shown.code, 2, "{}", shown.all());
    assert!(shown.stderr.contains("secrets add-missing"), "{}", shown.all());
    let run = hanode(&["secrets", "add-missing", "--file", &f]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.all().contains("tls.ca_cert") && run.all().contains("etcd.root_password"), "{}", run.all());
    let after = std::fs::read_to_string(&file).unwrap();
    assert!(after.contains("superuser_password = \"superuser-1\""), "{after}");
    let again = hanode(&["secrets", "add-missing", "--file", &f]);
    assert!(again.code == 0 && again.all().contains("lacks nothing"), "{}", again.all());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), after);
    let shown = hanode(&["secrets", "show-ca", "--file", &f]);
    assert_eq!(shown.code, 0, "{}", shown.all());
    assert!(
        shown.stdout.starts_with("-----BEGIN CERTIFICATE-----") && after.contains(shown.stdout.trim()),
        "{}",
        shown.stdout
    );
}

#[test]
fn check_says_by_its_exit_code_whether_init_would_proceed_and_strict_fails_on_warnings() {
    let root = fixture_root("debian-13");
    let r = root.path().display().to_string();
    let site = "[cluster]\nname = \"lab\"\nmembers = [{ name = \"pg1\", address = \"127.0.0.1\" }]\n[tls]\nenabled = false\n\
        [artifacts.etcd]\nversion = \"3.5.17\"\n\
        url = \"https://github.com/etcd-io/etcd/releases/download/v3.5.17/etcd-v3.5.17-linux-amd64.tar.gz\"\n\
        sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";
    let p = write(root.path(), "site.toml", site, 0o644).display().to_string();
    // No secrets file: `init` would stop, so `check` fails.
    let run = hanode(&["check", "--root", &r, "--config", &p]);
    assert_eq!(run.code, 2, "{}", run.all());
    let secrets = root.path().join("etc/hanode/secrets.toml").display().to_string();
    assert_eq!(hanode(&["secrets", "generate", "--out", &secrets]).code, 0);
    // Only a warning (TLS off): `init` would proceed; --strict refuses it.
    let run = hanode(&["check", "--root", &r, "--config", &p]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("[WARN] tls: TLS IS OFF"), "{}", run.stdout);
    let run = hanode(&["check", "--strict", "--root", &r, "--config", &p]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("--strict: 1 warning(s) (tls)"), "{}", run.stderr);
}

/// `hanode member remove`: what is refused before any daemon is asked (exit 2, saying what to
/// do). The rest (leader, running member, quorum) needs a cluster: the lab e2e test.
#[test]
fn member_remove_refuses_bad_requests_before_asking_anyone() {
    let root = fixture_root("debian-12");
    let site = "[cluster]\nname = \"main\"\nmembers = [{ name = \"pg1\", address = \"10.0.0.11\" }, { name = \"pg2\", address = \"10.0.0.12\" }, { name = \"etcd1\", address = \"10.0.0.21\", role = \"dcs\" }]\n";
    let site = write(root.path(), "site.toml", site, 0o644).display().to_string();
    let r = root.path().display().to_string();
    for (node, name, says) in [
        ("pg1", "pg1", "is this node"),
        ("pg1", "pg2", "still in cluster.members"),
        ("pg1", "pg3;rm", "not a member name"),
        ("etcd1", "pg3", "runs no Patroni"),
    ] {
        let run = hanode(&["member", "remove", name, "--root", &r, "--config", &site, "--node", node]);
        assert_eq!(run.code, 2, "{name} on {node}: {}", run.all());
        assert!(run.stderr.contains(says), "{name} on {node}: {}", run.all());
    }
}
