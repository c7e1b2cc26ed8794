//! The blanket rule over every string of the config, whatever key it stands under: no control
//! characters (newlines, NUL, ESC, DEL, C1), no invisible bidirectional or zero-width
//! characters, and a bounded length. It runs over a generic tree of the document, so a field
//! added later is covered without anyone remembering to check it.

use std::fmt;

use miette::SourceSpan;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::Problem;
use super::syntax::clip;

/// The longest string any config field may hold.
pub const MAX_STRING: usize = 4096;

/// A YAML node with its span.
struct Tree {
    span: Option<SourceSpan>,
    kind: Kind,
}

enum Kind {
    Str(String),
    Other,
    Seq(Vec<Tree>),
    Map(Vec<(String, Tree)>),
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<Kind>::deserialize(d)?;
        let s = spanned.referenced.span();
        let span = s
            .byte_offset()
            .map(|o| SourceSpan::from((o as usize, s.byte_len().unwrap_or(0) as usize)));
        Ok(Tree {
            span,
            kind: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Kind, E> {
        Ok(Kind::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Kind, E> {
        Ok(Kind::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Kind, E> {
        Ok(Kind::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Other)
    }
    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Tree>()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<KeyText>()? {
            entries.push((key.0, map.next_value::<Tree>()?));
        }
        Ok(Kind::Map(entries))
    }
}

/// A mapping key as text (numbers and booleans as keys are kept as their spelling).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Kind::deserialize(d)? {
            Kind::Str(s) => Ok(KeyText(s)),
            _ => Ok(KeyText(String::new())),
        }
    }
}

/// Why `s` may not stand in a config, if it may not.
pub fn refuse(s: &str) -> Option<String> {
    if s.chars().count() > MAX_STRING {
        return Some(format!(
            "a value of {} characters is longer than the {MAX_STRING} any field allows",
            s.chars().count()
        ));
    }
    let bad = s.chars().find(|c| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    })?;
    Some(format!(
        "`{}` contains the control or invisible character U+{:04X}",
        clip(s),
        bad as u32
    ))
}

/// Checks every key and string scalar of `source` (already known to parse) and returns one
/// problem per offending value, at its span.
pub fn check(source: &str) -> Vec<Problem> {
    let Ok(tree) = serde_saphyr::from_str::<Tree>(source) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    walk(&tree, "", &mut problems);
    problems
}

fn walk(tree: &Tree, path: &str, out: &mut Vec<Problem>) {
    match &tree.kind {
        Kind::Str(s) => {
            if let Some(why) = refuse(s) {
                out.push(
                    Problem::new(tree.span, format!("`{}`: {why}", key_path(path)))
                        .help("config values are single-line text without control characters; nothing was sent anywhere"),
                );
            }
        }
        Kind::Other => {}
        Kind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}.{i}"), out);
            }
        }
        Kind::Map(entries) => {
            for (key, value) in entries {
                if let Some(why) = refuse(key) {
                    out.push(
                        Problem::new(
                            value.span,
                            format!("a key under `{}`: {why}", key_path(path)),
                        )
                        .help("keys are single-line text without control characters"),
                    );
                    continue;
                }
                walk(value, &format!("{path}.{key}"), out);
            }
        }
    }
}

fn key_path(path: &str) -> String {
    clip(path.trim_start_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_control_characters_anywhere_with_spans() {
        let src = "a:\n  b: \"x\\ny\"\n  c: [ok, \"\\u001b[31m\"]\n  \"k\\tk\": 1\n  d: plain\n";
        let problems = check(src);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().all(|p| p.span.is_some()));
        assert!(problems[0].message.contains("a.b"));
        assert!(check("a: [1, true, null, ok]\n").is_empty());
        assert!(refuse("bidi \u{202E}x").is_some());
        assert!(refuse(&"x".repeat(MAX_STRING + 1)).is_some());
        assert!(refuse("Ωmega naïve").is_none());
    }
}
