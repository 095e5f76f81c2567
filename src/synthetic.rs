//! Synthetic repository-push events that look like the BSR's: a commit with tags, in a
//! repository, for `webhookd publish`, the tests and the benchmarks.

use buffa::{EnumValue, MessageField};
use buffa_types::google::protobuf::Timestamp;
use chrono::Utc;
use sha2::{Digest as _, Sha256};

use crate::proto::buf::alpha::registry::v1alpha1::__buffa::oneof::repository::Owner;
use crate::proto::buf::alpha::registry::v1alpha1::{Repository, RepositoryCommit, RepositoryTag};
use crate::proto::buf::alpha::webhook::v1alpha1::{
    EventPayload, EventRequest, RepositoryPushEvent,
};

/// The `sequence`-th push to `owner/repository`: a `WEBHOOK_EVENT_REPOSITORY_PUSH` event.
pub fn repository_push(owner: &str, repository: &str, sequence: u64) -> EventRequest {
    let now = Timestamp::from(Utc::now());
    let digest = hex(&Sha256::digest(format!("{owner}/{repository}#{sequence}")));
    let commit_name = digest[..32].to_owned();
    let tag = |name: &str| RepositoryTag {
        id: format!("tag-{}-{name}", &digest[..12]),
        create_time: MessageField::some(now.clone()),
        name: name.to_owned(),
        commit_name: commit_name.clone(),
        author: "ci-bot".to_owned(),
        ..Default::default()
    };
    let commit = RepositoryCommit {
        id: format!("commit-{}", &digest[..24]),
        create_time: MessageField::some(now.clone()),
        digest: format!("shake256:{digest}"),
        name: commit_name.clone(),
        branch: "main".to_owned(),
        author: "alice".to_owned(),
        tags: vec![tag(&format!("v1.{sequence}.0")), tag(&commit_name[..12])],
        manifest_digest: format!("shake256:{}", &digest[32..]),
        tag_count: 2,
        b5_digest: format!("b5:{}", &digest[..40]),
        ..Default::default()
    };
    let repo = Repository {
        id: format!("repo-{owner}-{repository}"),
        create_time: MessageField::some(now.clone()),
        update_time: MessageField::some(now.clone()),
        name: repository.to_owned(),
        owner: Some(Owner::OrganizationId(format!("org-{owner}"))),
        visibility: EnumValue::from(1),
        owner_name: owner.to_owned(),
        description: format!("The {repository} APIs"),
        url: format!("https://github.com/{owner}/{repository}"),
        default_branch: "main".to_owned(),
        ..Default::default()
    };
    let push = RepositoryPushEvent {
        event_time: MessageField::some(now),
        repository_commit: MessageField::some(commit),
        repository: MessageField::some(repo),
        ..Default::default()
    };
    EventRequest {
        event: EnumValue::from(1),
        payload: MessageField::some(EventPayload {
            payload: Some(push.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `sequence`-th push of an image to `owner/repository`: an `artifact.pushed` registry
/// event with a tag, as a registry would publish it.
pub fn artifact_push(
    owner: &str,
    repository: &str,
    sequence: u64,
) -> crate::proto::webhookd::v1::RegistryEvent {
    use crate::proto::webhookd::v1::{Actor, RegistryEvent};
    let digest = hex(&Sha256::digest(format!("{owner}/{repository}@{sequence}")));
    RegistryEvent {
        kind: "artifact.pushed".to_owned(),
        owner: owner.to_owned(),
        repository: repository.to_owned(),
        digest: format!("sha256:{digest}"),
        tags: vec![format!("v1.{sequence}.0")],
        media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
        size: 1024 + i64::try_from(sequence % 1024).unwrap_or(0),
        actor: MessageField::some(Actor {
            name: "ci-bot".to_owned(),
            id: "robot-1".to_owned(),
            client_ip: "192.0.2.10".to_owned(),
            ..Default::default()
        }),
        occur_time: MessageField::some(Timestamp::from(Utc::now())),
        registry_host: "registry.example.com".to_owned(),
        ..Default::default()
    }
}

/// The `sequence`-th push to `owner/repository`, as a GitHub-style `push` event with the
/// key fields of GitHub's payload.
pub fn github_push(
    owner: &str,
    repository: &str,
    sequence: u64,
) -> crate::proto::webhookd::v1::GitHubEvent {
    let after = hex(&Sha256::digest(format!("{owner}/{repository}#{sequence}")))[..40].to_owned();
    let before = if sequence == 0 {
        "0".repeat(40)
    } else {
        hex(&Sha256::digest(format!(
            "{owner}/{repository}#{}",
            sequence - 1
        )))[..40]
            .to_owned()
    };
    let payload = serde_json::json!({
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "created": sequence == 0,
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "compare": format!("https://github.com/{owner}/{repository}/compare/{}...{}", &before[..12], &after[..12]),
        "commits": [],
        "head_commit": null,
        "pusher": {"name": "ci-bot", "email": "ci-bot@example.com"},
        "repository": {"name": repository, "full_name": format!("{owner}/{repository}"), "owner": {"login": owner}},
        "sender": {"login": "ci-bot"},
    });
    crate::proto::webhookd::v1::GitHubEvent {
        name: "push".to_owned(),
        owner: owner.to_owned(),
        repository: repository.to_owned(),
        payload_json: payload.to_string(),
        ..Default::default()
    }
}
