//! SSH host key fingerprints read out of band from an instance's console output: cloud-init
//! prints them between `-----BEGIN SSH HOST KEY FINGERPRINTS-----` and `-----END ...-----`
//! at first boot, through EC2's own channel, so the first SSH contact can be verified instead
//! of trusted.

use base64::Engine;

use super::{Aws, aws_error};
use crate::error::Result;

/// The SHA256 host key fingerprints (`SHA256:...`) in `instance_id`'s console output; empty
/// while the console has not printed them yet (it can take minutes after boot).
pub async fn host_key_fingerprints(aws: &Aws, instance_id: &str) -> Result<Vec<String>> {
    let out = aws
        .ec2
        .get_console_output()
        .instance_id(instance_id)
        .send()
        .await
        .map_err(|e| aws_error("GetConsoleOutput", instance_id, e))?;
    let text = out
        .output()
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    Ok(parse_fingerprints(&text))
}

/// The fingerprints in the last complete fingerprint block of `console` (lines may carry an
/// `ec2: ` prefix, as some images print them).
pub fn parse_fingerprints(console: &str) -> Vec<String> {
    let mut block: Option<Vec<String>> = None;
    let mut last = Vec::new();
    for line in console.lines() {
        let line = line.trim().trim_start_matches("ec2:").trim();
        if line.contains("BEGIN SSH HOST KEY FINGERPRINTS") {
            block = Some(Vec::new());
        } else if line.contains("END SSH HOST KEY FINGERPRINTS") {
            if let Some(done) = block.take() {
                last = done;
            }
        } else if let Some(b) = block.as_mut()
            && let Some(fp) = line.split_whitespace().find(|w| w.starts_with("SHA256:"))
        {
            b.push(fp.to_string());
        }
    }
    last
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_cloud_init_block() {
        let console = "[   12.3] cloud-init[1]: Generating public/private ed25519 key pair.\n\
            ec2: #############################################################\n\
            ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n\
            ec2: 256 SHA256:AbCdEf0123456789abcdefABCDEF0123456789abcde root@ip-10-0-1-10 (ECDSA)\n\
            ec2: 256 SHA256:ZyXw9876543210zyxwZYXW9876543210zyxwZYXW987 root@ip-10-0-1-10 (ED25519)\n\
            ec2: -----END SSH HOST KEY FINGERPRINTS-----\n\
            ec2: #############################################################\n";
        assert_eq!(
            super::parse_fingerprints(console),
            vec![
                "SHA256:AbCdEf0123456789abcdefABCDEF0123456789abcde",
                "SHA256:ZyXw9876543210zyxwZYXW9876543210zyxwZYXW987"
            ]
        );
        assert!(super::parse_fingerprints("Linux version 6.8\nlogin:").is_empty());
        assert!(
            super::parse_fingerprints(
                "-----BEGIN SSH HOST KEY FINGERPRINTS-----\n256 SHA256:x a (ED25519)\n"
            )
            .is_empty(),
            "an unfinished block does not count"
        );
    }
}
