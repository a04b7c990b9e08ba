//! Reading a TOML document key by key, collecting every error with its file, line and key.
//!
//! serde stops at the first error; operators fixing a site file want all of them at once,
//! each with the line to look at. A [`Table`] hands out typed values, remembers which keys
//! were read, and reports the rest as unknown when it is finished.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the key, e.g. `cluster.members[1].address`; empty for syntax errors.
    pub key: String,
    pub message: String,
}

/// Every problem found in one or more configuration files; the error type of loading.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} error{} in the configuration:", if n == 1 { "" } else { "s" })?;
        for d in &self.0 {
            write!(f, "  {}:{}:{}: ", d.file.display(), d.line, d.column)?;
            if !d.key.is_empty() {
                write!(f, "{}: ", d.key)?;
            }
            writeln!(f, "{}", d.message)?;
        }
        write!(f, "fix these and run again (nothing was changed)")
    }
}

impl std::error::Error for Diagnostics {}

/// A parsed document and the errors found in it so far.
pub struct Doc<'s> {
    path: PathBuf,
    text: &'s str,
    diags: RefCell<Vec<Diagnostic>>,
}

impl<'s> Doc<'s> {
    pub fn new(path: &Path, text: &'s str) -> Self {
        Doc { path: path.to_path_buf(), text, diags: RefCell::new(Vec::new()) }
    }

    /// Parses the text; syntax errors are recorded and `None` is returned.
    pub fn parse(&self) -> Option<Spanned<DeTable<'s>>> {
        let (table, errors) = DeTable::parse_recoverable(self.text);
        for e in &errors {
            let span = e.span().unwrap_or(0..0);
            // toml's message repeats the source excerpt; its first line is the reason.
            let msg = e.message().lines().next().unwrap_or("invalid TOML").to_string();
            self.error_at(span, "", format!("TOML syntax error: {msg}"));
        }
        errors.is_empty().then_some(table)
    }

    pub fn error_at(&self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.diags.borrow_mut().push(Diagnostic {
            file: self.path.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.diags.into_inner()
    }

    pub fn root<'d>(&'d self, table: &'d Spanned<DeTable<'s>>) -> Table<'d, 's> {
        Table { doc: self, path: String::new(), span: table.span(), table: table.get_ref(), used: RefCell::default() }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    (line, offset - start + 1)
}

/// A value with the place it came from, for checks that look at several keys at once.
#[derive(Debug, Clone)]
pub struct At<T> {
    pub value: T,
    pub key: String,
    pub span: Range<usize>,
}

/// A table of the document being read.
pub struct Table<'d, 's> {
    doc: &'d Doc<'s>,
    path: String,
    span: Range<usize>,
    table: &'d DeTable<'s>,
    used: RefCell<Vec<String>>,
}

impl<'d, 's> Table<'d, 's> {
    pub fn doc(&self) -> &'d Doc<'s> {
        self.doc
    }

    /// Dotted path of a key of this table.
    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    fn name(&self) -> String {
        if self.path.is_empty() { "the top level".into() } else { format!("[{}]", self.path) }
    }

    /// Reports an error about `key` (at its value when present, else at this table).
    pub fn error(&self, key: &str, message: impl Into<String>) {
        let span = self.table.get(key).map_or(self.span.clone(), |v| v.span());
        self.doc.error_at(span, &self.key_path(key), message);
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    fn get(&self, key: &str) -> Option<&'d Spanned<DeValue<'s>>> {
        self.used.borrow_mut().push(key.to_string());
        self.table.get(key)
    }

    fn missing(&self, key: &str, what: &str) {
        let msg = format!("missing: {} needs `{key}` ({what})", self.name());
        self.doc.error_at(self.span.clone(), &self.key_path(key), msg);
    }

    fn wrong_type(&self, key: &str, value: &Spanned<DeValue<'s>>, want: &str) {
        let got = value.get_ref().type_str();
        self.doc.error_at(value.span(), &self.key_path(key), format!("expected {want}, found {got}"));
    }

    pub fn opt_str(&self, key: &str) -> Option<At<String>> {
        let v = self.get(key)?;
        match v.get_ref().as_str() {
            Some(s) => Some(At { value: s.to_string(), key: self.key_path(key), span: v.span() }),
            None => {
                self.wrong_type(key, v, "a string");
                None
            }
        }
    }

    pub fn req_str(&self, key: &str, what: &str) -> Option<At<String>> {
        if !self.table.contains_key(key) {
            self.get(key);
            self.missing(key, what);
            return None;
        }
        self.opt_str(key)
    }

    /// A string turned into a value by `parse`, whose error message is reported at the key.
    pub fn opt_parsed<T>(&self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<At<T>> {
        let s = self.opt_str(key)?;
        match parse(&s.value) {
            Ok(value) => Some(At { value, key: s.key, span: s.span }),
            Err(msg) => {
                self.doc.error_at(s.span, &s.key, msg);
                None
            }
        }
    }

    pub fn req_parsed<T>(&self, key: &str, what: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<At<T>> {
        if !self.table.contains_key(key) {
            self.get(key);
            self.missing(key, what);
            return None;
        }
        self.opt_parsed(key, parse)
    }

    /// An integer within `range` (inclusive).
    pub fn opt_int(&self, key: &str, range: std::ops::RangeInclusive<i64>) -> Option<At<i64>> {
        let v = self.get(key)?;
        let Some(int) = v.get_ref().as_integer() else {
            self.wrong_type(key, v, "an integer");
            return None;
        };
        let digits = int.as_str().replace('_', "");
        let digits = digits.trim_start_matches('+');
        let digits = match int.radix() {
            10 => digits,
            _ => digits.get(2..).unwrap_or(""),
        };
        match i64::from_str_radix(digits, int.radix()) {
            Ok(n) if range.contains(&n) => Some(At { value: n, key: self.key_path(key), span: v.span() }),
            _ => {
                let msg = format!("{} is out of range: expected {} to {}", int.as_str(), range.start(), range.end());
                self.doc.error_at(v.span(), &self.key_path(key), msg);
                None
            }
        }
    }

    pub fn opt_bool(&self, key: &str) -> Option<bool> {
        let v = self.get(key)?;
        let b = v.get_ref().as_bool();
        if b.is_none() {
            self.wrong_type(key, v, "true or false");
        }
        b
    }

    /// A list of strings; a non-string element is reported and left out.
    pub fn opt_str_list(&self, key: &str) -> Option<Vec<At<String>>> {
        let v = self.get(key)?;
        let Some(items) = v.get_ref().as_array() else {
            self.wrong_type(key, v, "a list of strings");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let key = format!("{}[{i}]", self.key_path(key));
            match item.get_ref().as_str() {
                Some(s) => out.push(At { value: s.to_string(), key, span: item.span() }),
                None => self.doc.error_at(
                    item.span(),
                    &key,
                    format!("expected a string, found {}", item.get_ref().type_str()),
                ),
            }
        }
        Some(out)
    }

    /// A table of settings (`{ name = value, ... }`), each value a string, a decimal integer
    /// or float, or a boolean (read as `on` / `off`), as text.
    pub fn opt_settings(&self, key: &str) -> Option<Vec<At<(String, String)>>> {
        let v = self.get(key)?;
        let DeValue::Table(t) = v.get_ref() else {
            self.wrong_type(key, v, "a table of settings (name = value)");
            return None;
        };
        let mut out = Vec::new();
        for (name, value) in t.iter() {
            let key = format!("{}.{}", self.key_path(key), name.get_ref());
            let text = match value.get_ref() {
                DeValue::String(s) => Some(s.to_string()),
                DeValue::Integer(i) if i.radix() == 10 => Some(i.as_str().replace('_', "")),
                DeValue::Float(f) => Some(f.as_str().replace('_', "")),
                DeValue::Boolean(b) => Some(if *b { "on" } else { "off" }.to_string()),
                _ => None,
            };
            match text {
                Some(text) => out.push(At { value: (name.get_ref().to_string(), text), key, span: value.span() }),
                None => self.doc.error_at(
                    value.span(),
                    &key,
                    format!("expected a string, a decimal number or true/false, found {}", value.get_ref().type_str()),
                ),
            }
        }
        Some(out)
    }

    pub fn opt_table(&self, key: &str) -> Option<Table<'d, 's>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(self.child(self.key_path(key), v.span(), t)),
            _ => {
                self.wrong_type(key, v, "a table");
                None
            }
        }
    }

    pub fn req_table(&self, key: &str, what: &str) -> Option<Table<'d, 's>> {
        if !self.table.contains_key(key) {
            self.get(key);
            self.missing(key, what);
            return None;
        }
        self.opt_table(key)
    }

    /// The keys of this table, in the file's order.
    pub fn keys(&self) -> Vec<String> {
        self.table.keys().map(|k| k.get_ref().to_string()).collect()
    }

    /// Keys of this table not yet read, each as a sub-table (e.g. `[artifacts.etcd]`).
    pub fn sub_tables(&self) -> Vec<(String, Table<'d, 's>)> {
        let keys: Vec<String> = self.table.keys().map(|k| k.get_ref().to_string()).collect();
        keys.into_iter().filter_map(|k| self.opt_table(&k).map(|t| (k, t))).collect()
    }

    /// An array of tables such as `members = [ { ... }, { ... } ]` or `[[members]]`.
    pub fn req_table_list(&self, key: &str, what: &str) -> Vec<Table<'d, 's>> {
        if !self.table.contains_key(key) {
            self.get(key);
            self.missing(key, what);
            return Vec::new();
        }
        self.opt_table_list(key).unwrap_or_default()
    }

    pub fn opt_table_list(&self, key: &str) -> Option<Vec<Table<'d, 's>>> {
        let v = self.get(key)?;
        let Some(items) = v.get_ref().as_array() else {
            self.wrong_type(key, v, "a list of tables");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", self.key_path(key));
            match item.get_ref() {
                DeValue::Table(t) => out.push(self.child(path, item.span(), t)),
                other => self.doc.error_at(item.span(), &path, format!("expected a table, found {}", other.type_str())),
            }
        }
        Some(out)
    }

    fn child(&self, path: String, span: Range<usize>, table: &'d DeTable<'s>) -> Table<'d, 's> {
        Table { doc: self.doc, path, span, table, used: RefCell::default() }
    }

    /// Reports every key that was never read as unknown, naming the keys this table knows.
    pub fn finish(&self, known: &[&str]) {
        let used = self.used.borrow();
        for (k, v) in self.table.iter() {
            let k = k.get_ref();
            if !used.iter().any(|u| u == k) {
                let hint = match known.iter().find(|c| similar_name(c, k)) {
                    Some(c) => format!("; did you mean `{c}`?"),
                    None if known.is_empty() => String::new(),
                    None => format!("; known keys here: {}", known.join(", ")),
                };
                let msg = format!("unknown key `{k}` in {}{hint}", self.name());
                self.doc.error_at(v.span(), &self.key_path(k), msg);
            }
        }
    }
}

/// Same letters up to case, `-`/`_`, or one edit: worth suggesting.
fn similar_name(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let (a, b) = (norm(a), norm(b));
    if a == b {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Two neighbours swapped ("nmae").
    let differ: Vec<usize> = (0..a.len().min(b.len())).filter(|&i| a[i] != b[i]).collect();
    if a.len() == b.len()
        && differ.len() == 2
        && differ[1] == differ[0] + 1
        && a[differ[0]] == b[differ[1]]
        && a[differ[1]] == b[differ[0]]
    {
        return true;
    }
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    // Levenshtein distance <= 1.
    let (mut i, mut j, mut edits) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            i += 1;
            j += 1;
            continue;
        }
        edits += 1;
        match a.len().cmp(&b.len()) {
            std::cmp::Ordering::Greater => i += 1,
            std::cmp::Ordering::Less => j += 1,
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    edits + (a.len() - i) + (b.len() - j) <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        assert_eq!(line_col("a\nbc\n", 0), (1, 1));
        assert_eq!(line_col("a\nbc\n", 3), (2, 2));
    }

    #[test]
    fn suggestions() {
        assert!(similar_name("loop_wait", "loop-wait"));
        assert!(similar_name("address", "adress"));
        assert!(similar_name("name", "nmae"));
        assert!(!similar_name("ttl", "interface"));
    }
}
