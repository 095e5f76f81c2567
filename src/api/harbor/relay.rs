//! The relay in front of a real Harbor: `POST /ingest/harbor/{source}` takes the webhooks a
//! Harbor policy sends to webhookd (its Default payload or its CloudEvents one), checks their
//! `Authorization` header against the source's (`[ingest.harbor.NAME]` in the configuration
//! file: the `auth_header` the policy's target was given), and publishes each as a registry
//! event into the outbox, so that one Harbor policy fans out, durably and with retries, to
//! every webhookd subscriber of the project, in every format.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use buffa::MessageField;
use buffa_types::google::protobuf::{Struct, Timestamp};
use serde_json::{Value, json};

use super::{HarborError, json_body};
use crate::api::ApiContext;
use crate::domain::{OutboundEvent, REGISTRY_TYPES};
use crate::proto::webhookd::v1 as pb;

/// The largest webhook taken (Harbor's payloads are a few KiB; a scan overview more).
const MAX_RELAYED_BYTES: usize = 4 * 1024 * 1024;

/// Whether `a` and `b` are equal, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /ingest/harbor/{source}`.
pub(super) async fn relay(
    State(api): State<Arc<ApiContext>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::response::Response, HarborError> {
    let Some(source) = api.harbor_sources.get(&source) else {
        return Err(HarborError::not_found(format!("no relay source {source}")));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !same(given, source.secret.as_bytes()) {
        return Err(HarborError::new(StatusCode::UNAUTHORIZED, "unauthorized"));
    }
    let body = axum::body::to_bytes(body, MAX_RELAYED_BYTES)
        .await
        .map_err(|_| {
            HarborError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the payload is over {MAX_RELAYED_BYTES} bytes"),
            )
        })?;
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|e| HarborError::bad_request(format!("the payload is not JSON: {e}")))?;
    let mut event = registry_event(&payload).map_err(HarborError::bad_request)?;
    if let Some(owner) = &source.owner {
        event.owner.clone_from(owner);
    }
    let outbound = OutboundEvent::from_registry(&event, None)?;
    let stored = &api.publisher.publish_one(outbound).await?;
    tracing::info!(source = %source.name, event_id = %stored.event_id,
        deliveries = stored.deliveries_queued, kind = %event.kind, "Harbor event relayed");
    let mut response = json_body(&json!({
        "event_id": stored.event_id.to_string(),
        "deliveries_queued": stored.deliveries_queued,
        "duplicate": stored.duplicate,
    }));
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}

/// The registry event a Harbor webhook carries: its Default payload (`type`, `occur_at`,
/// `operator`, `event_data`) or its CloudEvents one (`specversion`, `type`, `time`,
/// `operator`, `data`).
fn registry_event(payload: &Value) -> Result<pb::RegistryEvent, String> {
    let cloudevents = payload.get("specversion").is_some();
    let given = payload["type"]
        .as_str()
        .ok_or("the payload has no type: send Harbor's Default or CloudEvents payload")?;
    let kind = REGISTRY_TYPES
        .iter()
        .find(|t| {
            let name = if cloudevents { t.cloudevents } else { t.harbor };
            !name.is_empty() && name == given
        })
        .map(|t| t.name)
        .ok_or_else(|| format!("{given} is not an event type of Harbor's webhooks"))?;
    let (data, occur_at) = if cloudevents {
        let time = payload["time"].as_str().and_then(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|t| t.timestamp())
        });
        (&payload["data"], time)
    } else {
        (&payload["event_data"], payload["occur_at"].as_i64())
    };
    let repository = &data["repository"];
    let resource = &data["resources"][0];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let timestamp = |seconds: i64| {
        MessageField::some(Timestamp {
            seconds,
            ..Default::default()
        })
    };
    let digest = text(&resource["digest"]);
    // Harbor sends the digest as the tag of a pull by digest.
    let tags = match resource["tag"].as_str() {
        Some(tag) if !tag.is_empty() && tag != digest => vec![tag.to_owned()],
        _ => vec![],
    };
    let structure = |v: &Value| -> Result<Option<Struct>, String> {
        if v.is_object() {
            serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| format!("event_data: {e}"))
        } else {
            Ok(None)
        }
    };
    let overview = if resource["sbom_overview"].is_object() {
        &resource["sbom_overview"]
    } else {
        &resource["scan_overview"]
    };
    let scan = match data["scan"]["scan_type"].as_str() {
        Some(scan_type) => MessageField::some(pb::Scan {
            scan_type: scan_type.to_owned(),
            overview: structure(overview)?.map_or_else(MessageField::none, MessageField::some),
            ..Default::default()
        }),
        None => MessageField::none(),
    };
    let mut custom_attributes: std::collections::HashMap<String, String> =
        data["custom_attributes"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
    let quota_details = custom_attributes.remove("Details").unwrap_or_default();
    let operator = text(&payload["operator"]);
    Ok(pb::RegistryEvent {
        kind: kind.to_owned(),
        owner: text(&repository["namespace"]),
        repository: text(&repository["name"]),
        digest,
        tags,
        actor: if operator.is_empty() {
            MessageField::none()
        } else {
            MessageField::some(pb::Actor {
                name: operator,
                ..Default::default()
            })
        },
        occur_time: occur_at.map_or_else(MessageField::none, timestamp),
        registry_host: text(&resource["resource_url"])
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned(),
        public: repository["repo_type"] == "public",
        repository_create_time: repository["date_created"]
            .as_i64()
            .map_or_else(MessageField::none, timestamp),
        scan,
        quota_details,
        replication: structure(&data["replication"])?
            .map_or_else(MessageField::none, MessageField::some),
        retention: structure(&data["retention"])?
            .map_or_else(MessageField::none, MessageField::some),
        custom_attributes: custom_attributes.into_iter().collect(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harbors_default_and_cloudevents_payloads_read_as_the_same_event() {
        let data = json!({
            "resources": [{"digest": "sha256:8a9e", "tag": "latest",
                           "resource_url": "hub.harbor.com/test-webhook/debian:latest"}],
            "repository": {"date_created": 1_586_922_308, "name": "debian",
                           "namespace": "test-webhook", "repo_full_name": "test-webhook/debian",
                           "repo_type": "private"}});
        let default = json!({"type": "PUSH_ARTIFACT", "occur_at": 1_586_922_308,
                             "operator": "admin", "event_data": data});
        let cloudevents = json!({"specversion": "1.0", "id": "x", "type": "harbor.artifact.pushed",
                                 "time": "2020-04-15T03:45:08Z", "operator": "admin",
                                 "source": "/projects/1/webhook/policies/3", "data": data});
        for payload in [default, cloudevents] {
            let event = registry_event(&payload).unwrap();
            assert_eq!(event.kind, "artifact.pushed");
            assert_eq!(
                (event.owner.as_str(), event.repository.as_str()),
                ("test-webhook", "debian")
            );
            assert_eq!(event.tags, ["latest"]);
            assert_eq!(event.registry_host, "hub.harbor.com");
            assert_eq!(event.occur_time.as_option().unwrap().seconds, 1_586_922_308);
            assert_eq!(event.actor.as_option().unwrap().name, "admin");
            assert!(!event.public);
        }
        let pulled_by_digest = json!({"type": "PULL_ARTIFACT", "occur_at": 1, "event_data": {
            "resources": [{"digest": "sha256:dd", "tag": "sha256:dd"}],
            "repository": {"name": "busybox", "namespace": "library", "repo_type": "public"}}});
        let event = registry_event(&pulled_by_digest).unwrap();
        assert!(event.tags.is_empty());
        assert!(event.public);
        assert!(
            registry_event(&json!({"type": "UPLOAD_CHART"}))
                .unwrap_err()
                .contains("UPLOAD_CHART")
        );
        assert!(registry_event(&json!({})).unwrap_err().contains("no type"));
    }
}
