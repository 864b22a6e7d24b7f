//! Who is asking: the caller's identity, a JWT the ticketing site's login issued
//! (`Authorization: Bearer <JWT>`), which seatrush verifies (it never manages passwords); and
//! the Queue-Tokens seatrush itself signs ([`TokenKey`]).
//!
//! HS256 with the shared secrets of `SEATRUSH_AUTH_SECRET` (comma-separated: the first signs,
//! all verify, for rotation), or instead an RS256/ES256 public key (`SEATRUSH_AUTH_PUBLIC_KEY`),
//! and then only that algorithm. The claims that count are `sub` (the user id, a positive
//! decimal without leading zeros) and `exp` (required, 60 s leeway); others are ignored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::Config;
use crate::model::{Error, QueueToken};

/// Proof that a request comes from this user: made only by [`Identity::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    user_id: u64,
}

impl Caller {
    pub fn user_id(self) -> u64 {
        self.user_id
    }

    /// The caller may act only for themselves: another user's id is `403 FORBIDDEN`.
    pub fn owns(self, user_id: u64) -> Result<(), Error> {
        if user_id == self.user_id {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// Seconds since the epoch (a JSON number; validated by jsonwebtoken).
    exp: f64,
}

/// Seconds past `exp` a token is still accepted (clock skew between issuer and seatrush).
const LEEWAY_SECONDS: u64 = 60;
/// Most tokens [`Verified`] remembers.
const VERIFIED_CAP: usize = 16_384;

/// Tokens verified lately, so a caller's next requests skip the signature check (a buyer
/// sends the same token with every request of a sale): the token's whole text to its caller
/// and the last second it is accepted (`exp` + leeway). Only tokens that verified are kept,
/// and only until then; a token differing by one character is another key. The map hashes
/// with a random per-process key, so nobody can aim lookups at an entry. When it holds
/// [`VERIFIED_CAP`] tokens it starts over.
#[derive(Default)]
struct Verified(std::sync::Mutex<std::collections::HashMap<Box<str>, (Caller, u64)>>);

impl Verified {
    fn get(&self, token: &str, now: u64) -> Option<Caller> {
        let map = self.0.lock().expect("verified tokens lock");
        map.get(token)
            .and_then(|&(caller, until)| (now <= until).then_some(caller))
    }

    fn insert(&self, token: &str, caller: Caller, until: u64) {
        let mut map = self.0.lock().expect("verified tokens lock");
        if map.len() >= VERIFIED_CAP {
            map.clear();
        }
        map.insert(token.into(), (caller, until));
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Serialize)]
struct SignedClaims {
    sub: String,
    exp: u64,
    iat: u64,
}

/// Why the configured keys cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("SEATRUSH_AUTH_SECRET holds an empty secret")]
    EmptySecret,
    #[error("SEATRUSH_AUTH_PUBLIC_KEY is neither an RSA nor an EC (P-256) public key in PEM")]
    BadPublicKey,
    #[error("SEATRUSH_AUTH_PUBLIC_KEY could not be read from {0}: {1}")]
    UnreadablePublicKey(String, std::io::Error),
    #[error(
        "seatrush verifies with a public key (SEATRUSH_AUTH_PUBLIC_KEY) and cannot sign; \
         the identity provider signs"
    )]
    CannotSign,
    #[error("could not sign: {0}")]
    Signing(jsonwebtoken::errors::Error),
}

/// The keys that verify callers' tokens (and, with shared secrets, sign them).
pub struct Identity {
    keys: Vec<DecodingKey>,
    validation: Validation,
    signer: Option<EncodingKey>,
    verified: Verified,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("algorithm", &self.validation.algorithms)
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn validation(algorithm: Algorithm) -> Validation {
    let mut v = Validation::new(algorithm);
    v.leeway = LEEWAY_SECONDS;
    v.validate_exp = true;
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "sub"]);
    v
}

impl Identity {
    /// The keys `SEATRUSH_AUTH_PUBLIC_KEY` or else `SEATRUSH_AUTH_SECRET` name.
    pub fn from_config(config: &Config) -> Result<Self, KeyError> {
        match &config.auth_public_key {
            Some(key) => Self::public_key(key),
            None => Self::shared_secrets(&config.auth_secrets),
        }
    }

    /// HS256 with these secrets: the first signs, every one verifies.
    pub fn shared_secrets<S: AsRef<str>>(secrets: &[S]) -> Result<Self, KeyError> {
        if secrets.is_empty() || secrets.iter().any(|s| s.as_ref().is_empty()) {
            return Err(KeyError::EmptySecret);
        }
        let keys = secrets
            .iter()
            .map(|s| DecodingKey::from_secret(s.as_ref().as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| KeyError::EmptySecret)?;
        let signer = EncodingKey::from_secret(secrets[0].as_ref().as_bytes())
            .map_err(|_| KeyError::EmptySecret)?;
        Ok(Self {
            keys,
            validation: validation(Algorithm::HS256),
            signer: Some(signer),
            verified: Verified::default(),
        })
    }

    /// RS256 or ES256 with this public key (PEM text, or the path of a PEM file); nothing
    /// else is accepted, and nothing can be signed.
    pub fn public_key(pem_or_path: &str) -> Result<Self, KeyError> {
        let pem = if pem_or_path.contains("-----BEGIN") {
            pem_or_path.to_string()
        } else {
            std::fs::read_to_string(pem_or_path)
                .map_err(|e| KeyError::UnreadablePublicKey(pem_or_path.to_string(), e))?
        };
        let (key, algorithm) = if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
            (key, Algorithm::RS256)
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
            (key, Algorithm::ES256)
        } else {
            return Err(KeyError::BadPublicKey);
        };
        Ok(Self {
            keys: vec![key],
            validation: validation(algorithm),
            signer: None,
            verified: Verified::default(),
        })
    }

    /// The caller named by a Bearer token, or `401 AUTH_INVALID`.
    pub fn verify(&self, token: &str) -> Result<Caller, Error> {
        if let Some(caller) = self.verified.get(token, unix_seconds()) {
            return Ok(caller);
        }
        let mut last = Err(Error::AuthInvalid);
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => {
                    last = user_id(&data.claims.sub).map(|user_id| Caller { user_id });
                    if let Ok(caller) = last {
                        let until =
                            (data.claims.exp.max(0.0) as u64).saturating_add(LEEWAY_SECONDS);
                        self.verified.insert(token, caller, until);
                    }
                    break;
                }
                Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => {}
                Err(_) => break,
            }
        }
        last
    }

    /// A token for `user_id` that expires in `ttl_seconds` (development, tests, benchmarks).
    pub fn sign(&self, user_id: u64, ttl_seconds: u64) -> Result<String, KeyError> {
        let key = self.signer.as_ref().ok_or(KeyError::CannotSign)?;
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let claims = SignedClaims {
            sub: user_id.to_string(),
            exp: now + ttl_seconds,
            iat: now,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(KeyError::Signing)
    }
}

/// Signs and opens Queue-Tokens: `<scheduleId>.<sequence>.<userId>.<mac>`, the MAC an
/// HMAC-SHA256 of the rest under `SEATRUSH_TOKEN_SECRET`, its first 128 bits in unpadded
/// base64url. A token therefore names its schedule (no index is needed to route it) and its
/// user, and a forged or mangled one is refused before any Redis call. Several secrets may
/// be configured: the first signs, all open, so the secret can be rotated.
pub struct TokenKey {
    keys: Vec<Hmac<Sha256>>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Bytes of the MAC a Queue-Token carries.
const TOKEN_MAC_BYTES: usize = 16;
/// The longest Queue-Token there is: three 20-digit numbers, three dots, the MAC.
pub const MAX_QUEUE_TOKEN_CHARS: usize = 3 * 20 + 3 + 22;

impl TokenKey {
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Result<Self, KeyError> {
        if secrets.is_empty() || secrets.iter().any(|s| s.as_ref().is_empty()) {
            return Err(KeyError::EmptySecret);
        }
        let keys = secrets
            .iter()
            .map(|s| Hmac::<Sha256>::new_from_slice(s.as_ref().as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| KeyError::EmptySecret)?;
        Ok(Self { keys })
    }

    pub fn from_config(config: &Config) -> Result<Self, KeyError> {
        Self::new(&config.token_secrets)
    }

    fn mac(key: &Hmac<Sha256>, body: &str) -> Hmac<Sha256> {
        let mut mac = key.clone();
        mac.update(body.as_bytes());
        mac
    }

    /// The Queue-Token a client holds for `token`.
    pub fn seal(&self, token: QueueToken) -> String {
        let body = format!("{}.{}.{}", token.schedule_id, token.sequence, token.user_id);
        let tag = Self::mac(&self.keys[0], &body).finalize().into_bytes();
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(&tag[..TOKEN_MAC_BYTES]))
    }

    /// The token a Queue-Token names, if seatrush signed it: `401 QUEUE_TOKEN_INVALID`
    /// otherwise.
    pub fn open(&self, text: &str) -> Result<QueueToken, Error> {
        let invalid = || Error::QueueTokenInvalid;
        if text.len() > MAX_QUEUE_TOKEN_CHARS {
            return Err(invalid());
        }
        let (body, tag) = text.rsplit_once('.').ok_or_else(invalid)?;
        let mut tag_bytes = [0u8; TOKEN_MAC_BYTES + 2];
        let n = URL_SAFE_NO_PAD
            .decode_slice(tag, &mut tag_bytes)
            .map_err(|_| invalid())?;
        if n != TOKEN_MAC_BYTES || URL_SAFE_NO_PAD.encode(&tag_bytes[..n]) != tag {
            return Err(invalid());
        }
        if !self.keys.iter().any(|key| {
            Self::mac(key, body)
                .verify_truncated_left(&tag_bytes[..n])
                .is_ok()
        }) {
            return Err(invalid());
        }
        let mut parts = body.split('.');
        let mut next = || parts.next().and_then(|p| positive(p).ok());
        let (Some(schedule_id), Some(sequence), Some(user_id)) = (next(), next(), next()) else {
            return Err(invalid());
        };
        Ok(QueueToken {
            schedule_id,
            sequence,
            user_id,
        })
    }
}

/// A positive decimal integer without sign or leading zeros, at most `i64::MAX`.
fn positive(text: &str) -> Result<u64, Error> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u64>() {
        Ok(n) if digits && n > 0 && n <= i64::MAX as u64 && !text.starts_with('0') => Ok(n),
        _ => Err(Error::AuthInvalid),
    }
}

/// `sub` as a user id: a positive decimal integer without sign or leading zeros.
fn user_id(sub: &str) -> Result<u64, Error> {
    positive(sub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn hs256(secret: &str, claims: &serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn a_verified_token_is_remembered_until_its_expiry_and_the_cache_stays_bounded() {
        let verified = Verified::default();
        let caller = Caller { user_id: 3 };
        verified.insert("t", caller, 1_000);
        assert_eq!(verified.get("t", 1_000), Some(caller));
        assert_eq!(verified.get("t", 1_001), None, "past exp + leeway");
        assert_eq!(verified.get("t2", 10), None);
        for i in 0..VERIFIED_CAP + 10 {
            verified.insert(&i.to_string(), caller, 1_000);
        }
        assert!(verified.0.lock().unwrap().len() <= VERIFIED_CAP);
    }

    #[test]
    fn a_remembered_token_is_trusted_only_as_written() {
        let id = Identity::shared_secrets(&["s3cret"]).unwrap();
        let token = id.sign(42, 60).unwrap();
        assert_eq!(id.verify(&token).unwrap().user_id(), 42);
        assert_eq!(id.verify(&token).unwrap().user_id(), 42, "from the cache");
        // The same claims with a changed signature, and the token with a suffix, are
        // verified afresh and refused.
        let mut forged = token.clone().into_bytes();
        let at = forged.len() - 10;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(matches!(id.verify(&forged), Err(Error::AuthInvalid)));
        assert!(matches!(
            id.verify(&format!("{token}x")),
            Err(Error::AuthInvalid)
        ));
        // A token remembered by one identity means nothing to another with other keys.
        let other = Identity::shared_secrets(&["other"]).unwrap();
        assert!(matches!(other.verify(&token), Err(Error::AuthInvalid)));
    }

    #[test]
    fn a_signed_token_names_its_user() {
        let id = Identity::shared_secrets(&["s3cret"]).unwrap();
        let token = id.sign(42, 60).unwrap();
        assert_eq!(id.verify(&token).unwrap().user_id(), 42);
    }

    #[test]
    fn every_secret_verifies_and_the_first_signs() {
        let old = Identity::shared_secrets(&["old"]).unwrap();
        let rotated = Identity::shared_secrets(&["new", "old"]).unwrap();
        assert_eq!(
            rotated.verify(&old.sign(7, 60).unwrap()).unwrap().user_id(),
            7
        );
        let fresh = rotated.sign(8, 60).unwrap();
        assert!(old.verify(&fresh).is_err(), "signed with the new secret");
        assert!(Identity::shared_secrets::<&str>(&[]).is_err());
        assert!(Identity::shared_secrets(&["a", ""]).is_err());
    }

    #[test]
    fn bad_tokens_are_auth_invalid() {
        let id = Identity::shared_secrets(&["s3cret"]).unwrap();
        let exp = now() + 300;
        let good = hs256("s3cret", &serde_json::json!({"sub": "5", "exp": exp}));
        let mut tampered = good.clone();
        tampered.pop();
        tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
        let cases = [
            ("not three parts", "abc.def".to_string()),
            ("garbage", "a.b.c".to_string()),
            ("tampered signature", tampered),
            (
                "another secret",
                hs256("other", &serde_json::json!({"sub": "5", "exp": exp})),
            ),
            (
                "expired past the leeway",
                hs256(
                    "s3cret",
                    &serde_json::json!({"sub": "5", "exp": now() - 120}),
                ),
            ),
            ("no exp", hs256("s3cret", &serde_json::json!({"sub": "5"}))),
            ("no sub", hs256("s3cret", &serde_json::json!({"exp": exp}))),
            (
                "numeric sub",
                hs256("s3cret", &serde_json::json!({"sub": 5, "exp": exp})),
            ),
            (
                "alg none",
                format!(
                    "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
                    good.split('.').nth(1).unwrap()
                ),
            ),
        ];
        for (what, token) in cases {
            assert!(
                matches!(id.verify(&token), Err(Error::AuthInvalid)),
                "{what}"
            );
        }
        for sub in [
            "0",
            "007",
            "-5",
            "+5",
            "5.0",
            "",
            "x",
            "99999999999999999999",
        ] {
            let token = hs256("s3cret", &serde_json::json!({"sub": sub, "exp": exp}));
            assert!(
                matches!(id.verify(&token), Err(Error::AuthInvalid)),
                "sub {sub:?}"
            );
        }
    }

    #[test]
    fn within_the_leeway_an_expired_token_still_counts() {
        let id = Identity::shared_secrets(&["s3cret"]).unwrap();
        let token = hs256(
            "s3cret",
            &serde_json::json!({"sub": "9", "exp": now() - 30, "aud": "elsewhere"}),
        );
        assert_eq!(id.verify(&token).unwrap().user_id(), 9);
    }

    #[test]
    fn a_sealed_queue_token_opens_to_what_it_names() {
        let key = TokenKey::new(&["s3cret"]).unwrap();
        let token = QueueToken {
            schedule_id: 42,
            sequence: 7,
            user_id: 1_000_001,
        };
        let text = key.seal(token);
        assert!(text.starts_with("42.7.1000001."), "{text}");
        assert!(text.len() <= MAX_QUEUE_TOKEN_CHARS);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b)),
            "{text}"
        );
        assert_eq!(key.open(&text).unwrap(), token);
        let rotated = TokenKey::new(&["next", "s3cret"]).unwrap();
        assert_eq!(
            rotated.open(&text).unwrap(),
            token,
            "an older secret still opens"
        );
    }

    #[test]
    fn forged_and_mangled_queue_tokens_do_not_open() {
        let key = TokenKey::new(&["s3cret"]).unwrap();
        let text = key.seal(QueueToken {
            schedule_id: 42,
            sequence: 7,
            user_id: 9,
        });
        let (body, tag) = text.rsplit_once('.').unwrap();
        let forged = [
            format!("42.7.10.{tag}"),             // another user under the same MAC
            format!("43.7.9.{tag}"),              // another schedule
            format!("{body}.{}", &tag[1..]),      // a short MAC
            format!("{body}.{tag}A"),             // a long one
            format!("{body}.{}", "A".repeat(22)), // a guessed one
            TokenKey::new(&["other"]).unwrap().seal(QueueToken {
                schedule_id: 42,
                sequence: 7,
                user_id: 9,
            }),
            format!("042.7.9.{tag}"),
            "0f8fad5b-d9cb-469f-a165-70867728950e".to_string(),
            String::new(),
            ".".repeat(4),
            "x".repeat(500),
        ];
        for bad in forged {
            assert!(
                matches!(key.open(&bad), Err(Error::QueueTokenInvalid)),
                "{bad}"
            );
        }
        assert!(TokenKey::new::<&str>(&[]).is_err());
    }

    /// A P-256 key pair made for this test only.
    const TEST_EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgIWu/xAYkXfiqIUE1
mvQxgyJnXodcbTuRE/VO9ODAIXChRANCAATppkHTWfvPU/zoqfLZokNhttcKcXbs
WSrGgJ+/jRg74eBHxQOtz1W/rIcyeGy0lJZvRsfn1D+ihK5XyJwak+5A
-----END PRIVATE KEY-----
";
    const TEST_EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE6aZB01n7z1P86Kny2aJDYbbXCnF2
7FkqxoCfv40YO+HgR8UDrc9Vv6yHMnhstJSWb0bH59Q/ooSuV8icGpPuQA==
-----END PUBLIC KEY-----
";

    #[test]
    fn a_public_key_accepts_only_its_own_algorithm() {
        let id = Identity::public_key(TEST_EC_PUBLIC).unwrap();
        let claims = serde_json::json!({"sub": "5", "exp": now() + 60});
        let es256 = encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_pem(TEST_EC_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(id.verify(&es256).unwrap().user_id(), 5);
        // HS256 with the public key as its secret (the classic confusion) must not verify.
        let confused = hs256(TEST_EC_PUBLIC, &claims);
        assert!(matches!(id.verify(&confused), Err(Error::AuthInvalid)));
        assert!(matches!(id.sign(5, 60), Err(KeyError::CannotSign)));
        assert!(matches!(
            Identity::public_key("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"),
            Err(KeyError::BadPublicKey)
        ));
    }
}
