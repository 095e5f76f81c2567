//! API tokens. A token is shown once, when it is made; only its SHA-256 hash is stored.
//! Tokens are 256 random bits, so a fast hash is enough: there is nothing to brute-force.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use super::OwnerName;
use crate::error::{Error, Result};

/// Every token starts with this, so that secret scanners and people can recognise one.
const TOKEN_PREFIX: &str = "whd_";
/// What follows the prefix: 32 random bytes in unpadded URL-safe base64.
const TOKEN_CHARS: usize = 43;

/// A plaintext API token, as given to its holder. Never logged, never stored.
pub struct ApiToken(String);

impl ApiToken {
    /// A new random token. Its alphabet (`A-Za-z0-9_-`) never contains `@` or `,`, so it
    /// can be used in the buf CLI's `BUF_TOKEN`.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Reads the token from an `Authorization: Bearer <token>` header value.
    pub fn from_authorization(header: Option<&str>) -> Result<Self> {
        let header = header.ok_or_else(|| {
            Error::Unauthenticated(
                "missing Authorization header; send 'Authorization: Bearer <token>' with a token \
                 from 'webhookd token create'"
                    .into(),
            )
        })?;
        let token = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                Error::Unauthenticated("the Authorization header must be 'Bearer <token>'".into())
            })?;
        if !Self::well_formed(token) {
            return Err(Error::Unauthenticated(format!(
                "the token is malformed: webhookd tokens are '{TOKEN_PREFIX}' and {TOKEN_CHARS} \
                 characters of A-Z, a-z, 0-9, '_' and '-', as 'webhookd token create' prints them"
            )));
        }
        Ok(Self(token.to_owned()))
    }

    /// Reads the token as the REST faces take it (GitHub's and Harbor's clients send it
    /// so): `Bearer <token>`, `token <token>` (GitHub's own scheme), or HTTP basic auth
    /// with the token as the password (any user name: PyGithub, `curl -u`, Harbor's robot
    /// accounts).
    ///
    /// # Errors
    /// `Unauthenticated`, saying which forms are taken.
    pub fn from_rest_authorization(header: Option<&str>) -> Result<Self> {
        let header =
            header.ok_or_else(|| Error::Unauthenticated("Requires authentication".into()))?;
        let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
        let value = value.trim();
        let token = if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value)
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| Error::Unauthenticated("Bad credentials".into()))?;
            match decoded.split_once(':') {
                Some((_, password)) => password.to_owned(),
                None => decoded,
            }
        } else if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
            value.to_owned()
        } else {
            return Err(Error::Unauthenticated(
                "the Authorization header must be 'Bearer <token>', 'token <token>' or basic \
                 auth with the token as the password"
                    .into(),
            ));
        };
        if !Self::well_formed(&token) {
            return Err(Error::Unauthenticated("Bad credentials".into()));
        }
        Ok(Self(token))
    }

    /// Whether `token` has the form [`Self::generate`] gives: only such a token can exist,
    /// so any other is refused without looking it up.
    fn well_formed(token: &str) -> bool {
        token.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
            rest.len() == TOKEN_CHARS
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
    }

    /// The hash under which the token is stored.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The plaintext, for printing once to the person who created it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The SHA-256 of a token: what the database stores and looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

/// What a token may manage: the webhooks of the owners it names, or of every owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenScope {
    /// The owners named when the token was created.
    pub owners: Vec<String>,
    /// Created with `--all-owners`.
    pub all_owners: bool,
}

impl TokenScope {
    /// True when the token may manage webhooks of `owner`.
    pub fn covers(&self, owner: &str) -> bool {
        self.all_owners || self.owners.iter().any(|o| o == owner)
    }

    /// `Ok` when the token covers `owner`, else `permission_denied` naming the owner.
    pub fn require(&self, owner: &OwnerName) -> Result<()> {
        if self.covers(owner.as_str()) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "this token may not manage webhooks of owner {owner:?}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_faces_take_bearer_token_and_basic_auth() {
        let token = ApiToken::generate();
        let text = token.0.clone();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("octocat:{text}"));
        for header in [
            format!("Bearer {text}"),
            format!("token {text}"),
            format!("Basic {basic}"),
        ] {
            let read = ApiToken::from_rest_authorization(Some(&header)).unwrap();
            assert_eq!(read.0, text, "{header}");
        }
        for bad in ["", "Basic !!!", "Digest abc", "token whd_short"] {
            assert!(
                ApiToken::from_rest_authorization(Some(bad)).is_err(),
                "{bad}"
            );
        }
        assert!(ApiToken::from_rest_authorization(None).is_err());
    }

    #[test]
    fn generated_tokens_are_distinct_and_buf_token_safe() {
        let (a, b) = (ApiToken::generate(), ApiToken::generate());
        assert_ne!(a.expose(), b.expose());
        assert!(!a.expose().contains(['@', ',']));
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn reads_well_formed_bearer_tokens_only() {
        let made = ApiToken::generate();
        let header = format!("bearer {}", made.expose());
        let read = ApiToken::from_authorization(Some(&header)).expect("bearer");
        assert_eq!(read.expose(), made.expose());
        for bad in [None, Some("Basic abc"), Some("Bearer "), Some("abc")] {
            assert!(ApiToken::from_authorization(bad).is_err(), "{bad:?}");
        }
        let body = &made.expose()[TOKEN_PREFIX.len()..];
        for malformed in [
            "abc".to_owned(),
            format!("whx_{body}"),
            format!("whd_{}", &body[1..]),
            format!("whd_{body}A"),
            format!("whd_{}!", &body[1..]),
            format!("whd_{}é", &body[2..]),
        ] {
            let err = ApiToken::from_authorization(Some(&format!("Bearer {malformed}")))
                .err()
                .expect("refused")
                .to_string();
            assert!(err.contains("malformed"), "{malformed}: {err}");
        }
    }
}
