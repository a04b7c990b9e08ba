//! The config loaders never panic, whatever they are given.

use std::path::Path;

use hanode::config::Site;
use hanode::config::secrets::Secrets;
use proptest::prelude::*;

const SITE: &str = include_str!("../examples/debian-etcd.toml");

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(text in "\\PC{0,400}") {
        let _ = Site::parse(Path::new("f.toml"), &text);
        let _ = Secrets::parse(Path::new("s.toml"), &text);
    }

    #[test]
    fn toml_shaped_text(text in "(\\[[a-z_.]{1,12}\\]\n|[a-z_]{1,12} = (\"[ -~]{0,20}\"|-?[0-9]{1,22}|0x[0-9a-f]{1,20}|true|\\[\\]|\\{ ?\\}|[0-9.]{1,8})\n){0,12}") {
        let _ = Site::parse(Path::new("f.toml"), &text);
        let _ = Secrets::parse(Path::new("s.toml"), &text);
    }

    /// A valid file with a slice cut out or a character overwritten: nearly right, wrong somewhere.
    #[test]
    fn mutated_valid_file(at in 0usize..SITE.len(), len in 0usize..40, c in any::<char>()) {
        let mut s: Vec<char> = SITE.chars().collect();
        let at = at.min(s.len() - 1);
        let end = (at + len).min(s.len());
        s.drain(at..end);
        s.insert(at.min(s.len()), c);
        let text: String = s.into_iter().collect();
        if let Err(d) = Site::parse(Path::new("f.toml"), &text) {
            prop_assert!(!d.0.is_empty());
            for e in &d.0 {
                prop_assert!(e.line >= 1 && e.line <= text.lines().count() + 1);
            }
        }
    }
}

#[test]
fn every_example_is_valid() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with("secrets") {
            Secrets::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        } else if name.ends_with(".toml") {
            Site::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
