//! The `Stripe-Signature` scheme, used by Stripe and by our sandbox gateway:
//! `t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{raw body}">[,v1=...]` — several `v1` values
//! appear while a secret is being rotated, and any one matching is enough. Unknown keys (`v0`,
//! future schemes) are ignored. Comparison is constant-time (`Mac::verify_slice`).

use super::WebhookRejection;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Stripe's SDKs reject events older than this by default.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Longest header we look at; a real one is ~150 bytes.
const MAX_HEADER_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSignature {
    pub timestamp: i64,
    /// The decoded `v1` signatures.
    pub signatures: Vec<Vec<u8>>,
}

/// Parses the header. Never panics; anything unexpected is a [`WebhookRejection`].
pub fn parse(header: &str) -> Result<ParsedSignature, WebhookRejection> {
    let bad = |why: &str| WebhookRejection::BadSignatureHeader(why.to_owned());
    if header.len() > MAX_HEADER_LEN {
        return Err(bad("header too long"));
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            return Err(bad("expected key=value pairs"));
        };
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(bad("more than one t="));
                }
                let t: i64 = value.parse().map_err(|_| bad("t is not a whole number"))?;
                timestamp = Some(t);
            }
            "v1" => {
                let sig = hex::decode(value).map_err(|_| bad("v1 is not hex"))?;
                if sig.len() != 32 {
                    return Err(bad("v1 is not a SHA-256 HMAC"));
                }
                signatures.push(sig);
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| bad("no t="))?;
    if signatures.is_empty() {
        return Err(bad("no v1="));
    }
    Ok(ParsedSignature {
        timestamp,
        signatures,
    })
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value a sender puts on `body` at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Verifies `header` against `body`: fresh within `tolerance_secs` of `now_unix` (either way),
/// and at least one `v1` signature made with one of `secrets` (old and new during a rotation).
pub fn verify(
    header: &str,
    body: &[u8],
    secrets: &[&[u8]],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<i64, WebhookRejection> {
    let parsed = parse(header)?;
    let age = now_unix.saturating_sub(parsed.timestamp);
    if age.saturating_abs() > tolerance_secs {
        return Err(WebhookRejection::StaleTimestamp {
            timestamp: parsed.timestamp,
            age_secs: age,
            tolerance_secs,
        });
    }
    let matched = secrets.iter().any(|secret| {
        parsed.signatures.iter().any(|sig| {
            mac(secret, parsed.timestamp, body)
                .verify_slice(sig)
                .is_ok()
        })
    });
    if matched {
        Ok(parsed.timestamp)
    } else {
        Err(WebhookRejection::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";

    #[test]
    fn a_signed_body_verifies() {
        let header = sign(SECRET, 1_700_000_000, b"{\"a\":1}");
        assert_eq!(
            verify(&header, b"{\"a\":1}", &[SECRET], 1_700_000_010, 300),
            Ok(1_700_000_000)
        );
    }

    #[test]
    fn tampering_is_caught() {
        let header = sign(SECRET, 1_700_000_000, b"{\"a\":1}");
        assert_eq!(
            verify(&header, b"{\"a\":2}", &[SECRET], 1_700_000_000, 300),
            Err(WebhookRejection::SignatureMismatch)
        );
        assert_eq!(
            verify(
                &header,
                b"{\"a\":1}",
                &[b"other".as_slice()],
                1_700_000_000,
                300
            ),
            Err(WebhookRejection::SignatureMismatch)
        );
        assert!(matches!(
            verify(&header, b"{\"a\":1}", &[SECRET], 1_700_000_301, 300),
            Err(WebhookRejection::StaleTimestamp { age_secs: 301, .. })
        ));
        assert!(matches!(
            verify(&header, b"{\"a\":1}", &[SECRET], 1_699_999_000, 300),
            Err(WebhookRejection::StaleTimestamp { .. })
        ));
    }

    #[test]
    fn any_v1_of_a_rotation_matches() {
        let good = sign(b"new", 100, b"x");
        let good_sig = good.split("v1=").nth(1).unwrap();
        let header = format!("t=100,v1={},v1={good_sig},v0=abc", "00".repeat(32));
        assert_eq!(
            verify(&header, b"x", &[b"new".as_slice()], 100, 300),
            Ok(100)
        );
        assert_eq!(
            verify(
                &sign(b"old", 100, b"x"),
                b"x",
                &[b"new".as_slice(), b"old".as_slice()],
                100,
                300
            ),
            Ok(100)
        );
    }

    #[test]
    fn malformed_headers_are_rejected() {
        for header in [
            "",
            "t=1",
            "v1=00",
            "t=abc,v1=00",
            "t=1,v1=zz",
            "t=1,v1=00",
            "t=1,t=2,v1=".to_owned().as_str(),
            "garbage",
            "t=99999999999999999999999,v1=00",
        ] {
            assert!(parse(header).is_err(), "{header:?} parsed");
        }
        assert!(parse(&"t=1,".repeat(2000)).is_err());
    }
}
