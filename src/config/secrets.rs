//! The secrets file: passwords and keys, kept out of the site file, argv, logs and plans.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;

use super::{Diagnostics, Doc, Table};
use crate::error::bad_input;

/// A secret value. It has no `Display`, and `Debug` hides it, so it cannot end up in a log
/// line or a command's argv by accident; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

#[derive(Debug, Clone)]
pub struct Secrets {
    pub path: PathBuf,
    pub superuser_password: Secret,
    pub replication_password: Secret,
    pub rewind_password: Option<Secret>,
    pub rest_api_password: Option<Secret>,
    pub consul_gossip_key: Option<Secret>,
    /// `[consul] acl_token`: the management token.
    pub consul_token: Option<Secret>,
    /// `[consul] patroni_token` and `vip_manager_token`: the clients' own (consul_acl).
    pub consul_patroni_token: Option<Secret>,
    pub consul_vip_manager_token: Option<Secret>,
    /// `[tls]`: the cluster's CA, from which each node issues its own certificate.
    pub ca: Option<crate::tls::Ca>,
    /// `[tls]`: the other CA the nodes trust while a rotation is under way.
    pub ca_rotation: crate::tls::Rotation,
    /// `[etcd]`: the passwords of etcd's users (root, patroni, vip-manager).
    pub etcd: EtcdPasswords,
    /// `[users]`: the passwords of the site file's `postgresql.users`, by role name.
    pub users: Vec<(String, Secret)>,
}

impl Secrets {
    /// The password of an application role (`[users]`).
    pub fn user(&self, name: &str) -> Option<&Secret> {
        self.users.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }
}

#[derive(Debug, Clone, Default)]
pub struct EtcdPasswords {
    pub root: Option<Secret>,
    pub patroni: Option<Secret>,
    pub vip_manager: Option<Secret>,
}

impl Secrets {
    /// Reads the secrets file, refusing one that group or others can read or write, or that
    /// someone other than root or this user owns (they could change the passwords).
    pub fn load(path: &Path) -> anyhow::Result<Secrets> {
        let cannot = |e: std::io::Error| bad_input(format!("cannot read the secrets file {}: {e}", path.display()));
        // Checked and read through one descriptor: the file judged is the file read.
        let file = std::fs::File::open(path).map_err(cannot)?;
        let meta = file.metadata().map_err(cannot)?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(bad_input(format!(
                "the secrets file {} has mode {mode:04o}: group and others must have no access; run `chmod 0600 {}`",
                path.display(),
                path.display()
            )));
        }
        let me = nix::unistd::Uid::effective();
        if meta.uid() != 0 && meta.uid() != me.as_raw() {
            let name = |uid: u32| {
                nix::unistd::User::from_uid(uid.into()).ok().flatten().map_or(format!("uid {uid}"), |u| u.name)
            };
            return Err(crate::error::refused(format!(
                "the secrets file {} is owned by {}: only root or the user running hanode ({}) may own it, as anyone else could change the passwords; check its contents, then run `chown {} {}`",
                path.display(),
                name(meta.uid()),
                name(me.as_raw()),
                name(me.as_raw()),
                path.display()
            )));
        }
        let text = crate::files::read_capped(file).map_err(cannot)?;
        Ok(Secrets::parse(path, &text)?)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Secrets, Diagnostics> {
        let doc = Doc::new(path, text);
        let secrets = doc.parse().and_then(|t| read_secrets(&doc.root(&t), path));
        let mut diags = doc.into_diagnostics();
        match secrets {
            Some(s) if diags.is_empty() => Ok(s),
            _ => {
                diags.sort_by_key(|d| (d.line, d.column));
                Err(Diagnostics(diags))
            }
        }
    }
}

fn password(t: &Table, key: &str, required: bool) -> Option<Option<Secret>> {
    value(t, key, "a password", required, |s: &str| {
        if s.len() < 8 {
            Err("too short: use at least 8 characters (`hanode secrets generate` makes strong ones)".to_string())
        } else {
            super::kinds::secret_text(s).map(|_| Secret::new(s))
        }
    })
}

/// A key's value, parsed: `Some(None)` when an optional key is absent, `None` after an error
/// (reported on the table). Values are never echoed in messages.
fn value<T>(
    t: &Table,
    key: &str,
    what: &str,
    required: bool,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<Option<T>> {
    let v = if required { t.req_parsed(key, what, parse) } else { t.opt_parsed(key, parse) };
    match v {
        Some(v) => Some(Some(v.value)),
        None if !required && !t.has(key) => Some(None),
        None => None,
    }
}

/// Consul takes only UUIDs as the secret of a token it is given.
fn consul_token(s: &str) -> Result<Secret, String> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lens == [8, 4, 4, 4, 12] && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit())) {
        Ok(Secret::new(s))
    } else {
        Err("not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), which Consul takes as a token: remove the key and `hanode secrets add-missing` makes one (not acl_token on a running Consul: its servers keep the first)".to_string())
    }
}

/// A random (version 4) UUID, for Consul's tokens.
fn random_uuid() -> String {
    use rand::RngExt;
    let mut b = [0u8; 16];
    rand::rng().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn certificate(s: &str) -> Result<String, String> {
    match x509_parser::pem::parse_x509_pem(s.as_bytes()) {
        Ok((_, p)) if p.label == "CERTIFICATE" && p.parse_x509().is_ok() => Ok(s.to_string()),
        _ => Err("not a PEM certificate (`hanode secrets generate` writes one)".to_string()),
    }
}

fn private_key(s: &str) -> Result<Secret, String> {
    match rcgen::KeyPair::from_pem(s) {
        Ok(_) => Ok(Secret::new(s)),
        Err(_) => {
            Err("not a PEM private key that hanode can sign with (ECDSA P-256, P-384 or Ed25519, PKCS#8)".to_string())
        }
    }
}

/// A CA from `[tls] <prefix>ca_cert` and `<prefix>ca_key`: both or neither, and the key the
/// certificate's.
fn ca_pair(t: &Table, prefix: &str, required: bool) -> Option<Option<crate::tls::Ca>> {
    let (cert_key, key_key) = (format!("{prefix}ca_cert"), format!("{prefix}ca_key"));
    let cert = value(t, &cert_key, "the cluster CA's certificate (PEM)", required, certificate);
    let key = value(t, &key_key, "the cluster CA's private key (PEM)", required, private_key);
    match (cert?, key?) {
        (None, None) => Some(None),
        (Some(cert_pem), Some(key_pem)) => {
            let ca = crate::tls::Ca { cert_pem, key_pem };
            if crate::tls::key_matches(&ca) {
                Some(Some(ca))
            } else {
                t.error(
                    &key_key,
                    format!("this key does not belong to {cert_key}: keep the pair hanode wrote together"),
                );
                None
            }
        }
        (Some(_), None) | (None, Some(_)) => {
            let missing = if t.has(&cert_key) { &key_key } else { &cert_key };
            t.error(missing, "missing: a CA's certificate and key go together");
            None
        }
    }
}

fn read_secrets(root: &Table, path: &Path) -> Option<Secrets> {
    let pg = root.req_table("postgres", "superuser_password and replication_password");
    let (superuser, replication, rewind) = match &pg {
        Some(t) => {
            let r = (
                password(t, "superuser_password", true),
                password(t, "replication_password", true),
                password(t, "rewind_password", false),
            );
            t.finish(&["superuser_password", "replication_password", "rewind_password"]);
            r
        }
        None => (None, None, None),
    };
    let rest = match root.opt_table("patroni") {
        Some(t) => {
            let r = password(&t, "rest_api_password", false);
            t.finish(&["rest_api_password"]);
            r
        }
        None => Some(None),
    };
    let (gossip, tokens) = match root.opt_table("consul") {
        Some(t) => {
            let gossip = t.opt_parsed("gossip_key", |s| match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(k) if k.len() == 32 => Ok(Secret::new(s)),
                _ => Err("not a Consul gossip key: expected 32 random bytes in standard base64 (`hanode secrets generate` or `consul keygen`)".to_string()),
            });
            let tokens = (
                value(&t, "acl_token", "a token", false, consul_token),
                value(&t, "patroni_token", "a token", false, consul_token),
                value(&t, "vip_manager_token", "a token", false, consul_token),
            );
            // One token per client: a shared one would carry the other's rights.
            let keys = ["acl_token", "patroni_token", "vip_manager_token"];
            let values = [&tokens.0, &tokens.1, &tokens.2].map(|v| v.clone().flatten());
            for i in 1..keys.len() {
                if let Some(j) = (0..i).find(|&j| values[i].is_some() && values[i] == values[j]) {
                    t.error(keys[i], format!("the same as {}: every client has a token of its own", keys[j]));
                }
            }
            let gossip_ok = gossip.is_some() || !t.has("gossip_key");
            t.finish(&["gossip_key", "acl_token", "patroni_token", "vip_manager_token"]);
            (gossip_ok.then(|| gossip.map(|g| g.value)), tokens)
        }
        None => (Some(None), (Some(None), Some(None), Some(None))),
    };
    let (ca, ca_rotation) = match root.opt_table("tls") {
        Some(t) => {
            let ca = ca_pair(&t, "", true);
            let next = ca_pair(&t, "next_", false);
            let old = value(&t, "old_ca_cert", "the previous CA's certificate (PEM)", false, certificate);
            t.finish(&["ca_cert", "ca_key", "next_ca_cert", "next_ca_key", "old_ca_cert"]);
            let rotation = match (next, old) {
                (Some(None), Some(None)) => Some(crate::tls::Rotation::None),
                (Some(Some(n)), Some(None)) => Some(crate::tls::Rotation::Next(n)),
                (Some(None), Some(Some(o))) => Some(crate::tls::Rotation::Old(o)),
                (Some(Some(_)), Some(Some(_))) => {
                    t.error(
                        "old_ca_cert",
                        "a CA rotation takes one step at a time: next_ca_cert and old_ca_cert cannot both be here; keep the file `hanode secrets rotate-ca` wrote",
                    );
                    None
                }
                _ => None,
            };
            (ca, rotation)
        }
        None => (Some(None), Some(crate::tls::Rotation::None)),
    };
    let etcd = match root.opt_table("etcd") {
        Some(t) => {
            let r = (
                password(&t, "root_password", false),
                password(&t, "patroni_password", false),
                password(&t, "vip_manager_password", false),
            );
            t.finish(&["root_password", "patroni_password", "vip_manager_password"]);
            match r {
                (Some(root), Some(patroni), Some(vip_manager)) => Some(EtcdPasswords { root, patroni, vip_manager }),
                _ => None,
            }
        }
        None => Some(EtcdPasswords::default()),
    };
    let users = match root.opt_table("users") {
        Some(t) => {
            let mut users = Vec::new();
            for key in t.keys() {
                if let Err(e) = super::kinds::sql_name(&key) {
                    t.error(&key, e);
                    continue;
                }
                // hanode hashes these for SCRAM itself; PostgreSQL would first normalise a
                // non-ASCII one (SASLprep), and the two would differ.
                let pw = value(&t, &key, "a password", true, |s: &str| match s.chars().find(|c| !c.is_ascii()) {
                    Some(_) => Err("use ASCII characters only (`openssl rand -base64 24` makes one)".to_string()),
                    None if s.len() < 8 => Err("too short: use at least 8 characters".to_string()),
                    None => super::kinds::secret_text(s).map(|_| Secret::new(s)),
                });
                if let Some(Some(pw)) = pw {
                    users.push((key, pw));
                }
            }
            users
        }
        None => Vec::new(),
    };
    root.finish(&["postgres", "patroni", "consul", "tls", "etcd", "users"]);
    Some(Secrets {
        path: path.to_path_buf(),
        superuser_password: superuser??,
        replication_password: replication??,
        rewind_password: rewind?,
        rest_api_password: rest?,
        consul_gossip_key: gossip?,
        consul_token: tokens.0?,
        consul_patroni_token: tokens.1?,
        consul_vip_manager_token: tokens.2?,
        ca: ca?,
        ca_rotation: ca_rotation?,
        etcd: etcd?,
        users,
    })
}

fn random_password() -> String {
    use rand::RngExt;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..24).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}

/// Puts into `doc` every generated secret it lacks (keys already there are kept as they are);
/// returns the keys it added.
fn fill_missing(doc: &mut toml_edit::DocumentMut) -> anyhow::Result<Vec<String>> {
    use rand::RngExt;
    let mut added = Vec::new();
    let mut put = |doc: &mut toml_edit::DocumentMut,
                   table: &str,
                   key: &str,
                   about: &str,
                   value: &dyn Fn() -> anyhow::Result<String>|
     -> anyhow::Result<()> {
        if !doc.contains_table(table) {
            let mut t = toml_edit::Table::new();
            t.decor_mut().set_prefix(format!("\n# {about}\n"));
            doc.insert(table, toml_edit::Item::Table(t));
        }
        let t = doc[table].as_table_mut().ok_or_else(|| anyhow::anyhow!("[{table}] is not a table"))?;
        if !t.contains_key(key) {
            t.insert(key, toml_edit::value(value()?));
            added.push(format!("{table}.{key}"));
        }
        Ok(())
    };
    let pw = || Ok(random_password());
    put(doc, "postgres", "superuser_password", "PostgreSQL's users.", &pw)?;
    put(doc, "postgres", "replication_password", "", &pw)?;
    put(doc, "postgres", "rewind_password", "", &pw)?;
    put(doc, "patroni", "rest_api_password", "Patroni's REST API (basic auth).", &pw)?;
    put(doc, "etcd", "root_password", "etcd's users (its authentication is on with TLS).", &pw)?;
    put(doc, "etcd", "patroni_password", "", &pw)?;
    put(doc, "etcd", "vip_manager_password", "", &pw)?;
    put(doc, "consul", "gossip_key", "Consul's gossip encryption key and ACL tokens.", &|| {
        let mut key = [0u8; 32];
        rand::rng().fill(&mut key);
        Ok(base64::engine::general_purpose::STANDARD.encode(key))
    })?;
    let uuid = || Ok(random_uuid());
    put(doc, "consul", "acl_token", "", &uuid)?;
    put(doc, "consul", "patroni_token", "", &uuid)?;
    put(doc, "consul", "vip_manager_token", "", &uuid)?;
    // The CA's certificate and key belong together: both or neither.
    if !doc.get("tls").and_then(|t| t.as_table()).is_some_and(|t| t.contains_key("ca_cert") || t.contains_key("ca_key"))
    {
        let ca = crate::tls::generate_ca()?;
        put(doc, "tls", "ca_cert", "The cluster's CA: each node issues its own certificate from it.", &|| {
            Ok(ca.cert_pem.clone())
        })?;
        put(doc, "tls", "ca_key", "", &|| Ok(ca.key_pem.expose().to_string()))?;
    }
    Ok(added)
}

/// A new secrets file: random passwords, a Consul gossip key and a cluster CA, written 0600;
/// an existing file is never overwritten.
pub fn generate(path: &Path) -> anyhow::Result<()> {
    let mut doc = toml_edit::DocumentMut::new();
    doc.decor_mut().set_prefix(
        "# Written by `hanode secrets generate`. Copy this same file to every node of the cluster\n# as /etc/hanode/secrets.toml, mode 0600, owned by root.\n",
    );
    fill_missing(&mut doc)?;
    crate::files::write_new(path, doc.to_string().as_bytes(), 0o600)
}

/// Adds to an existing secrets file what a file written by an older hanode lacks (the cluster
/// CA, etcd's passwords, ...); what is there is never changed. Returns the keys added.
pub fn add_missing(path: &Path) -> anyhow::Result<Vec<String>> {
    Secrets::load(path)?;
    let text = crate::files::read_input(path).with_context(|| format!("reading {}", path.display()))?;
    let mut doc: toml_edit::DocumentMut = text.parse()?;
    let added = fill_missing(&mut doc)?;
    if added.is_empty() {
        return Ok(added);
    }
    let text = doc.to_string();
    Secrets::parse(path, &text)?;
    crate::files::write_atomic(path, text.as_bytes(), 0o600, None)?;
    Ok(added)
}

/// One step of a CA rotation in the secrets file (see [`crate::tls::Rotation`]); returns the
/// step taken, 1 to 3. Each step is rolled out by `hanode init` on every node before the next.
pub fn rotate_ca(path: &Path) -> anyhow::Result<u8> {
    let secrets = Secrets::load(path)?;
    let Some(ca) = &secrets.ca else {
        return Err(bad_input(format!(
            "{} has no cluster CA to rotate: `hanode secrets add-missing --file {}` adds one",
            path.display(),
            path.display()
        )));
    };
    let before = crate::files::read_input(path).with_context(|| format!("reading {}", path.display()))?;
    let mut doc: toml_edit::DocumentMut = before.parse()?;
    let t = doc["tls"].as_table_mut().ok_or_else(|| anyhow::anyhow!("[tls] in {} is not a table", path.display()))?;
    let step = match &secrets.ca_rotation {
        crate::tls::Rotation::None => {
            let next = crate::tls::generate_ca()?;
            t.insert("next_ca_cert", toml_edit::value(next.cert_pem));
            t.insert("next_ca_key", toml_edit::value(next.key_pem.expose()));
            1
        }
        crate::tls::Rotation::Next(next) => {
            t.insert("old_ca_cert", toml_edit::value(ca.cert_pem.clone()));
            t.insert("ca_cert", toml_edit::value(next.cert_pem.clone()));
            t.insert("ca_key", toml_edit::value(next.key_pem.expose()));
            t.remove("next_ca_cert");
            t.remove("next_ca_key");
            2
        }
        crate::tls::Rotation::Old(_) => {
            t.remove("old_ca_cert");
            3
        }
    };
    let text = doc.to_string();
    Secrets::parse(path, &text)?;
    // The file as it was, should a step be taken twice before it was rolled out.
    let backup = PathBuf::from(format!("{}.bak", path.display()));
    crate::files::write_atomic(&backup, before.as_bytes(), 0o600, None)?;
    crate::files::write_atomic(path, text.as_bytes(), 0o600, None)?;
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_are_valid_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        generate(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let s = Secrets::load(&path).unwrap();
        assert_eq!(s.superuser_password.expose().len(), 24);
        assert_ne!(s.superuser_password, s.replication_password);
        assert!(s.consul_gossip_key.is_some());
        let before = std::fs::read(&path).unwrap();
        let err = generate(&path).unwrap_err();
        assert_eq!(crate::error::kind_of(&err), crate::error::Kind::Refused);
        assert!(err.to_string().contains(&format!("{} exists", path.display())), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // A name taken by anything, even a link to nowhere, is never replaced.
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        assert_eq!(crate::error::kind_of(&generate(&link).unwrap_err()), crate::error::Kind::Refused);
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(!dir.path().join("nowhere").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "a temporary file was left behind");
    }

    #[test]
    fn a_secrets_file_of_another_user_or_too_large_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        generate(&path).unwrap();
        // Too large (sparse): exit 2, naming the file.
        let big = dir.path().join("big.toml");
        std::fs::File::create(&big).unwrap().set_len(crate::files::INPUT_CAP + 1).unwrap();
        std::fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let err = Secrets::load(&big).unwrap_err();
        assert_eq!(crate::error::kind_of(&err), crate::error::Kind::BadInput);
        assert!(err.to_string().contains(&format!("{}: larger than", big.display())), "{err}");
        if !nix::unistd::Uid::effective().is_root() {
            return; // only root can give the file away
        }
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::chown(&path, Some(nobody), None).unwrap();
        let err = Secrets::load(&path).unwrap_err();
        assert_eq!(crate::error::kind_of(&err), crate::error::Kind::Refused);
        let msg = err.to_string();
        assert!(msg.contains(&format!("the secrets file {} is owned by ", path.display())), "{msg}");
        assert!(msg.contains(&format!("run `chown root {}`", path.display())), "{msg}");
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
        Secrets::load(&path).unwrap();
    }

    #[test]
    fn a_ca_that_is_not_one_is_refused_without_echoing_the_key() {
        let base = "[postgres]\nsuperuser_password = \"superuser-1\"\nreplication_password = \"replication-1\"\n";
        let text = format!("{base}[tls]\nca_cert = \"not a certificate\"\nca_key = \"SECRETKEYMATERIAL\"\n");
        let err = Secrets::parse(Path::new("s.toml"), &text).unwrap_err().to_string();
        assert!(err.contains("tls.ca_cert") && err.contains("tls.ca_key"), "{err}");
        assert!(!err.contains("SECRETKEYMATERIAL"), "{err}");
        // A key of another CA.
        let (a, b) = (crate::tls::generate_ca().unwrap(), crate::tls::generate_ca().unwrap());
        let mixed = format!("{base}[tls]\nca_cert = {:?}\nca_key = {:?}\n", a.cert_pem, b.key_pem.expose());
        let err = Secrets::parse(Path::new("s.toml"), &mixed).unwrap_err().to_string();
        assert!(err.contains("tls.ca_key") && err.contains("does not belong"), "{err}");
        let missing = Secrets::parse(Path::new("s.toml"), &format!("{base}[tls]\n")).unwrap_err().to_string();
        assert!(missing.contains("tls.ca_cert") && missing.contains("tls.ca_key"), "{missing}");
    }

    #[test]
    fn a_ca_rotation_takes_three_steps_and_never_trusts_less_than_both_issuers() {
        use crate::tls::Rotation;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        generate(&path).unwrap();
        let first = Secrets::load(&path).unwrap().ca.unwrap();
        assert_eq!(rotate_ca(&path).unwrap(), 1);
        let s = Secrets::load(&path).unwrap();
        let Rotation::Next(next) = &s.ca_rotation else { panic!("step 1 adds the next CA: {:?}", s.ca_rotation) };
        assert_eq!(s.ca.as_ref().unwrap().cert_pem, first.cert_pem, "step 1 still issues from the first CA");
        let trusted = crate::tls::trusted(s.ca.as_ref().unwrap(), &s.ca_rotation);
        assert!(trusted.contains(&first.cert_pem) && trusted.contains(&next.cert_pem));
        assert_eq!(rotate_ca(&path).unwrap(), 2);
        let s2 = Secrets::load(&path).unwrap();
        assert_eq!(s2.ca.as_ref().unwrap().cert_pem, next.cert_pem, "step 2 issues from the next CA");
        assert!(matches!(&s2.ca_rotation, Rotation::Old(o) if *o == first.cert_pem));
        assert_eq!(rotate_ca(&path).unwrap(), 3);
        let s3 = Secrets::load(&path).unwrap();
        assert!(matches!(s3.ca_rotation, Rotation::None));
        assert_eq!(crate::tls::trusted(s3.ca.as_ref().unwrap(), &s3.ca_rotation), next.cert_pem);
        assert_eq!(s3.superuser_password, s.superuser_password, "nothing else changes");
        // A hand-made file with both halves of a rotation is refused, naming the key.
        let text = std::fs::read_to_string(&path).unwrap();
        let both = format!(
            "{text}next_ca_cert = {:?}\nnext_ca_key = {:?}\nold_ca_cert = {:?}\n",
            first.cert_pem,
            first.key_pem.expose(),
            first.cert_pem
        );
        let err = Secrets::parse(&path, &both).unwrap_err().to_string();
        assert!(err.contains("tls.old_ca_cert") && err.contains("one step at a time"), "{err}");
        let half = format!("{text}next_ca_cert = {:?}\n", first.cert_pem);
        let err = Secrets::parse(&path, &half).unwrap_err().to_string();
        assert!(err.contains("tls.next_ca_key") && err.contains("go together"), "{err}");
    }

    #[test]
    fn consul_tokens_are_uuids_and_each_client_has_its_own() {
        let base = "[postgres]\nsuperuser_password = \"superuser-1\"\nreplication_password = \"replication-1\"\n";
        let t = "11111111-2222-4333-8444-555555555555";
        let same = format!("{base}[consul]\nacl_token = \"{t}\"\npatroni_token = \"{t}\"\n");
        let err = Secrets::parse(Path::new("s.toml"), &same).unwrap_err().to_string();
        assert!(err.contains("consul.patroni_token") && err.contains("the same as acl_token"), "{err}");
        let short = format!("{base}[consul]\nacl_token = \"not-a-uuid-at-all\"\n");
        let err = Secrets::parse(Path::new("s.toml"), &short).unwrap_err().to_string();
        assert!(err.contains("consul.acl_token") && err.contains("not a UUID"), "{err}");
    }

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("hunter2hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn errors_never_echo_a_secret() {
        let text = "[postgres]\nsuperuser_password = \"short\"\nreplication_password = \"longenough1\"\n";
        let err = Secrets::parse(Path::new("s.toml"), text).unwrap_err().to_string();
        assert!(err.contains("postgres.superuser_password"), "{err}");
        assert!(!err.contains("short\""), "{err}");
    }
}
