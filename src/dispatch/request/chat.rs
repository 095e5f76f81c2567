//! Chat formats, for any family: a Slack incoming-webhook message and a Microsoft Teams
//! message (an Adaptive Card). For registry events, Slack gets Harbor's layout (section
//! C.3 of the reference facts: six `mrkdwn` sections, the last the `event_data` JSON
//! indented with tabs inside triple backticks); other events get a short text. The URL of
//! an incoming webhook is its credential: no `Authorization` header is sent.
//!
//! Harbor writes the indented JSON into its template raw, newlines, tabs and all, which
//! is not valid JSON (Slack accepts it); webhookd escapes it as a JSON string, so the
//! message Slack shows is the same and the body parses.

use serde_json::json;

use super::{Rendered, Rendering, harbor, registry};
use crate::domain::{Family, SUBSCRIPTION_DISABLED};

/// Which chat application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// Slack (Block Kit).
    Slack,
    /// Microsoft Teams (Adaptive Card).
    Teams,
}

/// The chat message of a delivery.
pub fn render(rendering: &Rendering<'_>, app: App) -> Result<Rendered, String> {
    let registry_event = rendering.delivery.event.family == Family::Registry || rendering.is_ping();
    let body = match app {
        App::Slack if registry_event => harbor_blocks(rendering)?,
        App::Slack => json!({ "text": summary(rendering)?.join("\n") }),
        App::Teams => adaptive_card(rendering)?,
    };
    Ok(Rendered::new(
        "application/json",
        serde_json::to_vec(&body).map_err(|e| e.to_string())?,
    ))
}

/// Harbor's Slack blocks.
fn harbor_blocks(rendering: &Rendering<'_>) -> Result<serde_json::Value, String> {
    let payload = harbor::payload(rendering)?;
    let data = payload
        .event_data
        .as_ref()
        .map_or_else(|| "null".to_owned(), registry::go_json_indented);
    let section =
        |text: String| json!({"type": "section", "text": {"type": "mrkdwn", "text": text}});
    Ok(json!({
        "blocks": [
            section("*Harbor webhook events*".into()),
            section(format!("*event_type:* {}", payload.event_type)),
            section(format!(
                "*occur_at:* <!date^{}^{{date}} at {{time}}|February 18th, 2014 at 6:39 AM PST>",
                payload.occur_at
            )),
            section(format!("*operator:* {}", payload.operator)),
            section("*event_data:*".into()),
            section(format!("```{data}```")),
        ]
    }))
}

/// A Teams message: the summary's first line as the title, the rest as facts.
fn adaptive_card(rendering: &Rendering<'_>) -> Result<serde_json::Value, String> {
    let lines = summary(rendering)?;
    let (title, facts) = lines
        .split_first()
        .map_or(("", &[][..]), |(t, f)| (t.as_str(), f));
    let facts: Vec<serde_json::Value> = facts
        .iter()
        .filter_map(|line| line.split_once(": "))
        .map(|(title, value)| json!({"title": title, "value": value}))
        .collect();
    Ok(json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": title, "wrap": true},
                    {"type": "FactSet", "facts": facts},
                ],
            },
        }],
    }))
}

/// A title line, then `Name: value` lines.
fn summary(rendering: &Rendering<'_>) -> Result<Vec<String>, String> {
    let target = rendering.target;
    let head = &rendering.delivery.event;
    if rendering.is_ping() {
        let name = if target.name.is_empty() {
            target.id.to_string()
        } else {
            target.name.clone()
        };
        return Ok(vec![
            format!("webhookd ping for subscription {name}"),
            format!("Owner: {}", target.owner),
        ]);
    }
    let mut lines = vec![];
    match head.family {
        Family::Registry => {
            let event = registry::event(rendering)?;
            lines.push(format!(
                "{} in {}/{}",
                head.event_type, event.owner, event.repository
            ));
            if !event.digest.is_empty() {
                lines.push(format!("Digest: {}", event.digest));
            }
            if !event.tags.is_empty() {
                lines.push(format!("Tags: {}", event.tags.join(", ")));
            }
            let operator = registry::operator(&event);
            if !operator.is_empty() {
                lines.push(format!("Operator: {operator}"));
            }
        }
        Family::GitHub => {
            let payload: serde_json::Value =
                serde_json::from_slice(&rendering.delivery.payload).unwrap_or_default();
            let repository = payload["repository"]["full_name"]
                .as_str()
                .map_or_else(|| scope(rendering), str::to_owned);
            lines.push(format!("{} in {repository}", head.event_type));
            if let Some(sender) = payload["sender"]["login"].as_str() {
                lines.push(format!("Sender: {sender}"));
            }
        }
        Family::Bsr => lines.push(format!("repository.push in {}", scope(rendering))),
        Family::Webhookd => {
            let payload: serde_json::Value =
                serde_json::from_slice(&rendering.delivery.payload).unwrap_or_default();
            lines.extend(operational(&head.event_type, &payload));
        }
    }
    lines.push(format!("Event: {}", head.id));
    Ok(lines)
}

/// The lines of an operational event (see `store::health`).
fn operational(event_type: &str, payload: &serde_json::Value) -> Vec<String> {
    let subscription = &payload["subscription"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let name = match text(&subscription["name"]) {
        n if n.is_empty() => text(&subscription["id"]),
        n => n,
    };
    let what = if event_type == SUBSCRIPTION_DISABLED {
        format!("was disabled: {}", text(&payload["reason"]))
    } else {
        "is failing".to_owned()
    };
    let mut lines = vec![format!(
        "webhookd: subscription {name} of {} {what}",
        text(&subscription["owner"])
    )];
    let failing = &payload["failing"];
    if let Some(failures) = failing["failures"].as_i64() {
        lines.push(format!(
            "Failed attempts: {failures} since {}",
            text(&failing["since"])
        ));
    }
    let last = &payload["last_response"];
    if last.is_object() {
        let code = last["code"].as_i64().unwrap_or(0);
        lines.push(format!("Last response: {code} {}", text(&last["message"])));
    }
    lines
}

/// The subscription's scope: `owner/repository`, or the owner.
fn scope(rendering: &Rendering<'_>) -> String {
    let target = rendering.target;
    if target.all_repositories {
        target.owner.clone()
    } else {
        format!("{}/{}", target.owner, target.repository)
    }
}
