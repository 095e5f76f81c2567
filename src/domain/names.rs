//! Owner and repository names, enforced at the edge: the BSR's rule for both (BSR events and
//! webhooks), OCI distribution's for registry events, GitHub's for GitHub-style events.

use std::fmt;

use super::Family;
use crate::error::{Error, Result};

/// The longest registry repository name (owner and repository with their `/`), as OCI
/// distribution implementations commonly limit it.
pub const MAX_REGISTRY_NAME_CHARS: usize = 255;

/// The longest owner or repository name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Checks the naming rule shared by owners and repositories: 2 to 100 characters of
/// lowercase ASCII letters, digits and hyphens, starting and ending with a letter or digit.
fn check_name(field: &str, value: &str) -> Result<()> {
    let invalid = |why: &str| Err(Error::InvalidArgument(format!("{field} {why}")));
    if value.is_empty() {
        return invalid("is required");
    }
    if value.len() > MAX_NAME_CHARS {
        return invalid(&format!(
            "is {} bytes long; the limit is {MAX_NAME_CHARS} characters",
            value.len()
        ));
    }
    if value.len() < 2 {
        return invalid("must be at least 2 characters long");
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        return invalid(&format!(
            "may contain only lowercase letters a-z, digits 0-9 and '-', but contains {bad:?}"
        ));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return invalid("must start and end with a letter or digit");
    }
    Ok(())
}

/// Checks `value` against `family`'s rule for an owner (`owner`) or a repository.
fn check_in(family: Family, owner: bool, field: &str, value: &str) -> Result<()> {
    let invalid = |why: String| Err(Error::InvalidArgument(format!("{field} {why}")));
    if value.is_empty() {
        return invalid("is required".into());
    }
    match (family, owner) {
        (Family::Bsr, _) => check_name(field, value),
        // Operational events are about subscriptions of any family.
        (Family::Webhookd, _) => {
            let families = [Family::Bsr, Family::Registry, Family::GitHub];
            if families
                .into_iter()
                .any(|f| check_in(f, owner, field, value).is_ok())
            {
                Ok(())
            } else {
                check_in(Family::Bsr, owner, field, value)
            }
        }
        (Family::Registry, _) => {
            if value.len() > MAX_REGISTRY_NAME_CHARS {
                return invalid(format!(
                    "is {} bytes long; the limit is {MAX_REGISTRY_NAME_CHARS}",
                    value.len()
                ));
            }
            if owner && value.contains('/') {
                return invalid("is one path component: it may not contain '/'".into());
            }
            if value.split('/').all(oci_component) {
                Ok(())
            } else {
                invalid(
                    "must be OCI path components (lowercase letters and digits, separated \
                     inside a component by '.', '_', '__' or dashes) joined by '/'"
                        .into(),
                )
            }
        }
        (Family::GitHub, true) => {
            let ok = value.len() <= 39
                && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !value.starts_with('-')
                && !value.ends_with('-');
            if ok {
                Ok(())
            } else {
                invalid(
                    "must be 1 to 39 letters, digits or '-', not starting or ending with '-'"
                        .into(),
                )
            }
        }
        (Family::GitHub, false) => {
            let ok = value.len() <= MAX_NAME_CHARS
                && value != "."
                && value != ".."
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if ok {
                Ok(())
            } else {
                invalid(format!(
                    "must be 1 to {MAX_NAME_CHARS} letters, digits, '.', '_' or '-' (not \".\" \
                     or \"..\")"
                ))
            }
        }
    }
}

/// Whether `part` is an OCI distribution path component:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn oci_component(part: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes: Vec<char> = part.chars().collect();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if alnum(c) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-", then an alphanumeric.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let run: String = bytes[start..i].iter().collect();
        let ok = run == "." || run == "_" || run == "__" || run.chars().all(|c| c == '-');
        if !ok {
            return false;
        }
    }
    true
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `value` against the naming rule; the error names the field.
            pub fn parse(value: &str) -> Result<Self> {
                check_name($field, value)?;
                Ok(Self(value.to_owned()))
            }

            /// Validates `value` against `family`'s naming rule; the error names `field`.
            pub fn parse_in(family: Family, field: &str, value: &str) -> Result<Self> {
                check_in(family, $field == "owner_name", field, value)?;
                Ok(Self(value.to_owned()))
            }

            /// Validates `value` against the rule of any family (for what does not say
            /// its family: tokens, listings); the error is the BSR rule's, saying that the
            /// other families' names are accepted too.
            pub fn parse_any(field: &str, value: &str) -> Result<Self> {
                let owner = $field == "owner_name";
                if Family::ALL.into_iter().any(|f| check_in(f, owner, field, value).is_ok()) {
                    return Ok(Self(value.to_owned()));
                }
                match check_in(Family::Bsr, owner, field, value) {
                    Err(Error::InvalidArgument(why)) => Err(Error::InvalidArgument(format!(
                        "{why} (or follow the registry or GitHub naming rule)"
                    ))),
                    other => other.map(|()| Self(value.to_owned())),
                }
            }

            /// A name read back from the database, where it was stored checked (or empty: an
            /// owner-wide subscription's repository).
            pub(crate) fn stored(value: &str) -> Self {
                Self(value.to_owned())
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// The user or organization that owns a repository, e.g. `acme`.
    OwnerName,
    "owner_name"
);
name_type!(
    /// A repository name, e.g. `petapis`.
    RepositoryName,
    "repository_name"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["acme", "pet-apis", "a1", &"x".repeat(MAX_NAME_CHARS)] {
            assert!(OwnerName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else_with_the_field_name() {
        let too_long = "x".repeat(MAX_NAME_CHARS + 1);
        for bad in [
            "",
            "a",
            "Acme",
            "a b",
            "a_b",
            "-ab",
            "ab-",
            "a'; DROP TABLE x;--",
            "é1",
            &too_long,
        ] {
            let err = RepositoryName::parse(bad).expect_err(bad).to_string();
            assert!(err.starts_with("repository_name "), "{err}");
        }
    }

    #[test]
    fn registry_and_github_names_follow_their_systems() {
        let registry = |v| RepositoryName::parse_in(Family::Registry, "repository", v);
        for ok in ["nginx", "team/app", "a.b_c__d--e/f-g", "x1"] {
            assert!(registry(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "Nginx", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a_", "a b",
        ] {
            assert!(registry(bad).is_err(), "{bad}");
        }
        assert!(OwnerName::parse_in(Family::Registry, "owner", "library").is_ok());
        assert!(OwnerName::parse_in(Family::Registry, "owner", "a/b").is_err());
        let github = |v| RepositoryName::parse_in(Family::GitHub, "repository", v);
        for ok in ["Hello-World", "my.repo_1", "x"] {
            assert!(github(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b"] {
            assert!(github(bad).is_err(), "{bad}");
        }
        assert!(OwnerName::parse_in(Family::GitHub, "owner", "Octo-Cat").is_ok());
        assert!(OwnerName::parse_in(Family::GitHub, "owner", "-octo").is_err());
    }
}
