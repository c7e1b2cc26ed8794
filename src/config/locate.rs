//! Finds where a key path (`spec.nodes.3.instanceTyp`) stands in block-style YAML text,
//! for diagnostics about keys the parser had no location for (unknown keys).

use miette::SourceSpan;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

struct Frame {
    indent: usize,
    seg: Seg,
    /// Items seen so far in a sequence directly below this frame.
    items: usize,
    is_item: bool,
}

/// The span of the key at `path` in `source`, if the document is block style enough to find it.
pub fn locate(source: &str, path: &[Seg]) -> Option<SourceSpan> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut block_scalar_above: Option<usize> = None;
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let line_start = offset;
        offset += line.len();
        let text = line.trim_end_matches(['\n', '\r']);
        let indent = text.len() - text.trim_start_matches(' ').len();
        let rest = &text[indent..];
        if rest.is_empty() || rest.starts_with('#') || rest.starts_with("---") {
            continue;
        }
        if let Some(above) = block_scalar_above {
            if indent > above {
                continue;
            }
            block_scalar_above = None;
        }
        let mut col = indent;
        let mut rest = rest;
        while let Some(after) =
            rest.strip_prefix("- ")
                .or(if rest == "-" { Some("") } else { None })
        {
            stack.retain(|f| f.indent < col || (f.indent == col && !f.is_item));
            let index = match stack.last_mut() {
                Some(parent) => {
                    parent.items += 1;
                    parent.items - 1
                }
                None => 0,
            };
            stack.push(Frame {
                indent: col,
                seg: Seg::Index(index),
                items: 0,
                is_item: true,
            });
            let skipped = rest.len() - after.trim_start().len();
            col += skipped;
            rest = after.trim_start();
        }
        let Some((key, value)) = split_key(rest) else {
            continue;
        };
        stack.retain(|f| f.indent < col);
        stack.push(Frame {
            indent: col,
            seg: Seg::Key(key.to_string()),
            items: 0,
            is_item: false,
        });
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            block_scalar_above = Some(col);
        }
        if stack.len() == path.len() && stack.iter().zip(path).all(|(f, s)| &f.seg == s) {
            let key_start = line_start + col + usize::from(rest.starts_with(['"', '\'']));
            return Some(SourceSpan::from((key_start, key.len())));
        }
    }
    None
}

/// Splits `key: value` (plain or quoted key); `None` for lines that are not mapping entries.
fn split_key(rest: &str) -> Option<(&str, &str)> {
    if let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let end = rest[1..].find(quote)? + 1;
        let after = rest[end + 1..].strip_prefix(':')?;
        return Some((&rest[1..end], after));
    }
    let mut search = 0;
    while let Some(pos) = rest[search..].find(':') {
        let pos = search + pos;
        let after = &rest[pos + 1..];
        if after.is_empty() || after.starts_with(' ') {
            let key = rest[..pos].trim_end();
            if key.is_empty() || key.starts_with(['{', '[']) {
                return None;
            }
            return Some((key, after));
        }
        search = pos + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Seg {
        Seg::Key(k.into())
    }

    fn line_of(src: &str, span: SourceSpan) -> usize {
        src[..span.offset()].matches('\n').count() + 1
    }

    const DOC: &str = "a:\n  b: 1\n  list:\n  - name: x\n    typo: 2\n  - name: y\n    script: |\n      typo: no\n    typo: 3\n  \"q\": 4\nz: [1, 2]\n";

    #[test]
    fn finds_nested_keys_in_sequences() {
        let span = locate(DOC, &[key("a"), key("list"), Seg::Index(1), key("typo")]).unwrap();
        assert_eq!(line_of(DOC, span), 9);
        let span = locate(DOC, &[key("a"), key("list"), Seg::Index(0), key("typo")]).unwrap();
        assert_eq!(line_of(DOC, span), 5);
        assert_eq!(&DOC[span.offset()..span.offset() + span.len()], "typo");
    }

    #[test]
    fn finds_quoted_and_top_level_keys() {
        let span = locate(DOC, &[key("a"), key("q")]).unwrap();
        assert_eq!(&DOC[span.offset()..span.offset() + span.len()], "q");
        assert_eq!(line_of(DOC, locate(DOC, &[key("z")]).unwrap()), 11);
    }

    #[test]
    fn missing_path_is_none() {
        assert!(locate(DOC, &[key("a"), key("nope")]).is_none());
    }
}
