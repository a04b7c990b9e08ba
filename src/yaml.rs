//! The YAML files hanode writes (patroni.yml, etcd.yml, vip-manager.yml), from typed values.
//!
//! Their readers are YAML 1.1 (PyYAML in Patroni, go-yaml in etcd and vip-manager): a plain
//! `yes`, `on`, `1:20` or `2001-12-14` is a boolean, a number or a date there, and serde_norway
//! writes such strings plain. So a string is written plain only when it cannot be read as
//! anything else ([`plain`]), else double-quoted, with everything but printable ASCII escaped
//! (`\N`, U+0085, is a line break to a YAML 1.1 reader): it reads back as exactly that string
//! in YAML 1.1 and 1.2.

use serde::Serialize;
use serde_norway::Value;

/// A YAML file: a comment line, then the document.
pub fn file(comment: &str, doc: &impl Serialize) -> String {
    let value = serde_norway::to_value(doc).expect("hanode's config types serialise");
    let mut out = format!("# {comment}\n");
    block(&value, 0, &mut out);
    out
}

/// A string as a double-quoted scalar.
pub fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xff => out += &format!("\\x{:02X}", c as u32),
            c if (c as u32) <= 0xffff => out += &format!("\\u{:04X}", c as u32),
            c => out += &format!("\\U{:08X}", c as u32),
        }
    }
    out + "\""
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if plain(s) => s.clone(),
        Value::String(s) => quoted(s),
        Value::Sequence(s) if s.is_empty() => "[]".into(),
        Value::Mapping(m) if m.is_empty() => "{}".into(),
        Value::Tagged(t) => scalar(&t.value),
        Value::Sequence(_) | Value::Mapping(_) => unreachable!("collections are written as blocks"),
    }
}

/// Whether a string reads back as itself written plain, in YAML 1.1 and 1.2 (block context):
/// a letter or `/` first (no number, date, time or `.inf`), only letters, digits and
/// `/ : . _ - ,` (no indicator, no space), not ending in `:`, and not one of YAML 1.1's
/// booleans or null. Such words (`https`, `http://10.0.0.11:2379`, `/pgdata/data`, `new`) stay
/// as an operator would write them; all else is quoted.
fn plain(s: &str) -> bool {
    const SPECIAL: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "/:._-,".contains(c))
        && !s.ends_with(':')
        && !SPECIAL.contains(&s.to_ascii_lowercase().as_str())
}

fn key(k: &Value) -> String {
    scalar(k)
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Mapping(m) if !m.is_empty()) || matches!(v, Value::Sequence(s) if !s.is_empty())
}

/// A collection as block lines at `indent`; a sequence item that is itself a mapping starts on
/// the `- ` line.
fn block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Mapping(m) => {
            // `None` is left out: an option hanode does not set is not written.
            for (k, v) in m.iter().filter(|(_, v)| !v.is_null()) {
                if is_block(v) {
                    *out += &format!("{pad}{}:\n", key(k));
                    block(v, indent + 2, out);
                } else {
                    *out += &format!("{pad}{}: {}\n", key(k), scalar(v));
                }
            }
        }
        Value::Sequence(s) => {
            for item in s {
                if is_block(item) {
                    let mut inner = String::new();
                    block(item, indent + 2, &mut inner);
                    *out += &format!("{pad}- {}", &inner[indent + 2..]);
                } else {
                    *out += &format!("{pad}- {}\n", scalar(item));
                }
            }
        }
        other => *out += &format!("{pad}{}\n", scalar(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_that_yaml_1_1_would_retype_stay_strings() {
        for s in
            ["yes", "on", "1:20", "2001-12-14", "~", "<<", "=", " lead", "a: b", "#c", "x\ny", "x\u{85}y", "\u{7f}"]
        {
            let text = file("c", &std::collections::BTreeMap::from([("k", s)]));
            let back: std::collections::BTreeMap<String, String> = serde_norway::from_str(&text).unwrap();
            assert_eq!(back["k"], s);
            assert!(text.contains("k: \""), "{text}");
        }
    }

    #[test]
    fn keys_that_yaml_1_1_would_retype_are_quoted() {
        let doc = std::collections::BTreeMap::from([("on", 1), ("Yes", 2), ("1", 3), ("plain_key", 4)]);
        let text = file("c", &doc);
        assert!(
            text.contains("\n\"on\": 1\n") && text.contains("\n\"Yes\": 2\n") && text.contains("\n\"1\": 3\n"),
            "{text}"
        );
        assert!(text.contains("\nplain_key: 4\n"), "{text}");
    }

    #[test]
    fn nested_blocks() {
        let doc = serde_json::json!({"a": {"b": [{"c": "d", "e": 1}, "f"], "g": [], "h": true}});
        let text = file("c", &doc);
        assert_eq!(text, "# c\na:\n  b:\n    - c: d\n      e: 1\n    - f\n  g: []\n  h: true\n");
        let back: serde_json::Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(back, doc);
    }
}
