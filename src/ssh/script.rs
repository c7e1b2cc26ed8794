//! The one audited way to put values into the shell scripts ecoboot sends to nodes: `quote`
//! for a value on a command line, `write_file` for a whole file (base64, so no content can end
//! a heredoc or reach the shell).

use base64::Engine;

/// `value` as one shell word: single-quoted, with embedded quotes closed and escaped.
pub fn quote(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
    {
        return value.to_string();
    }
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Shell lines that remove `path` however the script ends: normally, on an error, or when the
/// connection drops (sshd hangs the session up) or the command is interrupted. For files that
/// hold a secret for one command (a join token, a certificate key).
pub fn remove_on_exit(path: &str) -> String {
    let q = quote(path);
    format!("trap 'rm -f {q}' EXIT\ntrap 'exit 129' HUP INT TERM PIPE")
}

/// A script line that writes `bytes` to `path` with `mode` (octal, e.g. 0o600) atomically: the
/// content travels base64-encoded, is decoded into a temp file created under umask 077, then
/// renamed over `path`.
pub fn write_file(path: &str, bytes: &[u8], mode: u32) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let path = quote(path);
    format!(
        "(umask 077 && printf '%s' '{encoded}' | base64 -d > {path}.ecoboot-tmp && chmod {mode:o} {path}.ecoboot-tmp && mv -f {path}.ecoboot-tmp {path})"
    )
}

/// `script` with every file payload of [`write_file`] replaced by its size, for logs: payloads
/// may hold secrets (a join token) and are unreadable anyway.
pub fn elide_payloads(script: &str) -> String {
    const START: &str = "printf '%s' '";
    const END: &str = "' | base64 -d";
    let mut out = String::with_capacity(script.len().min(4096));
    let mut rest = script;
    while let Some(i) = rest.find(START) {
        let body = &rest[i + START.len()..];
        let Some(j) = body.find(END) else { break };
        out.push_str(&rest[..i + START.len()]);
        out.push_str(&format!("<{} base64 bytes>", j));
        rest = &body[j..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sh(script: &str) -> String {
        let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn quoted_values_stay_one_word() {
        for hostile in [
            "a b",
            "$(touch /tmp/ecoboot-canary)",
            "`id`",
            "x'; touch /tmp/ecoboot-canary; echo '",
            "line\nECOBOOT_EOF\nid",
            "-V",
            "",
        ] {
            let out = sh(&format!("printf '%s' {}", quote(hostile)));
            assert_eq!(out, hostile);
        }
        assert_eq!(quote("k8s-master"), "k8s-master");
    }

    #[test]
    fn payloads_are_elided_in_logs() {
        let script = format!(
            "mkdir -p /x\n{}\necho done",
            write_file("/x/y", b"token: abc", 0o600)
        );
        let shown = elide_payloads(&script);
        assert!(!shown.contains("dG9rZW4"), "{shown}");
        assert!(shown.contains("base64 bytes>") && shown.ends_with("echo done"));
    }

    #[test]
    fn written_files_round_trip_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("it's a file");
        let content = b"a: 1\nECOBOOT_EOF\n$(id)\n'\"\x00\xff";
        sh(&write_file(path.to_str().unwrap(), content, 0o600));
        assert_eq!(std::fs::read(&path).unwrap(), content);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
