//! Exit codes of the user-facing contract (DESIGN.md) and the error that carries one.
//!
//! Code anywhere may return a plain `anyhow::Error` (exit 1: a step failed). Bad input and
//! safety refusals are wrapped in [`Fail`] so that `main` can find the right exit code in the
//! error chain, however much context was added on the way up.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Exit 1: a step failed.
    Failed = 1,
    /// Exit 2: bad input (CLI, config, secrets, unsupported OS).
    BadInput = 2,
    /// Exit 3: refused for safety (a disk is not empty, a checksum does not match, ...).
    Refused = 3,
}

impl Kind {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// An error with an exit code and what the operator should do next.
#[derive(Debug)]
pub struct Fail {
    pub kind: Kind,
    pub message: String,
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fail {}

pub fn bad_input(message: impl Into<String>) -> anyhow::Error {
    Fail { kind: Kind::BadInput, message: message.into() }.into()
}

pub fn refused(message: impl Into<String>) -> anyhow::Error {
    Fail { kind: Kind::Refused, message: message.into() }.into()
}

/// A program hanode needs is not installed (yet). A plan turns it into a pending change when an
/// earlier change of the same plan may install it; a real run reports it as the failure it is.
#[derive(Debug)]
pub struct MissingProgram {
    pub program: String,
}

impl fmt::Display for MissingProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot start `{}`; is it installed and on PATH?", self.program)
    }
}

impl std::error::Error for MissingProgram {}

/// What cannot be observed yet because an earlier change of the same run makes it (the
/// secrets file a later step needs, an address not yet on this host, a daemon not yet
/// answering). A plan shows it as pending; a real run fails with the error it wraps, after
/// waiting up to `wait` for it to clear where that may help (a daemon that is starting).
/// Made by [`not_yet`]; read by the engine only.
#[derive(Debug)]
pub struct NotYet {
    /// What the plan shows as pending ("write patroni.yml").
    pub what: String,
    pub wait: Option<std::time::Duration>,
    kind: Kind,
    error: anyhow::Error,
}

impl fmt::Display for NotYet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The wrapped error's own message; its causes follow through `source`.
        write!(f, "{}", self.error)
    }
}

impl std::error::Error for NotYet {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl NotYet {
    /// The wrapped error with its causes.
    pub fn why(&self) -> String {
        format!("{:#}", self.error)
    }
}

/// Marks `error` as not yet observable: see [`NotYet`].
pub fn not_yet(what: impl Into<String>, error: anyhow::Error) -> anyhow::Error {
    NotYet { what: what.into(), wait: None, kind: kind_of(&error), error }.into()
}

/// [`not_yet`], and a real run waits up to `wait` for it to clear.
pub fn not_yet_for(what: impl Into<String>, wait: std::time::Duration, error: anyhow::Error) -> anyhow::Error {
    NotYet { what: what.into(), wait: Some(wait), kind: kind_of(&error), error }.into()
}

/// The exit code for an error: the first [`Fail`] (or config error list) in its chain, else 1.
pub fn kind_of(err: &anyhow::Error) -> Kind {
    for cause in err.chain() {
        if let Some(fail) = cause.downcast_ref::<Fail>() {
            return fail.kind;
        }
        if let Some(n) = cause.downcast_ref::<NotYet>() {
            return n.kind;
        }
        if cause.downcast_ref::<crate::config::Diagnostics>().is_some() {
            return Kind::BadInput;
        }
    }
    Kind::Failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn kind_survives_context() {
        let err = Err::<(), _>(refused("disk /dev/sdb holds ext4")).context("disks phase").unwrap_err();
        assert_eq!(kind_of(&err), Kind::Refused);
        assert_eq!(kind_of(&anyhow::anyhow!("plain")), Kind::Failed);
    }
}
