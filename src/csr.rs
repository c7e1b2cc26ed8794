//! The subject alternative names a PKCS#10 certificate signing request asks for, read with a
//! small DER walker (no certificate library is linked in). CSRs come from nodes: hostile input,
//! so every length is checked and anything unexpected is an error, never a panic.

use std::net::IpAddr;

/// What a CSR asks to be named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// `dNSName` entries.
    pub dns: Vec<String>,
    /// `iPAddress` entries.
    pub ips: Vec<IpAddr>,
}

/// One DER element: tag, content, and what follows it.
fn element(der: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let (&tag, rest) = der.split_first().ok_or("truncated: no tag")?;
    let (&first, rest) = rest.split_first().ok_or("truncated: no length")?;
    let (len, rest) = match first {
        n if n < 0x80 => (n as usize, rest),
        0x81..=0x84 => {
            let k = (first & 0x7f) as usize;
            if rest.len() < k {
                return Err("truncated length".into());
            }
            let len = rest[..k].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
            (len, &rest[k..])
        }
        _ => return Err("unsupported length form".into()),
    };
    if rest.len() < len {
        return Err("element longer than its input".into());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// The elements inside a constructed element's content.
fn children(mut content: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tag, inner, rest) = element(content)?;
        out.push((tag, inner));
        content = rest;
        if out.len() > 1024 {
            return Err("too many elements".into());
        }
    }
    Ok(out)
}

/// The DER content of OID 1.2.840.113549.1.9.14 (PKCS#9 extensionRequest).
const EXTENSION_REQUEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e];
/// The DER content of OID 2.5.29.17 (subjectAltName).
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// The PEM block's DER bytes.
pub fn pem_der(pem: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let body: String = (pem.lines())
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| format!("not PEM: {e}"))
}

fn general_names(value: &[u8], out: &mut Names) -> Result<(), String> {
    let (_, names, _) = element(value)?;
    for (tag, name) in children(names)? {
        match tag {
            0x82 => out
                .dns
                .push(String::from_utf8(name.to_vec()).map_err(|_| "dNSName is not text")?),
            0x87 => out.ips.push(match name.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(name).expect("4 bytes")),
                16 => IpAddr::from(<[u8; 16]>::try_from(name).expect("16 bytes")),
                _ => return Err("iPAddress of odd length".into()),
            }),
            _ => {
                return Err(format!(
                    "a subject alternative name of type {tag:#x}, which a kubelet does not ask for"
                ));
            }
        }
    }
    Ok(())
}

/// The subject alternative names requested by the CSR `der`.
pub fn names(der: &[u8]) -> Result<Names, String> {
    let (tag, csr, _) = element(der)?;
    if tag != 0x30 {
        return Err("not a SEQUENCE".into());
    }
    let (tag, info, _) = element(csr)?;
    if tag != 0x30 {
        return Err("no certificationRequestInfo".into());
    }
    let mut out = Names::default();
    // version, subject, subjectPKInfo, then [0] attributes.
    for (tag, attrs) in children(info)? {
        if tag != 0xa0 {
            continue;
        }
        for (_, attr) in children(attrs)? {
            let parts = children(attr)?;
            let [(0x06, oid), (0x31, values)] = parts.as_slice() else {
                continue;
            };
            if *oid != EXTENSION_REQUEST {
                continue;
            }
            for (_, extensions) in children(values)? {
                for (_, ext) in children(extensions)? {
                    let parts = children(ext)?;
                    if let (Some((0x06, id)), Some((0x04, value))) = (parts.first(), parts.last())
                        && *id == SUBJECT_ALT_NAME
                    {
                        general_names(value, &mut out)?;
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CSR made by openssl with SANs DNS:k8s-worker-ai, IP:192.0.2.10, IP:198.51.100.10.
    fn csr() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-keyout"])
            .arg(&key)
            .args([
                "-subj",
                "/O=system:nodes/CN=system:node:k8s-worker-ai",
                "-addext",
            ])
            .arg("subjectAltName=DNS:k8s-worker-ai,IP:192.0.2.10,IP:198.51.100.10")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        pem_der(&String::from_utf8(out.stdout).unwrap()).unwrap()
    }

    #[test]
    fn reads_the_names_openssl_put_in() {
        let n = names(&csr()).unwrap();
        assert_eq!(n.dns, vec!["k8s-worker-ai".to_string()]);
        let ips: Vec<IpAddr> = vec![
            "192.0.2.10".parse().unwrap(),
            "198.51.100.10".parse().unwrap(),
        ];
        assert_eq!(n.ips, ips);
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error_not_a_panic() {
        let der = csr();
        for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            assert!(names(&der[..cut]).is_err(), "cut {cut}");
        }
        assert!(names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(names(b"hello").is_err());
    }
}
