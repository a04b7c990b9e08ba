//! The site file's application roles and databases (`[postgresql] users`, `databases`): created
//! on the leader, as the superuser over the local socket (peer), once Patroni runs. What is
//! missing is added and a password that is not the secrets file's is set again; nothing is ever
//! dropped or altered besides. Replicas get them by replication.
//!
//! Passwords reach PostgreSQL only as SCRAM-SHA-256 verifiers hashed here, on psql's standard
//! input: never in argv, and not in clear text in the server's log.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use sha2::Digest;

use crate::config::secrets::Secret;
use crate::context::Context;
use crate::engine::Change;
use crate::exec::Cmd;

const SCRAM_ITERATIONS: u32 = 4096;

/// A role's SCRAM-SHA-256 verifier as PostgreSQL stores it in `pg_authid.rolpassword`
/// (RFC 5802/7677; PostgreSQL's format). `password` is ASCII (the secrets file's rule), which
/// SASLprep leaves as it is.
pub fn verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut salted = [0u8; 32];
    let rounds = std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN);
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, rounds, salt, password.as_bytes(), &mut salted);
    let client_key = crate::units::hmac_sha256(&salted, b"Client Key");
    let server_key = crate::units::hmac_sha256(&salted, b"Server Key");
    let stored_key = sha2::Sha256::digest(client_key);
    format!("SCRAM-SHA-256${iterations}:{}${}:{}", b64(salt), b64(&stored_key), b64(&server_key))
}

/// Whether a stored verifier is this password's (hashed again with its own salt and count).
pub fn verifies(stored: &str, password: &str) -> bool {
    let parse = || {
        let rest = stored.strip_prefix("SCRAM-SHA-256$")?;
        let (params, _) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        Some((iterations.parse::<u32>().ok()?, base64::engine::general_purpose::STANDARD.decode(salt).ok()?))
    };
    parse().is_some_and(|(iterations, salt)| iterations > 0 && verifier(password, &salt, iterations) == stored)
}

fn new_verifier(password: &Secret) -> String {
    verifier(password.expose(), &rand::random::<[u8; 16]>(), SCRAM_ITERATIONS)
}

/// The passwords of the site file's users, from the secrets file: exit 2 naming the first one
/// missing. Preflight asks it too, so a run stops before anything changes.
pub fn passwords(cx: &Context) -> anyhow::Result<Vec<(&str, &Secret)>> {
    let users = &cx.site.postgresql.users;
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let secrets = cx.secrets.as_ref().ok_or_else(|| {
        crate::error::bad_input(format!(
            "postgresql.users needs the secrets file {} with their passwords under [users]",
            cx.secrets_path.display()
        ))
    })?;
    users
        .iter()
        .map(|u| match secrets.user(u) {
            Some(pw) => Ok((u.as_str(), pw)),
            None => Err(crate::error::bad_input(format!(
                "{}: [users] has no password for `{u}` (postgresql.users in {}): add `{u} = \"...\"` (e.g. from `openssl rand -base64 24`)",
                secrets.path.display(),
                cx.site.path.display()
            ))),
        })
        .collect()
}

/// psql on this node's PostgreSQL, as the superuser over the local socket.
fn psql(cx: &Context, description: impl Into<String>) -> Cmd {
    Cmd::new(description, "runuser").args([
        "-u".to_string(),
        "postgres".into(),
        "--".into(),
        format!("{}/psql", crate::patroni::bin_dir(cx)),
        "-X".into(),
        "-q".into(),
        "-At".into(),
        "-v".into(),
        "ON_ERROR_STOP=1".into(),
        "-h".into(),
        crate::patroni::SOCKET_DIR.into(),
        "-p".into(),
        cx.site.patroni.postgres_port.to_string(),
        "-d".into(),
        "postgres".into(),
    ])
}

/// What this node's PostgreSQL has of the site file's roles and databases.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Whether it is a replica (read-only: the leader's run creates what is missing); `None`
    /// when PostgreSQL did not say.
    pub replica: Option<bool>,
    /// Each existing role with its stored password, if any.
    pub roles: HashMap<String, Option<String>>,
    pub databases: HashSet<String>,
}

pub fn observe(cx: &Context) -> anyhow::Result<Found> {
    let pg = &cx.site.postgresql;
    // Names are `kinds::sql_name`s: plain literals need no escaping.
    let list = |names: Vec<&str>| {
        if names.is_empty() {
            "null".to_string()
        } else {
            names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(",")
        }
    };
    let query = format!(
        "select 'recovery', pg_is_in_recovery()::text, '' \
         union all select 'role', rolname, coalesce(rolpassword, '') from pg_authid where rolname in ({}) \
         union all select 'database', datname, '' from pg_database where datname in ({})",
        list(pg.users.iter().map(String::as_str).collect()),
        list(pg.databases.iter().map(|d| d.name.as_str()).collect()),
    );
    let out = cx.runner.run(&psql(cx, "reading the site file's roles and databases").args(["-c", &query]))?;
    let mut found = Found::default();
    for line in out.stdout.lines() {
        let mut f = line.splitn(3, '|');
        match (f.next(), f.next(), f.next()) {
            (Some("recovery"), Some(r), _) => found.replica = Some(r == "true"),
            (Some("role"), Some(name), Some(pw)) => {
                found.roles.insert(name.to_string(), (!pw.is_empty()).then(|| pw.to_string()));
            }
            (Some("database"), Some(name), _) => {
                found.databases.insert(name.to_string());
            }
            _ => {}
        }
    }
    Ok(found)
}

/// The changes that bring `found` to the site file: roles first (a database's owner must exist).
pub fn changes(cx: &Context, found: &Found) -> anyhow::Result<Vec<Change>> {
    let passwords = passwords(cx)?;
    match found.replica {
        Some(true) => return Ok(Vec::new()),
        Some(false) => {}
        None => anyhow::bail!(
            "PostgreSQL did not say whether it is in recovery (pg_is_in_recovery()): see journalctl -u patroni"
        ),
    }
    let run = |summary: String, sql: String| {
        // Kept out of the server's log, even when a statement fails (a verifier is still a hash
        // worth guessing at). Names are quoted: a valid name may still be an SQL keyword.
        let sql = format!(
            "set log_statement = 'none';\nset log_min_duration_statement = -1;\nset log_min_error_statement = panic;\n{sql}\n"
        );
        Change::run(summary.clone(), psql(cx, summary).args(["-f", "-"]).stdin(Secret::new(sql)))
    };
    let mut changes = Vec::new();
    for (user, password) in passwords {
        match found.roles.get(user) {
            None => changes.push(run(
                format!("create role {user} (login, password from the secrets file)"),
                format!("create role \"{user}\" login password '{}';", new_verifier(password)),
            )),
            Some(stored) if !stored.as_deref().is_some_and(|s| verifies(s, password.expose())) => changes.push(run(
                format!("set the password of role {user} (it is not the secrets file's)"),
                format!("alter role \"{user}\" password '{}';", new_verifier(password)),
            )),
            Some(_) => {}
        }
    }
    for db in &cx.site.postgresql.databases {
        if !found.databases.contains(&db.name) {
            changes.push(run(
                format!("create database {} owned by {}", db.name, db.owner),
                format!("create database \"{}\" owner \"{}\";", db.name, db.owner),
            ));
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_is_postgresqls() {
        // Computed independently (Python's hashlib.pbkdf2_hmac and hmac) for this salt.
        let salt: Vec<u8> = (0..16).collect();
        assert_eq!(
            verifier("correct horse battery", &salt, 4096),
            "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$DSORcG4dNUxAHTEo5BL20ymSoLgt8C8jLZ09S+VUVlM=:9hLrfnf7zvCtDB9drkVXkMgUsd4vpHfg5YQJDrbaZ30="
        );
    }

    #[test]
    fn a_stored_verifier_is_checked_with_its_own_salt() {
        let stored = verifier("s3cret-password", b"0123456789abcdef", 4096);
        assert!(verifies(&stored, "s3cret-password"));
        assert!(!verifies(&stored, "s3cret-passworD"));
        assert!(!verifies("md5a3556571e93b0d20722ba62be61e8c2d", "s3cret-password"));
        assert!(!verifies("SCRAM-SHA-256$0:AAAA$x:y", "s3cret-password"));
        assert!(!verifies("", "s3cret-password"));
        // A fresh verifier has a fresh salt, and still verifies.
        let a = new_verifier(&Secret::new("s3cret-password"));
        assert_ne!(a, new_verifier(&Secret::new("s3cret-password")));
        assert!(verifies(&a, "s3cret-password"));
    }
}
