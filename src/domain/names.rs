//! Owner and repository names: one naming rule for both, enforced at the edge.

use std::fmt;

use crate::error::{Error, Result};

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
}
