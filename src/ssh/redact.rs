//! Keeps secrets out of every byte ecoboot writes: registered values (join tokens, certificate
//! keys, passwords) and anything shaped like a kubeadm bootstrap token are replaced.

use std::sync::{OnceLock, RwLock};

/// What a secret is replaced with.
pub const MASK: &str = "[REDACTED]";

fn secrets() -> &'static RwLock<Vec<String>> {
    static SECRETS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Vec::new()))
}

/// Registers a secret value for the rest of the process.
pub fn register(secret: &str) {
    if secret.len() >= 6 {
        secrets()
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(secret.to_string());
    }
}

/// `text` with every registered secret and every bootstrap-token-shaped word masked.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for s in secrets().read().unwrap_or_else(|p| p.into_inner()).iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    mask_tokens(&out)
}

/// Masks `[a-z0-9]{6}.[a-z0-9]{16}` (kubeadm bootstrap tokens).
fn mask_tokens(text: &str) -> String {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let starts_word = i == 0 || !word(b[i - 1]);
        if starts_word
            && i + 23 <= b.len()
            && b[i..i + 6].iter().all(|c| word(*c))
            && b[i + 6] == b'.'
            && b[i + 7..i + 23].iter().all(|c| word(*c))
            && (i + 23 == b.len() || !word(b[i + 23]))
        {
            out.push_str(MASK);
            i += 23;
        } else {
            let ch = text[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_registered_secrets_and_token_shapes() {
        register("s3cret-cert-key-0123");
        let text = "join --token abcdef.0123456789abcdef --certificate-key s3cret-cert-key-0123 ok";
        assert_eq!(
            redact(text),
            "join --token [REDACTED] --certificate-key [REDACTED] ok"
        );
        assert_eq!(redact("version 1.34.1-1.1 é"), "version 1.34.1-1.1 é");
    }
}
