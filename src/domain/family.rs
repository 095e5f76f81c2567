//! Event families, their event types and their naming rules, and the delivery formats that
//! render them: the catalog ListEventTypes shows and every validation reads.

use crate::error::{Error, Result};

/// A kind of event source, each with its own event types and naming rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// The BSR's `EventRequest`s: one type, `repository.push`.
    Bsr,
    /// OCI registry events ([`REGISTRY_TYPES`]).
    Registry,
    /// GitHub-style events: any valid name.
    GitHub,
    /// webhookd's operational events about the owner's subscriptions ([`OPERATIONAL_TYPES`]).
    Webhookd,
}

impl Family {
    /// Every family, in the order ListEventTypes shows them.
    pub const ALL: [Family; 4] = [
        Family::Bsr,
        Family::Registry,
        Family::GitHub,
        Family::Webhookd,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Bsr => "bsr",
            Family::Registry => "registry",
            Family::GitHub => "github",
            Family::Webhookd => "webhookd",
        }
    }

    /// The family of a stored name.
    pub fn from_stored(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// The formats that render this family's events.
    pub fn formats(self) -> Vec<Format> {
        Format::ALL
            .into_iter()
            .filter(|f| f.families().contains(&self))
            .collect()
    }

    /// The format a subscription gets when it names none.
    pub fn default_format(self) -> Format {
        match self {
            Family::Bsr => Format::Connect,
            Family::Registry | Family::GitHub | Family::Webhookd => Format::Json,
        }
    }

    /// Checks one event type of this family: a registry type must be one of
    /// [`REGISTRY_TYPES`], the BSR's `repository.push`, a GitHub name letters, digits and
    /// `_` (at most [`MAX_EVENT_NAME_CHARS`]).
    ///
    /// # Errors
    /// `InvalidArgument` naming `field`, listing what is accepted.
    pub fn check_type(self, field: &str, name: &str) -> Result<()> {
        let known = match self {
            Family::Bsr => name == BSR_PUSH,
            Family::Registry => registry_type(name).is_some(),
            Family::GitHub => valid_github_name(name),
            Family::Webhookd => OPERATIONAL_TYPES.iter().any(|(t, _)| *t == name),
        };
        if known {
            return Ok(());
        }
        let accepted = match self {
            Family::Bsr => format!("the bsr family has one event type, {BSR_PUSH:?}"),
            Family::Registry => format!(
                "registry event types are {}",
                REGISTRY_TYPES
                    .iter()
                    .map(|t| t.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Family::GitHub => format!(
                "a github event name is 1 to {MAX_EVENT_NAME_CHARS} lowercase letters, digits \
                 and '_', starting with a letter (or \"*\" for every event)"
            ),
            Family::Webhookd => format!(
                "webhookd event types are {}",
                OPERATIONAL_TYPES
                    .iter()
                    .map(|(t, _)| *t)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Err(Error::InvalidArgument(format!(
            "{field}: unknown event type {name:?}: {accepted}"
        )))
    }
}

/// The BSR family's one event type.
pub const BSR_PUSH: &str = "repository.push";

/// Sent when a subscription's attempts start failing (the fourth failure in a row, or
/// `--auto-disable-min-failures` when fewer).
pub const SUBSCRIPTION_FAILING: &str = "webhookd.subscription.failing";
/// Sent when a subscription is disabled for failing (`--auto-disable-after`) or for a
/// listener's 410 Gone.
pub const SUBSCRIPTION_DISABLED: &str = "webhookd.subscription.disabled";

/// The webhookd family's event types, with what each means.
pub const OPERATIONAL_TYPES: &[(&str, &str)] = &[
    (
        SUBSCRIPTION_FAILING,
        "One of the owner's subscriptions started failing: its last attempts all failed.",
    ),
    (
        SUBSCRIPTION_DISABLED,
        "One of the owner's subscriptions was disabled: it failed for --auto-disable-after, \
         or its listener answered 410 Gone.",
    ),
];

/// The longest GitHub event name accepted.
pub const MAX_EVENT_NAME_CHARS: usize = 64;

/// Whether `name` is a valid GitHub-style event name.
pub fn valid_github_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_EVENT_NAME_CHARS
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// How a subscription's deliveries look on the wire; each is one renderer in
/// `dispatch::request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The BSR's Connect POST of the `EventRequest`.
    Connect,
    /// webhookd's JSON envelope.
    Json,
    /// GitHub's webhook request.
    GitHub,
    /// Harbor's Default JSON payload.
    Harbor,
    /// Harbor's CloudEvents structured-mode payload.
    CloudEvents,
    /// Angos's JSON payload and headers.
    Angos,
    /// A Slack incoming-webhook message.
    Slack,
    /// A Microsoft Teams message.
    Teams,
}

impl Format {
    /// Every format, in the order ListEventTypes shows them.
    pub const ALL: [Format; 8] = [
        Format::Connect,
        Format::Json,
        Format::GitHub,
        Format::Harbor,
        Format::CloudEvents,
        Format::Angos,
        Format::Slack,
        Format::Teams,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Connect => "connect",
            Format::Json => "json",
            Format::GitHub => "github",
            Format::Harbor => "harbor",
            Format::CloudEvents => "cloudevents",
            Format::Angos => "angos",
            Format::Slack => "slack",
            Format::Teams => "teams",
        }
    }

    /// The format of a stored name.
    pub fn from_stored(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// The families this format renders.
    pub fn families(self) -> &'static [Family] {
        match self {
            Format::Connect => &[Family::Bsr],
            Format::GitHub => &[Family::GitHub],
            Format::Harbor | Format::CloudEvents | Format::Angos => &[Family::Registry],
            Format::Json | Format::Slack | Format::Teams => &Family::ALL,
        }
    }

    /// Checks that this format renders `family`.
    ///
    /// # Errors
    /// `InvalidArgument` saying which families it takes.
    pub fn check_family(self, family: Family) -> Result<()> {
        if self.families().contains(&family) {
            return Ok(());
        }
        let takes: Vec<&str> = self.families().iter().map(|f| f.as_str()).collect();
        Err(Error::InvalidArgument(format!(
            "format: {} cannot render {} events; it takes the {} family",
            self.as_str(),
            family.as_str(),
            takes.join(", ")
        )))
    }
}

/// A registry event type, with what each registry format sends it as.
#[derive(Debug, Clone, Copy)]
pub struct RegistryType {
    /// webhookd's name.
    pub name: &'static str,
    /// What it means.
    pub description: &'static str,
    /// Harbor's event type; empty when Harbor has none (Harbor-format subscribers are sent
    /// these under webhookd's name in upper case).
    pub harbor: &'static str,
    /// The CloudEvents `type`.
    pub cloudevents: &'static str,
    /// The Angos kinds it is sent as; empty when Angos has none.
    pub angos: &'static [&'static str],
}

/// Every registry event type.
pub const REGISTRY_TYPES: &[RegistryType] = &[
    RegistryType {
        name: "artifact.pushed",
        description: "An artifact (image, chart, ...) was pushed, with its tags.",
        harbor: "PUSH_ARTIFACT",
        cloudevents: "harbor.artifact.pushed",
        angos: &["manifest.push", "tag.create"],
    },
    RegistryType {
        name: "artifact.pulled",
        description: "An artifact was pulled, by tag or by digest.",
        harbor: "PULL_ARTIFACT",
        cloudevents: "harbor.artifact.pulled",
        angos: &["manifest.pull"],
    },
    RegistryType {
        name: "artifact.deleted",
        description: "An artifact was deleted, by tag or by digest.",
        harbor: "DELETE_ARTIFACT",
        cloudevents: "harbor.artifact.deleted",
        angos: &["manifest.delete", "tag.delete"],
    },
    RegistryType {
        name: "tag.created",
        description: "A tag was added to an existing artifact.",
        harbor: "",
        cloudevents: "harbor.tag.created",
        angos: &["tag.create"],
    },
    RegistryType {
        name: "tag.deleted",
        description: "A tag was removed from an artifact.",
        harbor: "",
        cloudevents: "harbor.tag.deleted",
        angos: &["tag.delete"],
    },
    RegistryType {
        name: "blob.pushed",
        description: "A blob upload completed (or a blob was mounted).",
        harbor: "",
        cloudevents: "harbor.blob.pushed",
        angos: &["blob.push"],
    },
    RegistryType {
        name: "blob.pulled",
        description: "A blob was served.",
        harbor: "",
        cloudevents: "harbor.blob.pulled",
        angos: &["blob.pull"],
    },
    RegistryType {
        name: "scan.completed",
        description: "A vulnerability or SBOM scan finished.",
        harbor: "SCANNING_COMPLETED",
        cloudevents: "harbor.scan.completed",
        angos: &[],
    },
    RegistryType {
        name: "scan.failed",
        description: "A scan failed.",
        harbor: "SCANNING_FAILED",
        cloudevents: "harbor.scan.failed",
        angos: &[],
    },
    RegistryType {
        name: "scan.stopped",
        description: "A scan was stopped.",
        harbor: "SCANNING_STOPPED",
        cloudevents: "harbor.scan.stopped",
        angos: &[],
    },
    RegistryType {
        name: "quota.exceeded",
        description: "A push was refused: the project's quota is exceeded.",
        harbor: "QUOTA_EXCEED",
        cloudevents: "harbor.quota.exceeded",
        angos: &[],
    },
    RegistryType {
        name: "quota.warning",
        description: "The project's usage neared its quota.",
        harbor: "QUOTA_WARNING",
        cloudevents: "harbor.quota.warned",
        angos: &[],
    },
    RegistryType {
        name: "replication.finished",
        description: "A replication run finished (its status changed).",
        harbor: "REPLICATION",
        cloudevents: "harbor.replication.status.changed",
        angos: &[],
    },
    RegistryType {
        name: "tag_retention.finished",
        description: "A tag retention run finished.",
        harbor: "TAG_RETENTION",
        cloudevents: "harbor.tag_retention.finished",
        angos: &[],
    },
];

/// The registry event type named `name`.
pub fn registry_type(name: &str) -> Option<&'static RegistryType> {
    REGISTRY_TYPES.iter().find(|t| t.name == name)
}

/// A few GitHub events, shown by ListEventTypes (any valid name is accepted).
pub const GITHUB_TYPES: &[(&str, &str)] = &[
    (
        "push",
        "One or more commits were pushed to a branch or tag.",
    ),
    ("ping", "Sent when a hook is created or pinged."),
    (
        "pull_request",
        "A pull request was opened, edited, closed, ...",
    ),
    ("issues", "An issue was opened, edited, closed, ..."),
    (
        "issue_comment",
        "An issue or pull request comment was made.",
    ),
    ("release", "A release was published, edited, ..."),
    ("create", "A branch or tag was created."),
    ("delete", "A branch or tag was deleted."),
    (
        "workflow_run",
        "A GitHub Actions workflow run was requested or completed.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_renders_a_family_and_every_family_has_a_format() {
        for family in Family::ALL {
            assert!(family.formats().contains(&family.default_format()));
            assert_eq!(Family::from_stored(family.as_str()), Some(family));
        }
        for format in Format::ALL {
            assert_eq!(Format::from_stored(format.as_str()), Some(format));
        }
        let err = Format::Harbor.check_family(Family::GitHub).unwrap_err();
        assert_eq!(
            err.to_string(),
            "format: harbor cannot render github events; it takes the registry family"
        );
    }

    #[test]
    fn event_types_follow_each_familys_rules() {
        assert!(Family::Registry.check_type("t", "artifact.pushed").is_ok());
        assert!(Family::Registry.check_type("t", "PUSH_ARTIFACT").is_err());
        assert!(Family::GitHub.check_type("t", "pull_request").is_ok());
        for bad in ["", "Push", "1push", "pu sh", &"x".repeat(65)] {
            assert!(Family::GitHub.check_type("t", bad).is_err(), "{bad}");
        }
        assert!(Family::Bsr.check_type("t", BSR_PUSH).is_ok());
        assert!(Family::Bsr.check_type("t", "push").is_err());
    }
}
