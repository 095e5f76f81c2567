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
