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
