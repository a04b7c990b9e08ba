//! The tls phase on a temporary host root: it issues this node's certificate from the secrets
//! file's CA once, leaves it alone on a re-run, and issues a new one (saying why) when the CA
//! or the node's address changes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use hanode::config::Role;
use hanode::context::{Context, Options};
use hanode::engine::{self, Report};
use hanode::exec::Recording;

fn context(root: &Path, address: &str, secrets: &Path) -> Context {
    let site = format!(
        "[cluster]\nname = \"main\"\nmembers = [{{ name = \"pg1\", address = \"{address}\" }}, {{ name = \"pg2\", address = \"10.0.0.12\" }}]\n[vip]\naddress = \"10.0.0.100/24\"\ninterface = \"eth0\"\n"
    );
    let site = common::write(root, "site.toml", &site, 0o644);
    let opts = Options {
        root: root.to_path_buf(),
        config: Some(site),
        secrets: Some(secrets.to_path_buf()),
        node: Some("pg1".into()),
        role: Some(Role::Postgres),
        ..Options::default()
    };
    Context::load(&opts, Box::new(Arc::new(Recording::default()))).unwrap()
}

/// Runs the tls phase for real (dry_run false) and returns the summaries of what it changed.
fn run(cx: &Context) -> Vec<String> {
    let all = hanode::phases::all();
    let tls = all.iter().find(|p| p.name == "tls").unwrap();
    let mut report = Report::default();
    engine::converge(cx, &[*tls], false, &mut report).unwrap();
    report.changes.iter().map(|c| c.summary.clone()).collect()
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p.trim_start_matches('/'))).unwrap()
}

fn mode(root: &Path, p: &str) -> u32 {
    std::fs::metadata(root.join(p.trim_start_matches('/'))).unwrap().permissions().mode() & 0o7777
}

#[test]
fn issues_once_keeps_it_and_issues_again_when_the_ca_or_the_address_changes() {
    let root = common::fixture_root("debian-12");
    let root = root.path();
    let secrets = root.join("secrets.toml");
    hanode::config::secrets::generate(&secrets).unwrap();
    let cx = context(root, "10.0.0.11", &secrets);

    let first = run(&cx);
    assert!(first.iter().any(|s| s.contains("node.crt") && s.contains("there is none yet")), "{first:?}");
    assert_eq!(
        (mode(root, hanode::tls::CERT), mode(root, hanode::tls::KEY), mode(root, hanode::tls::CA)),
        (0o644, 0o600, 0o644)
    );
    let ca = cx.secrets.as_ref().unwrap().ca.clone().unwrap();
    assert_eq!(read(root, hanode::tls::CA), ca.cert_pem);
    let cert = read(root, hanode::tls::CERT);
    let fit = hanode::tls::judge(&cert, &read(root, hanode::tls::KEY), &ca.cert_pem, &hanode::tls::names(&cx));
    assert!(matches!(fit, hanode::tls::Fit::Fits { .. }), "{fit:?}");
    assert!(!first.iter().any(|s| s.contains("PRIVATE KEY")), "a key in a summary: {first:?}");

    // A re-run: nothing to change, the same certificate.
    assert_eq!(run(&cx), Vec::<String>::new());
    assert_eq!(read(root, hanode::tls::CERT), cert);

    // A new CA in the secrets file: a new certificate from it.
    std::fs::remove_file(&secrets).unwrap();
    hanode::config::secrets::generate(&secrets).unwrap();
    let cx = context(root, "10.0.0.11", &secrets);
    let new_ca = run(&cx);
    assert!(new_ca.iter().any(|s| s.contains("node.crt") && s.contains("not issued by the CA")), "{new_ca:?}");
    assert!(new_ca.iter().any(|s| s.contains("ca.crt")), "{new_ca:?}");
    let ca2 = cx.secrets.as_ref().unwrap().ca.clone().unwrap();
    let fit = hanode::tls::judge(
        &read(root, hanode::tls::CERT),
        &read(root, hanode::tls::KEY),
        &ca2.cert_pem,
        &hanode::tls::names(&cx),
    );
    assert!(matches!(fit, hanode::tls::Fit::Fits { .. }), "{fit:?}");

    // The member moves to another address: a certificate that names it.
    let moved = context(root, "10.0.0.21", &secrets);
    let changes = run(&moved);
    assert!(changes.iter().any(|s| s.contains("10.0.0.21")), "{changes:?}");
    assert_eq!(run(&moved), Vec::<String>::new());
}

/// The issuer of the node certificate on disk, as the CA certificate it verifies against.
fn issued_by(root: &Path, cx: &Context, ca_pem: &str) -> bool {
    let fit = hanode::tls::judge(
        &read(root, hanode::tls::CERT),
        &read(root, hanode::tls::KEY),
        ca_pem,
        &hanode::tls::names(cx),
    );
    matches!(fit, hanode::tls::Fit::Fits { .. })
}

#[test]
fn each_step_of_a_ca_rotation_issues_a_new_certificate_and_trusts_both_cas_until_the_last() {
    let root = common::fixture_root("debian-12");
    let root = root.path();
    let secrets = root.join("secrets.toml");
    hanode::config::secrets::generate(&secrets).unwrap();
    let cx = context(root, "10.0.0.11", &secrets);
    run(&cx);
    let first = cx.secrets.as_ref().unwrap().ca.clone().unwrap();
    let mut serials = vec![read(root, hanode::tls::CERT)];

    // Step 1: the next CA is trusted; the certificate is new (daemons reload on a new one)
    // but still of the first CA, which peers that have not had step 1 yet trust.
    hanode::config::secrets::rotate_ca(&secrets).unwrap();
    let cx = context(root, "10.0.0.11", &secrets);
    let changes = run(&cx);
    assert!(changes.iter().any(|s| s.contains("node.crt") && s.contains("CA rotation")), "{changes:?}");
    let hanode::tls::Rotation::Next(next) = cx.secrets.as_ref().unwrap().ca_rotation.clone() else { panic!() };
    assert_eq!(read(root, hanode::tls::CA), format!("{}{}", first.cert_pem, next.cert_pem));
    assert!(issued_by(root, &cx, &first.cert_pem));
    assert_eq!(run(&cx), Vec::<String>::new(), "a second run of step 1 changes nothing");
    serials.push(read(root, hanode::tls::CERT));

    // Step 2: issued by the next CA; both still trusted.
    hanode::config::secrets::rotate_ca(&secrets).unwrap();
    let cx = context(root, "10.0.0.11", &secrets);
    run(&cx);
    assert!(issued_by(root, &cx, &next.cert_pem));
    let trusted = read(root, hanode::tls::CA);
    assert!(trusted.contains(&first.cert_pem) && trusted.contains(&next.cert_pem), "{trusted}");
    serials.push(read(root, hanode::tls::CERT));

    // Step 3: the first CA is no longer trusted.
    hanode::config::secrets::rotate_ca(&secrets).unwrap();
    let cx = context(root, "10.0.0.11", &secrets);
    run(&cx);
    assert_eq!(read(root, hanode::tls::CA), next.cert_pem);
    assert!(issued_by(root, &cx, &next.cert_pem));
    serials.push(read(root, hanode::tls::CERT));
    assert_eq!(run(&cx), Vec::<String>::new());
    let distinct: std::collections::BTreeSet<_> = serials.iter().collect();
    assert_eq!(distinct.len(), 4, "each step issues a new certificate");
}

#[test]
fn a_secrets_file_without_a_ca_is_refused_with_the_command_that_adds_one() {
    let root = common::fixture_root("debian-12");
    let root = root.path();
    let secrets = common::write(
        root,
        "secrets.toml",
        "[postgres]\nsuperuser_password = \"superuser-1\"\nreplication_password = \"replication-1\"\n[patroni]\nrest_api_password = \"restapi-1\"\n",
        0o600,
    );
    let cx = context(root, "10.0.0.11", &secrets);
    let check = hanode::phases::tls::check(&cx);
    assert_eq!(check.status, hanode::ui::Status::Error);
    assert!(check.detail.contains("hanode secrets add-missing"), "{}", check.detail);
    let before = std::fs::read_to_string(&secrets).unwrap();
    let added = hanode::config::secrets::add_missing(&secrets).unwrap();
    assert!(
        added.contains(&"tls.ca_cert".to_string()) && added.contains(&"etcd.patroni_password".to_string()),
        "{added:?}"
    );
    let after = std::fs::read_to_string(&secrets).unwrap();
    assert!(after.starts_with(before.trim_end()) || after.contains("superuser_password = \"superuser-1\""), "{after}");
    let cx = context(root, "10.0.0.11", &secrets);
    assert_eq!(hanode::phases::tls::check(&cx).status, hanode::ui::Status::Ok);
    assert_eq!(cx.secrets.as_ref().unwrap().superuser_password.expose(), "superuser-1", "a password was changed");
    assert_eq!(hanode::config::secrets::add_missing(&secrets).unwrap(), Vec::<String>::new());
    assert_eq!(std::fs::read_to_string(&secrets).unwrap(), after, "a second run changed the file");
}

#[test]
fn a_running_etcd_member_is_not_moved_between_http_and_https() {
    let root = common::fixture_root("debian-12");
    let root = root.path();
    let secrets = root.join("secrets.toml");
    hanode::config::secrets::generate(&secrets).unwrap();
    std::fs::create_dir_all(root.join("var/lib/etcd/main/member")).unwrap();
    std::fs::create_dir_all(root.join("etc/hanode")).unwrap();
    std::fs::write(root.join("etc/hanode/etcd.yml"), "listen-peer-urls: http://10.0.0.11:2380\n").unwrap();
    let cx = context(root, "10.0.0.11", &secrets);
    let all = hanode::phases::all();
    let dcs = all.iter().find(|p| p.name == "dcs").unwrap();
    let checks = dcs.checks(&cx);
    let refusal = checks.iter().find(|c| c.name == "etcd scheme").expect("a refusal");
    assert_eq!(refusal.status, hanode::ui::Status::Error);
    assert!(refusal.detail.contains("[tls] enabled = false"), "{}", refusal.detail);
    // The same member on https: nothing to say.
    std::fs::write(root.join("etc/hanode/etcd.yml"), "listen-peer-urls: https://10.0.0.11:2380\n").unwrap();
    assert!(dcs.checks(&cx).iter().all(|c| c.name != "etcd scheme"));
}
