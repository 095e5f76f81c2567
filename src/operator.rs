//! The operator's commands against a running server (`webhookd subscriptions ...`,
//! `webhookd deliveries ...`): each one Connect JSON call of the native API with the
//! operator's token, printed as a table, or as the server's JSON with `--json`. Nothing here
//! touches the database: what a command may see and change is what its token may.

use std::fmt::Write as _;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::config::{DeliveriesCommand, OperatorArgs, SubscriptionsCommand};

const SUBSCRIPTIONS: &str = "webhookd.v1.SubscriptionService";
const DELIVERIES: &str = "webhookd.v1.DeliveryService";

/// A client of one server with one token.
struct Client {
    http: reqwest::Client,
    server: String,
    token: String,
}

impl Client {
    fn new(args: &OperatorArgs) -> anyhow::Result<Self> {
        if args.token.is_empty() {
            anyhow::bail!("a token is needed: set WEBHOOKD_TOKEN (or pass --token)");
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
            server: args.server.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
        })
    }

    /// Calls `service/method` with `body`; the answer, or the server's error as an error.
    async fn call(&self, service: &str, method: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}/{service}/{method}", self.server);
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("connect-protocol-version", "1")
            .bearer_auth(&self.token)
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let text = response.text().await.context("reading the answer")?;
        let answer: Value = serde_json::from_str(&text)
            .with_context(|| format!("{url} answered {status} with no JSON: {text}"))?;
        if !status.is_success() {
            anyhow::bail!(
                "{}: {}",
                answer["code"].as_str().unwrap_or("unknown"),
                answer["message"].as_str().unwrap_or(&text)
            );
        }
        Ok(answer)
    }
}

impl Client {
    /// Calls DeliveryService/TailDeliveries with `body` (Connect's streaming protocol, JSON
    /// messages) and prints each message as it comes, as a line or (`json`) as its JSON,
    /// until the server ends the stream (with its error, if any).
    async fn tail(&self, body: Value, json: bool) -> anyhow::Result<()> {
        use std::io::Write as _;
        let url = format!("{}/{DELIVERIES}/TailDeliveries", self.server);
        let frame = envelope(body.to_string().as_bytes())?;
        // No overall timeout: the stream lasts as long as the operator follows it.
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()?;
        let mut response = http
            .post(&url)
            .header("content-type", "application/connect+json")
            .header("connect-protocol-version", "1")
            .bearer_auth(&self.token)
            .body(frame)
            .send()
            .await
            .with_context(|| format!("calling {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            anyhow::bail!("{url} answered {status}: {text}");
        }
        eprintln!("following; stop with Ctrl-C");
        let mut buffer: Vec<u8> = Vec::new();
        let mut stdout = std::io::stdout();
        while let Some(chunk) = response.chunk().await.context("reading the stream")? {
            buffer.extend_from_slice(&chunk);
            while let Some((flags, message)) = next_envelope(&mut buffer)? {
                let value: Value =
                    serde_json::from_slice(&message).context("the server sent no JSON")?;
                if flags & 0x02 != 0 {
                    // The end of the stream: its error, if it ended with one.
                    if let Some(error) = value.get("error") {
                        anyhow::bail!(
                            "{}: {}",
                            error["code"].as_str().unwrap_or("unknown"),
                            error["message"].as_str().unwrap_or("")
                        );
                    }
                    return Ok(());
                }
                let line = if json {
                    value.to_string()
                } else {
                    tail_line(&value)
                };
                writeln!(stdout, "{line}")?;
                stdout.flush()?;
            }
        }
        anyhow::bail!("the server closed the stream without ending it")
    }
}

/// `message` in a Connect streaming envelope (no flags, uncompressed): what a client sends
/// as a server-streaming call's request body.
///
/// # Errors
/// A message over 4 GiB.
pub fn envelope(message: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
    frame.extend_from_slice(message);
    Ok(frame)
}

/// Takes one whole Connect envelope (flags, message) off the front of `buffer`, if it holds
/// one (flag 0x02: the end of the stream).
///
/// # Errors
/// A compressed message (none is asked for).
pub fn next_envelope(buffer: &mut Vec<u8>) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
    if buffer.len() < 5 {
        return Ok(None);
    }
    let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if buffer[0] & 0x01 != 0 {
        anyhow::bail!("the server compressed a message unasked");
    }
    if buffer.len() < 5 + length {
        return Ok(None);
    }
    let flags = buffer[0];
    let message = buffer[5..5 + length].to_vec();
    buffer.drain(..5 + length);
    Ok(Some((flags, message)))
}

/// Runs `webhookd subscriptions ...`; the text to print.
///
/// # Errors
/// The server's error (its Connect code and message), or why it could not be reached.
pub async fn subscriptions(
    args: &OperatorArgs,
    command: &SubscriptionsCommand,
) -> anyhow::Result<String> {
    let client = Client::new(args)?;
    let (method, body) = match command {
        SubscriptionsCommand::List {
            owner,
            repository,
            state,
        } => {
            let mut body = json!({"owner": owner, "pageSize": 100});
            if let Some(repository) = repository {
                body["repository"] = json!(repository);
            }
            if let Some(state) = state {
                body["state"] = json!(format!("SUBSCRIPTION_STATE_{}", state.to_uppercase()));
            }
            ("ListSubscriptions", body)
        }
        SubscriptionsCommand::Get { id } => ("GetSubscription", json!({"subscriptionId": id})),
        SubscriptionsCommand::Pause { id, reason } => (
            "PauseSubscription",
            json!({"subscriptionId": id, "reason": reason.clone().unwrap_or_default()}),
        ),
        SubscriptionsCommand::Resume { id } => {
            ("ResumeSubscription", json!({"subscriptionId": id}))
        }
        SubscriptionsCommand::Enable { id } => {
            ("UpdateSubscription", state_change(id, "ACTIVE", None))
        }
        SubscriptionsCommand::Disable { id, reason } => (
            "UpdateSubscription",
            state_change(id, "DISABLED", reason.as_deref()),
        ),
    };
    let answer = client.call(SUBSCRIPTIONS, method, body).await?;
    if args.json {
        return Ok(pretty(&answer));
    }
    Ok(match command {
        SubscriptionsCommand::List { .. } => subscription_table(
            answer["subscriptions"]
                .as_array()
                .map_or(&[][..], Vec::as_slice),
        ),
        _ => subscription_details(&answer["subscription"]),
    })
}

/// An UpdateSubscription body that sets only the state.
fn state_change(id: &str, state: &str, reason: Option<&str>) -> Value {
    json!({
        "subscription": {
            "subscriptionId": id,
            "state": format!("SUBSCRIPTION_STATE_{state}"),
            "stateReason": reason.unwrap_or_default(),
        },
        "updateMask": "state",
    })
}

/// Runs `webhookd deliveries ...`; the text to print.
///
/// # Errors
/// The server's error (its Connect code and message), or why it could not be reached.
pub async fn deliveries(
    args: &OperatorArgs,
    command: &DeliveriesCommand,
) -> anyhow::Result<String> {
    let client = Client::new(args)?;
    let (method, body) = match command {
        DeliveriesCommand::Tail {
            owner,
            subscription,
        } => {
            let body =
                json!({"owner": owner, "subscriptionId": subscription.as_deref().unwrap_or("")});
            client.tail(body, args.json).await?;
            return Ok(String::new());
        }
        DeliveriesCommand::List {
            subscription,
            state,
            event_type,
            since,
            until,
        } => {
            let mut body = json!({"webhookId": subscription, "pageSize": 100});
            if let Some(state) = state {
                body["state"] = json!(format!("DELIVERY_STATE_{}", state.to_uppercase()));
            }
            if let Some(event_type) = event_type {
                body["eventType"] = json!(event_type);
            }
            if let Some(since) = since {
                body["since"] = json!(since);
            }
            if let Some(until) = until {
                body["until"] = json!(until);
            }
            ("ListDeliveries", body)
        }
        DeliveriesCommand::Get { id } => ("GetDelivery", json!({"deliveryId": id})),
        DeliveriesCommand::Redeliver { id } => ("Redeliver", json!({"deliveryId": id})),
        DeliveriesCommand::Recover {
            subscription,
            since,
            until,
        } => {
            let mut body = json!({"subscriptionId": subscription, "since": since});
            if let Some(until) = until {
                body["until"] = json!(until);
            }
            ("RecoverDeliveries", body)
        }
    };
    let answer = client.call(DELIVERIES, method, body).await?;
    if args.json {
        return Ok(pretty(&answer));
    }
    Ok(match command {
        DeliveriesCommand::List { .. } => delivery_table(
            answer["deliveries"]
                .as_array()
                .map_or(&[][..], Vec::as_slice),
        ),
        DeliveriesCommand::Get { .. } => delivery_details(&answer),
        DeliveriesCommand::Redeliver { .. } => format!(
            "delivery {} queued again\n",
            answer["delivery"]["deliveryId"].as_str().unwrap_or("")
        ),
        DeliveriesCommand::Recover { .. } => format!(
            "{} failed deliveries queued again\n",
            answer["queued"].as_str().unwrap_or("0")
        ),
        DeliveriesCommand::Tail { .. } => String::new(),
    })
}

/// One line of `deliveries tail`: an attempt, or a notice of attempts not sent.
fn tail_line(message: &Value) -> String {
    if message["interrupted"].as_bool() == Some(true) {
        return "! interrupted: the server lost its view of recorded attempts for a moment; \
                some may be missing here (deliveries list has them all)"
            .to_owned();
    }
    // An int64 is a string in JSON; absent when 0.
    if let Some(missed) = message.get("missed") {
        return format!(
            "! {} attempts missed: this reader fell behind",
            cell(missed)
        );
    }
    let (d, a) = (&message["delivery"], &message["attempt"]);
    let outcome = match a["httpStatus"].as_i64() {
        Some(status) => format!("HTTP {status}"),
        None => format!("no answer: {}", cell(&a["error"])),
    };
    format!(
        "{}  {}  {}  {}  attempt {}  {}  {}  {}",
        cell(&a["startTime"]),
        cell(&d["webhookId"]),
        cell(&d["deliveryId"]),
        cell(&d["eventType"]),
        a["number"].as_i64().unwrap_or(0),
        outcome,
        cell(&a["duration"]),
        short(&d["state"], "DELIVERY_STATE_"),
    )
}

fn pretty(answer: &Value) -> String {
    let mut text = serde_json::to_string_pretty(answer).unwrap_or_default();
    text.push('\n');
    text
}

/// A JSON field as table text: strings as they are, the rest as JSON, absent as `-`.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An enum's name without its prefix, in lower case (`SUBSCRIPTION_STATE_ACTIVE`: active).
fn short(value: &Value, prefix: &str) -> String {
    value.as_str().map_or_else(
        || "-".to_owned(),
        |s| s.trim_start_matches(prefix).to_lowercase(),
    )
}

/// Rows as a table, each column as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    let mut line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(text, "{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    text
}

fn subscription_table(subscriptions: &[Value]) -> String {
    let rows: Vec<Vec<String>> = subscriptions
        .iter()
        .map(|s| {
            let last = &s["lastResponse"];
            vec![
                cell(&s["subscriptionId"]),
                cell(&s["name"]),
                short(&s["state"], "SUBSCRIPTION_STATE_"),
                short(&s["family"], "EVENT_FAMILY_"),
                short(&s["format"], "FORMAT_"),
                cell(&s["url"]),
                match last["code"].as_i64() {
                    Some(code) => format!("{code} {}", cell(&last["status"])),
                    None => cell(&last["status"]),
                },
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "STATE",
            "FAMILY",
            "FORMAT",
            "URL",
            "LAST RESPONSE",
        ],
        &rows,
    )
}

fn subscription_details(s: &Value) -> String {
    let mut text = String::new();
    let mut field = |name: &str, value: String| {
        let _ = writeln!(text, "{name:<16}{value}");
    };
    field("id", cell(&s["subscriptionId"]));
    field("name", cell(&s["name"]));
    field("owner", cell(&s["owner"]));
    field("repository", cell(&s["repository"]));
    field("family", short(&s["family"], "EVENT_FAMILY_"));
    field("format", short(&s["format"], "FORMAT_"));
    field("url", cell(&s["url"]));
    let state = short(&s["state"], "SUBSCRIPTION_STATE_");
    field(
        "state",
        match s["stateReason"].as_str() {
            Some(reason) if !reason.is_empty() => format!("{state} ({reason})"),
            _ => state,
        },
    );
    let types: Vec<String> = s["eventTypes"]
        .as_array()
        .map(|t| t.iter().map(cell).collect())
        .unwrap_or_default();
    field(
        "event types",
        if types.is_empty() {
            "all".to_owned()
        } else {
            types.join(", ")
        },
    );
    let last = &s["lastResponse"];
    field(
        "last response",
        format!(
            "{} {} {}",
            cell(&last["status"]),
            last["code"]
                .as_i64()
                .map_or_else(String::new, |c| c.to_string()),
            last["message"].as_str().unwrap_or("")
        )
        .trim_end()
        .to_owned(),
    );
    let failing = &s["failing"];
    if failing.is_object() {
        // ProtoJSON writes an int64 as a string.
        field(
            "failing",
            format!(
                "{} failed attempts since {}",
                cell(&failing["failures"]),
                cell(&failing["since"])
            ),
        );
    }
    for trigger in s["lastTriggers"].as_array().into_iter().flatten() {
        field(
            "last trigger",
            format!(
                "{} at {}",
                cell(&trigger["eventType"]),
                cell(&trigger["lastTriggerTime"])
            ),
        );
    }
    text
}

fn delivery_table(deliveries: &[Value]) -> String {
    let rows: Vec<Vec<String>> = deliveries
        .iter()
        .map(|d| {
            vec![
                cell(&d["deliveryId"]),
                short(&d["state"], "DELIVERY_STATE_"),
                cell(&d["eventType"]),
                d["attemptCount"].as_i64().unwrap_or(0).to_string(),
                d["lastHttpStatus"]
                    .as_i64()
                    .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                cell(&d["createTime"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "STATE",
            "EVENT TYPE",
            "ATTEMPTS",
            "LAST STATUS",
            "QUEUED",
        ],
        &rows,
    )
}

fn delivery_details(answer: &Value) -> String {
    let d = &answer["delivery"];
    let mut text = format!(
        "delivery {}: {}, event {} ({}), {} attempts, queued {}\n",
        cell(&d["deliveryId"]),
        short(&d["state"], "DELIVERY_STATE_"),
        cell(&d["eventId"]),
        cell(&d["eventType"]),
        d["attemptCount"].as_i64().unwrap_or(0),
        cell(&d["createTime"]),
    );
    let headers = |text: &mut String, list: &Value| {
        for h in list.as_array().into_iter().flatten() {
            let _ = writeln!(
                text,
                "    {}: {}",
                cell(&h["name"]),
                h["value"].as_str().unwrap_or("")
            );
        }
    };
    for a in answer["attempts"].as_array().into_iter().flatten() {
        let _ = writeln!(
            text,
            "\nattempt {} at {} ({}): {}",
            a["number"].as_i64().unwrap_or(0),
            cell(&a["startTime"]),
            cell(&a["duration"]),
            match a["httpStatus"].as_i64() {
                Some(status) => format!("HTTP {status}"),
                None => format!("no answer: {}", cell(&a["error"])),
            }
        );
        let _ = writeln!(text, "  request ({} bytes):", cell(&a["requestBodySize"]));
        headers(&mut text, &a["requestHeaders"]);
        let _ = writeln!(text, "    {}", body(&a["requestBody"]));
        if a["httpStatus"].as_i64().is_some() {
            let _ = writeln!(text, "  response:");
            headers(&mut text, &a["responseHeaders"]);
            let _ = writeln!(text, "    {}", body(&a["responseBody"]));
        }
    }
    text
}

/// A base64 body as text (bytes that are not UTF-8 as U+FFFD).
fn body(value: &Value) -> String {
    use base64::Engine as _;
    let bytes = value
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}
