//! The one output sanitiser: every line that leaves the process for a terminal, a log line, a
//! GitHub Actions runner or a step summary goes through [`clean`] (and, in GitHub mode,
//! [`neutralise`]). Node output, API messages and journal values are foreign text: they must
//! not move the cursor, set the window title, write the clipboard (OSC 52), reorder text with
//! bidi overrides, or issue workflow commands. JSON output needs none of this: serde escapes
//! every control character.

/// Unicode format characters that reorder or hide text (bidi embeddings, overrides and
/// isolates, zero-width characters, the byte-order mark).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Removes escape sequences (CSI, OSC, DCS, …), every other control character except tab and
/// newline, and bidi/zero-width format characters. With `keep_colour`, SGR colour sequences
/// (`ESC [ digits ; … m`) survive: they can only colour text (the error renderer's own).
pub fn clean_with(text: &str, keep_colour: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.peek() {
                Some('[') => {
                    chars.next();
                    let mut seq = String::new();
                    for c in chars.by_ref() {
                        seq.push(c);
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                    let sgr = seq.ends_with('m')
                        && seq[..seq.len() - 1]
                            .chars()
                            .all(|c| c.is_ascii_digit() || c == ';');
                    if keep_colour && sgr {
                        out.push('\u{1b}');
                        out.push('[');
                        out.push_str(&seq);
                    }
                }
                // OSC, DCS, APC, PM, SOS: up to BEL or ESC \ (string terminator).
                Some(']' | 'P' | '_' | '^' | 'X') => {
                    chars.next();
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || c == '\u{9c}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                // Two-character escapes (ESC c resets the terminal, ESC 7/8 …).
                Some(_) => {
                    chars.next();
                }
                None => {}
            },
            '\t' | '\n' => out.push(c),
            c if c.is_control() || is_invisible(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// [`clean_with`] without colours: what plain lines, GitHub lines and summaries get.
pub fn clean(text: &str) -> String {
    clean_with(text, false)
}

/// Whether a line could be read by the Actions runner as a workflow command: the `::name::`
/// form or the older `##[name]` form.
pub fn looks_like_command(text: &str) -> bool {
    text.contains("::") || text.contains("##[")
}

/// Defuses the older `##[command]` form inside a foreign line (the `::` form is fenced with
/// `::stop-commands::` by the line reporter).
pub fn neutralise(line: &str) -> String {
    line.replace("##[", "# #[")
}

/// Writes text that may carry foreign content (node output, API messages, journal values),
/// cleaned line by line. In GitHub mode a block with anything command-like is fenced by
/// `::stop-commands::<random token>` and the `##[` form defused, so a node printing
/// `::add-mask::` or `##[error]` shows as plain text instead of acting.
pub fn write_foreign(out: &mut dyn std::io::Write, text: &str, github: bool) {
    let text = clean(text);
    let token = (github && looks_like_command(&text)).then(stop_token);
    if let Some(t) = &token {
        let _ = writeln!(out, "::stop-commands::{t}");
    }
    for line in text.lines() {
        match github {
            true => {
                let _ = writeln!(out, "{}", neutralise(line));
            }
            false => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    if let Some(t) = &token {
        let _ = writeln!(out, "::{t}::");
    }
}

/// A fresh unpredictable token for `::stop-commands::` (a node cannot guess it to resume
/// command processing early).
fn stop_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!(
        "ecoboot-{:016x}{:016x}",
        h.finish(),
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    )
}

/// Prints lines of a command's report (status tables, S3 lock holders) that may quote foreign
/// text to stdout, as [`write_foreign`] does.
pub fn print_line(text: &str) {
    let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    write_foreign(&mut std::io::stdout().lock(), text, github);
}

/// `println!` through the output sanitiser: for command reports that quote journal values,
/// S3 objects or API text.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::report::print_line(&format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_every_terminal_trick() {
        let hostile = "a\u{1b}]0;pwned title\u{7}b\u{1b}]52;c;ZXZpbA==\u{1b}\\c\u{1b}[2Jd\u{202E}txt.exe\u{200B}e\u{9b}31mf\u{1b}cg\r\n";
        assert_eq!(clean(hostile), "abcdtxt.exee31mfg\n");
    }

    #[test]
    fn colours_survive_only_when_asked() {
        let red = "\u{1b}[31mred\u{1b}[0m";
        assert_eq!(clean(red), "red");
        assert_eq!(clean_with(red, true), red);
        assert_eq!(clean_with("\u{1b}[2Jx", true), "x");
    }

    #[test]
    fn both_command_forms_are_recognised() {
        assert!(looks_like_command("::add-mask::x"));
        assert!(looks_like_command("text ##[command]rm -rf"));
        assert!(!looks_like_command("plain: text"));
        assert_eq!(neutralise("##[error]x"), "# #[error]x");
    }
}
