//! Signed bearer tokens (JWT, HS256): a login gives a short-lived session token, an admin gives a
//! screen a long-lived screen token. The signature and expiry are checked here; whether the user
//! or the screen token has since been revoked is the directory's question.

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AuthError, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Given at login; expires after hours.
    Session,
    /// Given to a wall screen by an admin; expires after months, revocable one by one.
    Screen,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user the token speaks for.
    pub sub: String,
    /// Token id: the key for revocation and rate limits.
    pub jti: String,
    pub kind: TokenKind,
    /// The role and scope at issue; for session tokens the user's current role and scope win.
    pub role: Role,
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
}

pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenSigner {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // An expired token is refused at once: no grace period.
        validation.leeway = 0;
        validation.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
        TokenSigner {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.encoding,
        )?)
    }

    /// The claims of a token whose signature is ours and which has not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(AuthError::Expired),
            Err(_) => Err(AuthError::Invalid),
        }
    }
}

/// The HMAC of `purpose` under the token secret, hex: passwords vscc derives for the ClickHouse
/// users it provisions, stable across restarts without being stored.
pub fn derive_secret(secret: &[u8], purpose: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(purpose.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A new random token: 24 bytes as hex.
pub fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether two secrets are the same, compared through their SHA-256 digests: the time taken
/// says nothing about where they first differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_offset: i64) -> Claims {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Claims {
            sub: "li".into(),
            jti: "t1".into(),
            kind: TokenKind::Session,
            role: Role::Analyst,
            scope: "440303".into(),
            iat: now,
            exp: now + exp_offset,
        }
    }

    #[test]
    fn a_signed_token_verifies_and_carries_its_claims() {
        let signer = TokenSigner::new(b"secret-one");
        let token = signer.sign(&claims(60)).unwrap();
        let back = signer.verify(&token).unwrap();
        assert_eq!(
            (back.sub.as_str(), back.role, back.scope.as_str()),
            ("li", Role::Analyst, "440303")
        );
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let signer = TokenSigner::new(b"secret-one");
        assert_eq!(
            signer
                .verify(&signer.sign(&claims(-1)).unwrap())
                .unwrap_err(),
            AuthError::Expired
        );
        let other = TokenSigner::new(b"secret-two");
        assert_eq!(
            signer
                .verify(&other.sign(&claims(60)).unwrap())
                .unwrap_err(),
            AuthError::Invalid
        );
        let mut token = signer.sign(&claims(60)).unwrap();
        // Flip one character of the payload: the signature no longer matches.
        let dot = token.find('.').unwrap() + 5;
        let replacement = if &token[dot..dot + 1] == "A" {
            "B"
        } else {
            "A"
        };
        token.replace_range(dot..dot + 1, replacement);
        assert_eq!(signer.verify(&token).unwrap_err(), AuthError::Invalid);
    }

    #[test]
    fn derived_secrets_differ_by_purpose_and_key() {
        assert_ne!(derive_secret(b"k", "a"), derive_secret(b"k", "b"));
        assert_ne!(derive_secret(b"k", "a"), derive_secret(b"j", "a"));
        assert_eq!(derive_secret(b"k", "a"), derive_secret(b"k", "a"));
    }
}
