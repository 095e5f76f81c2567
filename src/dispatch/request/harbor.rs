//! Harbor's delivery formats (section C.3 of the reference facts): the Default JSON payload
//! (`type`, `occur_at`, `operator`, `event_data`, written as Go's `encoding/json` writes
//! Harbor's structs) and CloudEvents 1.0 structured mode (`application/cloudevents+json`,
//! `data` being the Default payload's `event_data`). Harbor sends no signature and no
//! event header; webhookd adds only the Standard Webhooks headers (unless turned off).
//!
//! Where Harbor has no event type (tags and blobs), Harbor-format subscribers get
//! `CREATE_TAG`, `DELETE_TAG` (Harbor's own internal topic names), `PUSH_BLOB` and
//! `PULL_BLOB`. A ping is `{"type":"PING","occur_at":<now>,"operator":""}`.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{Rendered, Rendering, registry};
use crate::domain::registry_type;
use crate::proto::webhookd::v1::RegistryEvent;

/// Which of Harbor's two HTTP payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `payload_format: Default`.
    Default,
    /// `payload_format: CloudEvents`.
    CloudEvents,
}

/// Harbor's `model.Payload`.
#[derive(Serialize)]
pub struct Payload {
    #[serde(rename = "type")]
    pub event_type: String,
    pub occur_at: i64,
    pub operator: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_data: Option<EventData>,
}

/// Harbor's `model.EventData`, each field `omitempty`, in its order.
#[derive(Serialize, Default)]
pub struct EventData {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<Resource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: Option<Repository>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replication: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scan: Option<ScanType>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    custom_attributes: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Resource {
    #[serde(skip_serializing_if = "String::is_empty")]
    digest: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    tag: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    resource_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    scan_overview: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sbom_overview: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Repository {
    #[serde(skip_serializing_if = "is_zero")]
    date_created: i64,
    name: String,
    namespace: String,
    repo_full_name: String,
    repo_type: &'static str,
}

#[derive(Serialize)]
struct ScanType {
    scan_type: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Harbor's CloudEvents body, in the order Harbor's SDK writes it.
#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    requestid: String,
    id: String,
    source: String,
    #[serde(rename = "type")]
    event_type: &'a str,
    datacontenttype: &'static str,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a EventData>,
    operator: &'a str,
}

/// The Harbor request of a delivery.
pub fn render(rendering: &Rendering<'_>, shape: Shape) -> Result<Rendered, String> {
    let payload = payload(rendering)?;
    match shape {
        Shape::Default => Ok(Rendered::new(
            "application/json",
            registry::go_json(&payload),
        )),
        Shape::CloudEvents => {
            let kind = rendering.delivery.event.event_type.as_str();
            let event_type = if rendering.is_ping() {
                "harbor.ping"
            } else {
                registry_type(kind).map_or(kind, |t| t.cloudevents)
            };
            let time = DateTime::<Utc>::from_timestamp(payload.occur_at, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::Secs, true);
            let target = rendering.target;
            let event = CloudEvent {
                specversion: "1.0",
                requestid: rendering.delivery.event.id.to_string(),
                id: rendering.delivery.id.to_string(),
                source: target.harbor_source.clone().unwrap_or_else(|| {
                    format!(
                        "/projects/{}/webhook/policies/{}",
                        target.owner, target.number
                    )
                }),
                event_type,
                datacontenttype: "application/json",
                time,
                data: payload.event_data.as_ref(),
                operator: &payload.operator,
            };
            Ok(Rendered::new(
                "application/cloudevents+json",
                registry::go_json(&event),
            ))
        }
    }
}

/// Harbor's Default payload for the delivery (also what the Slack format shows).
pub fn payload(rendering: &Rendering<'_>) -> Result<Payload, String> {
    if rendering.is_ping() {
        return Ok(Payload {
            event_type: "PING".into(),
            occur_at: rendering.sent_at.timestamp(),
            operator: String::new(),
            event_data: None,
        });
    }
    let event = registry::event(rendering)?;
    let kind = rendering.delivery.event.event_type.as_str();
    let event_type = match (registry::harbor_type(kind), kind) {
        ("", "tag.created") => "CREATE_TAG".to_owned(),
        ("", "tag.deleted") => "DELETE_TAG".to_owned(),
        ("", "blob.pushed") => "PUSH_BLOB".to_owned(),
        ("", "blob.pulled") => "PULL_BLOB".to_owned(),
        ("", other) => other.to_ascii_uppercase().replace('.', "_"),
        (harbor, _) => harbor.to_owned(),
    };
    Ok(Payload {
        event_type,
        occur_at: registry::occur_time(&event, rendering).timestamp(),
        operator: registry::operator(&event),
        event_data: Some(event_data(&event, kind)),
    })
}

/// `event_data` for `kind`, as Harbor's handler for it fills it.
fn event_data(event: &RegistryEvent, kind: &str) -> EventData {
    let full_name = format!("{}/{}", event.owner, event.repository);
    let repository = Repository {
        date_created: event
            .repository_create_time
            .as_option()
            .map_or(0, |t| t.seconds),
        name: event.repository.clone(),
        namespace: event.owner.clone(),
        repo_full_name: full_name.clone(),
        repo_type: if event.public { "public" } else { "private" },
    };
    // The first tag, or the digest when there is none (a pull by digest).
    let tag = event
        .tags
        .first()
        .cloned()
        .unwrap_or_else(|| event.digest.clone());
    let resource_url = match (event.registry_host.as_str(), tag.as_str()) {
        ("", _) | (_, "") => String::new(),
        (host, reference) if reference == event.digest => format!("{host}/{full_name}@{reference}"),
        (host, reference) => format!("{host}/{full_name}:{reference}"),
    };
    let mut resource = Resource {
        digest: event.digest.clone(),
        tag,
        resource_url,
        scan_overview: None,
        sbom_overview: None,
    };
    let mut data = EventData::default();
    let mut custom: BTreeMap<String, String> = event
        .custom_attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match kind.split('.').next().unwrap_or_default() {
        "scan" => {
            let scan = event.scan.as_option();
            let scan_type = scan.map_or("vulnerability", |s| s.scan_type.as_str());
            let overview = scan
                .and_then(|s| s.overview.as_option())
                .map(registry::sorted);
            if scan_type == "sbom" {
                resource.sbom_overview = overview;
            } else {
                resource.scan_overview = overview;
            }
            data.scan = Some(ScanType {
                scan_type: if scan_type.is_empty() {
                    "vulnerability".into()
                } else {
                    scan_type.to_owned()
                },
            });
            data.resources.push(resource);
            data.repository = Some(repository);
        }
        "quota" => {
            custom.insert("Details".into(), event.quota_details.clone());
            if !event.digest.is_empty() {
                data.resources.push(resource);
            }
            data.repository = Some(repository);
        }
        "replication" => {
            data.replication = event.replication.as_option().map(registry::sorted);
        }
        "tag_retention" => {
            data.retention = event.retention.as_option().map(registry::sorted);
        }
        _ => {
            data.resources.push(resource);
            data.repository = Some(repository);
        }
    }
    data.custom_attributes = custom;
    data
}
