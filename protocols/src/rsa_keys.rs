//! RSA keys as providers hand them out, SHA256withRSA (PKCS#1 v1.5) signatures, and AES-256-GCM.
//!
//! Keys arrive in several wrappings: WeChat Pay's merchant key is a PKCS#8 PEM file
//! (`apiclient_key.pem`), its platform keys are X.509 certificates or a bare public key PEM;
//! Alipay's keys are often pasted as one base64 line without PEM armour. All of them load here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::sha2::Sha256;
use rsa::signature::{Keypair, SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey as RsaPrivateKey, PublicKey as RsaPublicKey};
use std::fmt;

/// Smallest modulus accepted: both providers use 2048-bit keys, and less is breakable.
pub const MIN_KEY_BITS: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a key this understands ({0})")]
    Unreadable(String),
    #[error("the key is {0} bits; at least {MIN_KEY_BITS} are required")]
    TooShort(usize),
}

/// A private key for signing. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct PrivateKey(SigningKey<Sha256>);

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl PrivateKey {
    /// PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`) PEM, or the base64 of
    /// either's DER on its own (how Alipay's key tool exports it).
    pub fn from_text(text: &str) -> Result<PrivateKey, KeyError> {
        let text = text.trim();
        let key = if text.contains("-----BEGIN") {
            RsaPrivateKey::from_pkcs8_pem(text)
                .or_else(|_| RsaPrivateKey::from_pkcs1_pem(text))
                .map_err(|e| KeyError::Unreadable(e.to_string()))?
        } else {
            let der = bare_base64(text)?;
            RsaPrivateKey::from_pkcs8_der(&der)
                .or_else(|_| RsaPrivateKey::from_pkcs1_der(&der))
                .map_err(|e| KeyError::Unreadable(e.to_string()))?
        };
        check_size(key.size() * 8)?;
        Ok(PrivateKey(SigningKey::<Sha256>::new(key)))
    }

    /// SHA256withRSA over `message`, base64 (standard alphabet, padded): what both providers send.
    pub fn sign_base64(&self, message: &[u8]) -> String {
        BASE64.encode(self.0.sign(message).to_bytes())
    }

    /// The matching public key (the tests' stand-ins publish it).
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }
}

/// A public key for verifying.
#[derive(Clone)]
pub struct PublicKey(VerifyingKey<Sha256>);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(..)")
    }
}

impl PublicKey {
    /// SPKI (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`) PEM, or the base64 of an SPKI
    /// DER on its own (the Alipay public key as the open platform shows it).
    pub fn from_text(text: &str) -> Result<PublicKey, KeyError> {
        let text = text.trim();
        let key = if text.contains("-----BEGIN") {
            RsaPublicKey::from_public_key_pem(text)
                .or_else(|_| RsaPublicKey::from_pkcs1_pem(text))
                .map_err(|e| KeyError::Unreadable(e.to_string()))?
        } else {
            let der = bare_base64(text)?;
            RsaPublicKey::from_public_key_der(&der)
                .or_else(|_| RsaPublicKey::from_pkcs1_der(&der))
                .map_err(|e| KeyError::Unreadable(e.to_string()))?
        };
        PublicKey::checked(key)
    }

    fn checked(key: RsaPublicKey) -> Result<PublicKey, KeyError> {
        check_size(key.size() * 8)?;
        Ok(PublicKey(VerifyingKey::<Sha256>::new(key)))
    }

    /// Whether `signature_base64` is a SHA256withRSA signature of `message` by this key. Any
    /// malformed input (bad base64, wrong length) is simply not a valid signature.
    pub fn verifies(&self, message: &[u8], signature_base64: &str) -> bool {
        let Ok(bytes) = BASE64.decode(signature_base64.trim()) else {
            return false;
        };
        let Ok(signature) = Signature::try_from(bytes.as_slice()) else {
            return false;
        };
        self.0.verify(message, &signature).is_ok()
    }
}

/// An X.509 certificate's serial number (upper-case hex, as WeChat Pay's `Wechatpay-Serial` and
/// `serial_no` carry it) and its RSA public key. The chain is not checked: the certificate is
/// configured by the merchant (downloaded over the signed certificate API or from the merchant
/// platform), not taken from a request.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub serial: String,
    pub public_key: PublicKey,
}

impl Certificate {
    pub fn from_pem(pem: &str) -> Result<Certificate, KeyError> {
        use x509_cert::der::{DecodePem, Encode};
        let cert = x509_cert::Certificate::from_pem(pem.trim().as_bytes())
            .map_err(|e| KeyError::Unreadable(format!("certificate: {e}")))?;
        let tbs = cert.tbs_certificate();
        let serial = hex_upper(tbs.serial_number().as_bytes());
        let spki = tbs
            .subject_public_key_info()
            .to_der()
            .map_err(|e| KeyError::Unreadable(format!("certificate key: {e}")))?;
        let key = RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| KeyError::Unreadable(format!("certificate key: {e}")))?;
        Ok(Certificate {
            serial,
            public_key: PublicKey::checked(key)?,
        })
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    // DER serials carry a leading zero byte when the top bit is set; the serial printed by
    // `openssl x509 -serial` and sent by WeChat Pay has none.
    let bytes = match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn bare_base64(text: &str) -> Result<Vec<u8>, KeyError> {
    let compact: String = text.split_whitespace().collect();
    BASE64
        .decode(compact)
        .map_err(|e| KeyError::Unreadable(format!("base64: {e}")))
}

fn check_size(bits: usize) -> Result<(), KeyError> {
    if bits < MIN_KEY_BITS {
        return Err(KeyError::TooShort(bits));
    }
    Ok(())
}

/// AEAD_AES_256_GCM as WeChat Pay uses it: a 32-byte key, a 12-byte nonce given as text, the
/// associated data as text, and the ciphertext base64 with the 16-byte tag at its end.
pub mod aead {
    use super::BASE64;
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes256Gcm, Nonce};
    use base64::Engine as _;

    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum AeadError {
        #[error("the key must be 32 bytes")]
        KeyLength,
        #[error("the nonce must be 12 bytes")]
        NonceLength,
        #[error("the ciphertext is not base64")]
        Base64,
        #[error(
            "the ciphertext does not authenticate (wrong key, nonce, associated data, or tampered)"
        )]
        Authentication,
    }

    fn cipher(key: &[u8]) -> Result<Aes256Gcm, AeadError> {
        Aes256Gcm::new_from_slice(key).map_err(|_| AeadError::KeyLength)
    }

    fn nonce(nonce: &str) -> Result<&Nonce<aes_gcm::aes::cipher::consts::U12>, AeadError> {
        <&Nonce<_>>::try_from(nonce.as_bytes()).map_err(|_| AeadError::NonceLength)
    }

    pub fn decrypt(
        key: &[u8],
        nonce_text: &str,
        associated_data: &str,
        ciphertext_base64: &str,
    ) -> Result<Vec<u8>, AeadError> {
        let sealed = BASE64
            .decode(ciphertext_base64.trim())
            .map_err(|_| AeadError::Base64)?;
        cipher(key)?
            .decrypt(
                nonce(nonce_text)?,
                Payload {
                    msg: &sealed,
                    aad: associated_data.as_bytes(),
                },
            )
            .map_err(|_| AeadError::Authentication)
    }

    /// The sending side (the tests' WeChat Pay stand-in encrypts its notifies with it).
    pub fn encrypt(
        key: &[u8],
        nonce_text: &str,
        associated_data: &str,
        plaintext: &[u8],
    ) -> Result<String, AeadError> {
        let sealed = cipher(key)?
            .encrypt(
                nonce(nonce_text)?,
                Payload {
                    msg: plaintext,
                    aad: associated_data.as_bytes(),
                },
            )
            .map_err(|_| AeadError::Authentication)?;
        Ok(BASE64.encode(sealed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn fixture(path: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/providers")
            .join(path)
    }

    fn read(path: &str) -> String {
        std::fs::read_to_string(fixture(path)).unwrap()
    }

    fn openssl(args: &[&str]) -> std::process::Output {
        Command::new("openssl")
            .args(args)
            .output()
            .expect("the openssl command line tool")
    }

    /// Our signatures are what OpenSSL's SHA256withRSA makes and checks, in both directions:
    /// an independent implementation agrees with this one on the fixtures.
    #[test]
    fn signatures_agree_with_openssl() {
        let dir = std::env::temp_dir().join(format!("orderflow-rsa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let message = "POST\n/v3/pay/transactions/native\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n{\"appid\":\"wx\"}\n";
        let message_file = dir.join("message");
        std::fs::write(&message_file, message).unwrap();

        let key = PrivateKey::from_text(&read("wechatpay/merchant_private_key.pem")).unwrap();
        let ours = key.sign_base64(message.as_bytes());
        let signature_file = dir.join("ours.sig");
        std::fs::write(&signature_file, BASE64.decode(&ours).unwrap()).unwrap();
        let checked = openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            fixture("wechatpay/merchant_public_key.pem")
                .to_str()
                .unwrap(),
            "-signature",
            signature_file.to_str().unwrap(),
            message_file.to_str().unwrap(),
        ]);
        assert!(
            checked.status.success(),
            "openssl refused our signature: {checked:?}"
        );

        let theirs_file = dir.join("theirs.sig");
        let signed = openssl(&[
            "dgst",
            "-sha256",
            "-sign",
            fixture("wechatpay/merchant_private_key.pem")
                .to_str()
                .unwrap(),
            "-out",
            theirs_file.to_str().unwrap(),
            message_file.to_str().unwrap(),
        ]);
        assert!(signed.status.success(), "{signed:?}");
        let theirs = BASE64.encode(std::fs::read(&theirs_file).unwrap());
        let public = PublicKey::from_text(&read("wechatpay/merchant_public_key.pem")).unwrap();
        assert!(public.verifies(message.as_bytes(), &theirs));
        assert!(key.public_key().verifies(message.as_bytes(), &theirs));
        // PKCS#1 v1.5 is deterministic: the same key and message give the same signature.
        assert_eq!(ours, theirs);

        assert!(!public.verifies(b"another message", &theirs));
        let other = PublicKey::from_text(&read("wechatpay/platform_public_key.pem")).unwrap();
        assert!(!other.verifies(message.as_bytes(), &theirs));
        for garbage in ["", "not base64!", "AAAA", &theirs[..theirs.len() - 4]] {
            assert!(!public.verifies(message.as_bytes(), garbage), "{garbage:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn keys_load_in_every_wrapping_providers_use() {
        let pem = read("alipay/app_private_key.pem");
        let bare: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let from_pem = PrivateKey::from_text(&pem).unwrap();
        let from_bare = PrivateKey::from_text(&bare).unwrap();
        assert_eq!(from_pem.sign_base64(b"x"), from_bare.sign_base64(b"x"));

        let public_pem = read("alipay/app_public_key.pem");
        let public_bare: String = public_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("\n");
        let signature = from_pem.sign_base64(b"x");
        assert!(
            PublicKey::from_text(&public_bare)
                .unwrap()
                .verifies(b"x", &signature)
        );

        let rsa_pem = openssl(&[
            "pkey",
            "-in",
            fixture("alipay/app_private_key.pem").to_str().unwrap(),
            "-traditional",
        ]);
        let pkcs1 = String::from_utf8(rsa_pem.stdout).unwrap();
        if pkcs1.contains("BEGIN RSA PRIVATE KEY") {
            assert_eq!(
                PrivateKey::from_text(&pkcs1).unwrap().sign_base64(b"x"),
                signature
            );
        }

        for bad in [
            "",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            "!!",
        ] {
            assert!(PrivateKey::from_text(bad).is_err(), "{bad:?}");
            assert!(PublicKey::from_text(bad).is_err(), "{bad:?}");
        }
        assert!(format!("{from_pem:?}").contains("redacted"));
    }

    #[test]
    fn short_keys_are_refused() {
        let short = openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
        ]);
        assert!(short.status.success(), "{short:?}");
        let pem = String::from_utf8(short.stdout).unwrap();
        assert_eq!(
            PrivateKey::from_text(&pem).unwrap_err(),
            KeyError::TooShort(1024)
        );
    }

    #[test]
    fn certificate_serials_read_as_openssl_prints_them() {
        for cert in ["wechatpay/platform_cert.pem", "wechatpay/merchant_cert.pem"] {
            let out = openssl(&[
                "x509",
                "-noout",
                "-serial",
                "-in",
                fixture(cert).to_str().unwrap(),
            ]);
            let printed = String::from_utf8(out.stdout).unwrap();
            let serial = printed.trim().trim_start_matches("serial=");
            let parsed = Certificate::from_pem(&read(cert)).unwrap();
            assert_eq!(parsed.serial, serial);
        }
        let platform = Certificate::from_pem(&read("wechatpay/platform_cert.pem")).unwrap();
        let key = PrivateKey::from_text(&read("wechatpay/platform_private_key.pem")).unwrap();
        assert!(platform.public_key.verifies(b"m", &key.sign_base64(b"m")));
        assert!(Certificate::from_pem(&read("wechatpay/platform_public_key.pem")).is_err());
    }

    #[test]
    fn aead_round_trips_and_refuses_any_change() {
        let key = b"0123456789abcdefABCDEF0123456789";
        let sealed = aead::encrypt(key, "fdasflkja484", "transaction", b"{\"a\":1}").unwrap();
        assert_eq!(
            aead::decrypt(key, "fdasflkja484", "transaction", &sealed).unwrap(),
            b"{\"a\":1}"
        );
        let wrong_key = b"0123456789abcdefABCDEF012345678X";
        assert_eq!(
            aead::decrypt(wrong_key, "fdasflkja484", "transaction", &sealed),
            Err(aead::AeadError::Authentication)
        );
        assert_eq!(
            aead::decrypt(key, "fdasflkja485", "transaction", &sealed),
            Err(aead::AeadError::Authentication)
        );
        assert_eq!(
            aead::decrypt(key, "fdasflkja484", "refund", &sealed),
            Err(aead::AeadError::Authentication)
        );
        assert_eq!(
            aead::decrypt(key, "short", "transaction", &sealed),
            Err(aead::AeadError::NonceLength)
        );
        assert_eq!(
            aead::decrypt(&key[..31], "fdasflkja484", "transaction", &sealed),
            Err(aead::AeadError::KeyLength)
        );
        assert_eq!(
            aead::decrypt(key, "fdasflkja484", "transaction", "%%%"),
            Err(aead::AeadError::Base64)
        );
        assert_eq!(
            aead::decrypt(key, "fdasflkja484", "transaction", "AAAA"),
            Err(aead::AeadError::Authentication)
        );
    }
}
