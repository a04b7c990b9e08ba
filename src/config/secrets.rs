//! The secrets file: passwords and keys, kept out of the site file, argv, logs and plans.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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
    pub consul_token: Option<Secret>,
    /// `[tls]`: the cluster's CA, from which each node issues its own certificate.
    pub ca: Option<crate::tls::Ca>,
    /// `[etcd]`: the passwords of etcd's users (root, patroni, vip-manager).
    pub etcd: EtcdPasswords,
}

#[derive(Debug, Clone, Default)]
pub struct EtcdPasswords {
    pub root: Option<Secret>,
    pub patroni: Option<Secret>,
    pub vip_manager: Option<Secret>,
}

impl Secrets {
    /// Reads the secrets file, refusing one that group or others can read or write.
    pub fn load(path: &Path) -> anyhow::Result<Secrets> {
        let meta = std::fs::metadata(path)
            .map_err(|e| bad_input(format!("cannot read the secrets file {}: {e}", path.display())))?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(bad_input(format!(
                "the secrets file {} has mode {mode:04o}: group and others must have no access; run `chmod 0600 {}`",
                path.display(),
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad_input(format!("cannot read the secrets file {}: {e}", path.display())))?;
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
    let check = |s: &str| {
        if s.len() < 8 {
            Err("too short: use at least 8 characters (`hanode secrets generate` makes strong ones)".to_string())
        } else if s.contains(['\n', '\r', '\0']) {
            Err("must not contain line breaks or NUL".to_string())
        } else {
            Ok(Secret::new(s))
        }
    };
    // Values are never echoed in messages.
    let v = if required { t.req_parsed(key, "a password", check) } else { t.opt_parsed(key, check) };
    match v {
        Some(v) => Some(Some(v.value)),
        None if !required && !t.has(key) => Some(None),
        None => None,
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
    let (gossip, token) = match root.opt_table("consul") {
        Some(t) => {
            let gossip = t.opt_parsed("gossip_key", |s| match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(k) if k.len() == 32 => Ok(Secret::new(s)),
                _ => Err("not a Consul gossip key: expected 32 random bytes in standard base64 (`hanode secrets generate` or `consul keygen`)".to_string()),
            });
            let token = password(&t, "acl_token", false);
            let gossip_ok = gossip.is_some() || !t.has("gossip_key");
            t.finish(&["gossip_key", "acl_token"]);
            (gossip_ok.then(|| gossip.map(|g| g.value)), token)
        }
        None => (Some(None), Some(None)),
    };
    let ca = match root.opt_table("tls") {
        Some(t) => {
            let cert =
                t.req_parsed(
                    "ca_cert",
                    "the cluster CA's certificate (PEM)",
                    |s| match x509_parser::pem::parse_x509_pem(s.as_bytes()) {
                        Ok((_, p)) if p.label == "CERTIFICATE" && p.parse_x509().is_ok() => Ok(s.to_string()),
                        _ => Err("not a PEM certificate (`hanode secrets generate` writes one)".to_string()),
                    },
                );
            // Values are never echoed in messages.
            let key =
                t.req_parsed("ca_key", "the cluster CA's private key (PEM)", |s| match rcgen::KeyPair::from_pem(s) {
                    Ok(_) => Ok(Secret::new(s)),
                    Err(_) => {
                        Err("not a PEM private key that hanode can sign with (ECDSA P-256, P-384 or Ed25519, PKCS#8)"
                            .to_string())
                    }
                });
            t.finish(&["ca_cert", "ca_key"]);
            match (cert, key) {
                (Some(c), Some(k)) => {
                    let ca = crate::tls::Ca { cert_pem: c.value, key_pem: k.value };
                    if crate::tls::key_matches(&ca) {
                        Some(Some(ca))
                    } else {
                        t.error(
                                "ca_key",
                                "this key does not belong to ca_cert: keep the pair `hanode secrets generate` wrote together",
                            );
                        None
                    }
                }
                _ => None,
            }
        }
        None => Some(None),
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
    root.finish(&["postgres", "patroni", "consul", "tls", "etcd"]);
    Some(Secrets {
        path: path.to_path_buf(),
        superuser_password: superuser??,
        replication_password: replication??,
        rewind_password: rewind?,
        rest_api_password: rest?,
        consul_gossip_key: gossip?,
        consul_token: token?,
        ca: ca?,
        etcd: etcd?,
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
    put(doc, "consul", "gossip_key", "Consul's gossip encryption key.", &|| {
        let mut key = [0u8; 32];
        rand::rng().fill(&mut key);
        Ok(base64::engine::general_purpose::STANDARD.encode(key))
    })?;
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
    if path.exists() {
        return Err(crate::error::refused(format!(
            "{} exists: hanode does not overwrite secrets; remove it first if you mean to replace them",
            path.display()
        )));
    }
    let mut doc = toml_edit::DocumentMut::new();
    doc.decor_mut().set_prefix(
        "# Written by `hanode secrets generate`. Copy this same file to every node of the cluster\n# as /etc/hanode/secrets.toml, mode 0600, owned by root.\n",
    );
    fill_missing(&mut doc)?;
    crate::files::write_atomic(path, doc.to_string().as_bytes(), 0o600, None)
}

/// Adds to an existing secrets file what a file written by an older hanode lacks (the cluster
/// CA, etcd's passwords, ...); what is there is never changed. Returns the keys added.
pub fn add_missing(path: &Path) -> anyhow::Result<Vec<String>> {
    Secrets::load(path)?;
    let text = std::fs::read_to_string(path)?;
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
        assert!(generate(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
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
