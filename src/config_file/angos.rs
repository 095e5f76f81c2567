//! The Angos tables of a configuration file, read and checked as Angos checks them (section
//! B.1 of the reference facts), each error naming the file, the line, the table and the key:
//!
//! ```toml
//! [event_webhook.audit]
//! url = "https://audit.example.com/events"
//! policy = "required"
//! events = ["manifest.push", "manifest.delete"]
//! token = "audit-secret"
//! timeout_ms = 3000
//! max_retries = 2
//! repository_filter = ["^production/.*"]
//!
//! [global]
//! event_webhooks = ["audit"]
//!
//! [repository."production"]
//! event_webhooks = ["audit"]
//! ```
//!
//! Angos's other keys in `[global]` and `[repository.*]` (its registry's settings) are
//! ignored, so those tables can be copied whole; an `[event_webhook.*]` table takes only
//! the keys above, so a misspelt one is an error, not a default silently applied.

use std::collections::BTreeMap;

use toml::Spanned;
use toml::de::DeValue;

use crate::domain::{
    ANGOS_KINDS, DEFAULT_REQUIRED_RETRIES, DEFAULT_TIMEOUT_MS, FileWebhook, FileWebhooks, Filters,
    MAX_RETRIES, Policy,
};

/// The table of webhook definitions.
const WEBHOOK_TABLE: &str = "event_webhook";
/// The keys an `[event_webhook.*]` table takes.
const WEBHOOK_KEYS: &[&str] = &[
    "url",
    "policy",
    "events",
    "token",
    "timeout_ms",
    "max_retries",
    "repository_filter",
];
/// The longest webhook name (it is a subscription's name and a metrics label).
const MAX_WEBHOOK_NAME: usize = 100;

type Line<'l> = &'l dyn Fn(usize) -> usize;

/// The Angos tables of a file, as found, checked together once the file is read.
#[derive(Default)]
pub(super) struct Tables<'d, 't> {
    webhooks: Option<(&'d Spanned<DeValue<'t>>, usize)>,
    global: Option<(&'d Spanned<DeValue<'t>>, usize)>,
    repositories: Option<(&'d Spanned<DeValue<'t>>, usize)>,
}

impl<'d, 't> Tables<'d, 't> {
    /// Keeps `value` if `key` is one of the Angos tables (at line `at`).
    pub(super) fn take(&mut self, key: &str, value: &'d Spanned<DeValue<'t>>, at: usize) -> bool {
        let slot = match key {
            WEBHOOK_TABLE => &mut self.webhooks,
            "global" => &mut self.global,
            "repository" => &mut self.repositories,
            _ => return false,
        };
        *slot = Some((value, at));
        true
    }

    /// The webhooks the tables define.
    ///
    /// # Errors
    /// The first problem, naming the file `name`, the line, the table and the key.
    pub(super) fn check(self, name: &str, line: Line<'_>) -> anyhow::Result<FileWebhooks> {
        let err = |at: usize, path: &str, why: &str| anyhow::anyhow!("{name}:{at}: {path}: {why}");
        let mut webhooks = BTreeMap::new();
        if let Some((value, at)) = self.webhooks {
            let DeValue::Table(tables) = value.get_ref() else {
                return Err(err(
                    at,
                    WEBHOOK_TABLE,
                    "must hold [event_webhook.NAME] tables",
                ));
            };
            for (key, table) in tables {
                let at = line(key.span().start);
                let path = format!("{WEBHOOK_TABLE}.{}", key.get_ref());
                let webhook = webhook(key.get_ref(), table, at, line).map_err(
                    |(at, key, why)| match key {
                        Some(key) => err(at, &format!("{path}.{key}"), &why),
                        None => err(at, &path, &why),
                    },
                )?;
                webhooks.insert(webhook.name.clone(), webhook);
            }
        }
        let defined = |names: Names, path: &str| -> anyhow::Result<Vec<String>> {
            names
                .into_iter()
                .map(|(webhook, at)| {
                    if webhooks.contains_key(&webhook) {
                        Ok(webhook)
                    } else {
                        Err(err(
                            at,
                            path,
                            &format!(
                                "{webhook:?} is not defined (there is no [{WEBHOOK_TABLE}.{webhook}])"
                            ),
                        ))
                    }
                })
                .collect()
        };
        let mut global = vec![];
        if let Some((value, at)) = self.global
            && let Some(names) =
                enabled(value, at, "global", line).map_err(|(a, p, w)| err(a, &p, &w))?
        {
            global = defined(names, "global.event_webhooks")?;
        }
        let mut repositories = BTreeMap::new();
        if let Some((value, at)) = self.repositories {
            let DeValue::Table(tables) = value.get_ref() else {
                return Err(err(
                    at,
                    "repository",
                    "must hold [repository.\"NAME\"] tables",
                ));
            };
            for (key, table) in tables {
                let at = line(key.span().start);
                let path = format!("repository.{:?}", key.get_ref());
                if let Some(names) =
                    enabled(table, at, &path, line).map_err(|(a, p, w)| err(a, &p, &w))?
                {
                    let names = defined(names, &format!("{path}.event_webhooks"))?;
                    repositories.insert(key.get_ref().to_string(), names);
                }
            }
        }
        Ok(FileWebhooks {
            webhooks,
            global,
            repositories,
        })
    }
}

/// A problem: its line, the key (`None`: the table itself) and why.
type Problem = (usize, Option<String>, String);
/// A problem with a list: its line, the list's path and why.
type ListProblem = (usize, String, String);
/// Names, each with its line.
type Names = Vec<(String, usize)>;

/// The webhook of table `[event_webhook.<name>]`.
fn webhook(
    name: &str,
    table: &Spanned<DeValue<'_>>,
    at: usize,
    line: Line<'_>,
) -> Result<FileWebhook, Problem> {
    if name.is_empty() || name.len() > MAX_WEBHOOK_NAME || name.chars().any(char::is_control) {
        return Err((
            at,
            None,
            format!("a webhook's name is 1 to {MAX_WEBHOOK_NAME} printable characters"),
        ));
    }
    let DeValue::Table(fields) = table.get_ref() else {
        return Err((at, None, "must be a table".into()));
    };
    let (mut url, mut policy, mut events, mut token) = (None, None, None, None);
    let (mut timeout_ms, mut max_retries, mut filter) = (None, None, vec![]);
    for (key, value) in fields {
        let at = line(key.span().start);
        let Some(&known) = WEBHOOK_KEYS.iter().find(|k| **k == key.get_ref()) else {
            let known: Vec<String> = WEBHOOK_KEYS.iter().map(|k| (*k).to_owned()).collect();
            let why = match super::closest(key.get_ref(), &known) {
                Some(near) => format!("unknown key (did you mean {near}?)"),
                None => format!("unknown key (a webhook takes {})", WEBHOOK_KEYS.join(", ")),
            };
            return Err((at, Some(key.get_ref().to_string()), why));
        };
        let problem = |why: String| (at, Some(known.to_owned()), why);
        match known {
            "url" => {
                let text = string(value).map_err(problem)?;
                match url::Url::parse(text) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => url = Some(text.to_owned()),
                    Ok(u) => {
                        return Err(problem(format!(
                            "{text:?}: the scheme is {:?}; webhooks go to http or https URLs",
                            u.scheme()
                        )));
                    }
                    Err(e) => return Err(problem(format!("{text:?} is not a valid URL: {e}"))),
                }
            }
            "policy" => {
                let text = string(value).map_err(problem)?;
                policy = Some(Policy::parse(text).ok_or_else(|| {
                    problem(format!(
                        "unknown policy {text:?} (it is required, optional or async)"
                    ))
                })?);
            }
            "events" => {
                let mut kinds = vec![];
                for kind in strings(value).map_err(problem)? {
                    let Some(&k) = ANGOS_KINDS.iter().find(|k| **k == kind) else {
                        return Err(problem(format!(
                            "unknown event kind {kind:?} (the kinds are {})",
                            ANGOS_KINDS.join(", ")
                        )));
                    };
                    if !kinds.contains(&k) {
                        kinds.push(k);
                    }
                }
                if kinds.is_empty() {
                    return Err(problem("event webhook must have at least one event".into()));
                }
                events = Some(kinds);
            }
            "token" => {
                let text = string(value).map_err(problem)?;
                if text.is_empty() {
                    return Err(problem("event webhook token must not be empty".into()));
                }
                token = Some(text.to_owned());
            }
            "timeout_ms" => {
                let n = integer(value).map_err(problem)?;
                if !(1..=3_600_000).contains(&n) {
                    return Err(problem(format!(
                        "timeout_ms={n}: a timeout is 1 to 3600000 milliseconds"
                    )));
                }
                timeout_ms = Some(n.unsigned_abs());
            }
            "max_retries" => {
                let n = integer(value).map_err(problem)?;
                if n < 0 {
                    return Err(problem(format!("max_retries={n} must not be negative")));
                }
                if n > i64::from(MAX_RETRIES) {
                    return Err(problem(format!(
                        "max_retries={n} exceeds the supported maximum of {MAX_RETRIES}"
                    )));
                }
                max_retries = Some(u32::try_from(n).unwrap_or(MAX_RETRIES));
            }
            // repository_filter
            _ => {
                let patterns: Vec<String> = strings(value)
                    .map_err(problem)?
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                Filters::parse("", &patterns).map_err(|e| problem(e.to_string()))?;
                filter = patterns;
            }
        }
    }
    let missing = |key: &str, what: &str| (at, Some(key.to_owned()), format!("missing ({what})"));
    let policy = policy.ok_or_else(|| missing("policy", "required, optional or async"))?;
    Ok(FileWebhook {
        name: name.to_owned(),
        url: url.ok_or_else(|| missing("url", "where the webhook's requests go"))?,
        policy,
        events: events.ok_or_else(|| missing("events", "the event kinds it is sent"))?,
        token,
        timeout_ms: timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
        max_retries: max_retries.unwrap_or(if policy == Policy::Required {
            DEFAULT_REQUIRED_RETRIES
        } else {
            0
        }),
        repository_filter: filter,
    })
}

/// The `event_webhooks` list of table `path` (`[global]` or `[repository."NAME"]`), with
/// each name's line; `None` when it has none.
fn enabled(
    table: &Spanned<DeValue<'_>>,
    at: usize,
    path: &str,
    line: Line<'_>,
) -> Result<Option<Names>, ListProblem> {
    let DeValue::Table(fields) = table.get_ref() else {
        return Err((at, path.to_owned(), "must be a table".into()));
    };
    let Some((key, value)) = fields.iter().find(|(k, _)| k.get_ref() == "event_webhooks") else {
        return Ok(None);
    };
    let at = line(key.span().start);
    let path = format!("{path}.event_webhooks");
    let DeValue::Array(items) = value.get_ref() else {
        return Err((at, path, "must be a list of webhook names".into()));
    };
    items
        .iter()
        .map(|item| match item.get_ref() {
            DeValue::String(s) => Ok((s.to_string(), line(item.span().start))),
            _ => Err((at, path.clone(), "must be a list of webhook names".into())),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn string<'v>(value: &'v Spanned<DeValue<'_>>) -> Result<&'v str, String> {
    match value.get_ref() {
        DeValue::String(s) => Ok(s),
        other => Err(format!("must be a string, not {}", other.type_str())),
    }
}

fn strings<'v>(value: &'v Spanned<DeValue<'_>>) -> Result<Vec<&'v str>, String> {
    let DeValue::Array(items) = value.get_ref() else {
        return Err(format!(
            "must be a list of strings, not {}",
            value.get_ref().type_str()
        ));
    };
    items.iter().map(string).collect()
}

fn integer(value: &Spanned<DeValue<'_>>) -> Result<i64, String> {
    match value.get_ref() {
        DeValue::Integer(i) => {
            i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).map_err(|e| format!("{e}"))
        }
        other => Err(format!("must be an integer, not {}", other.type_str())),
    }
}

#[cfg(test)]
mod tests {
    use crate::config_file::parse;
    use crate::domain::{FileWebhooks, Policy};

    fn serve() -> clap::Command {
        crate::config::serve_command().unwrap()
    }

    fn webhooks(text: &str) -> FileWebhooks {
        parse(text, "w.toml", &serve()).unwrap().webhooks
    }

    fn error(text: &str) -> String {
        parse(text, "w.toml", &serve()).unwrap_err().to_string()
    }

    macro_rules! seed {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/angos/", $name, ".toml"))
        };
    }

    #[test]
    fn the_seeds_examples_load_as_angos_reads_them() {
        let basic = [seed!("define"), seed!("global"), seed!("per-repository")].join("\n");
        let file = webhooks(&basic);
        let notifications = &file.webhooks["notifications"];
        assert_eq!(notifications.policy, Policy::Optional);
        assert_eq!(notifications.events, ["manifest.push", "tag.create"]);
        assert_eq!(
            (notifications.timeout_ms, notifications.max_retries),
            (5000, 0)
        );
        assert_eq!(file.global, ["notifications"]);
        assert_eq!(file.repositories["production"], ["notifications"]);

        let audit = &webhooks(seed!("required")).webhooks["audit"];
        assert_eq!(audit.policy, Policy::Required);
        assert_eq!((audit.timeout_ms, audit.max_retries), (3000, 2));
        let monitoring = &webhooks(seed!("optional")).webhooks["monitoring"];
        assert_eq!((monitoring.timeout_ms, monitoring.max_retries), (2000, 1));
        let analytics = &webhooks(seed!("async")).webhooks["analytics"];
        assert_eq!(analytics.policy, Policy::Async);
        assert_eq!(analytics.events.len(), 5);
        let secure = &webhooks(seed!("secure")).webhooks["secure"];
        assert_eq!(secure.token.as_deref(), Some("my-webhook-secret"));
        assert!(!format!("{secure:?}").contains("my-webhook-secret"));
        let only = &webhooks(seed!("production-only")).webhooks["production-only"];
        assert_eq!(only.repository_filter, ["^production/.*"]);
        // A required webhook retries 3 times unless told otherwise.
        assert_eq!(only.max_retries, 3);
        let important = &webhooks(seed!("important-repos")).webhooks["important-repos"];
        assert_eq!(important.repository_filter.len(), 3);
        let reliable = &webhooks(seed!("reliable")).webhooks["reliable"];
        assert_eq!((reliable.timeout_ms, reliable.max_retries), (5000, 3));

        let file = webhooks(seed!("multiple"));
        assert_eq!(
            file.webhooks.keys().collect::<Vec<_>>(),
            ["analytics", "audit", "slack"]
        );
        assert_eq!(file.webhooks["audit"].max_retries, 3);
        assert_eq!(file.webhooks["slack"].timeout_ms, 3000);
        assert_eq!(file.global, ["audit", "slack", "analytics"]);
        assert_eq!(file.repositories["production"], ["audit"]);
    }

    #[test]
    fn bad_tables_are_refused_naming_the_table_and_key() {
        let table = |body: &str| format!("[event_webhook.audit]\n{body}");
        let valid =
            "url = \"https://a.example/e\"\npolicy = \"required\"\nevents = [\"manifest.push\"]\n";
        assert!(webhooks(&table(valid)).webhooks.contains_key("audit"));
        let without = |key: &str| {
            table(
                &valid
                    .lines()
                    .filter(|l| !l.starts_with(key))
                    .map(|l| format!("{l}\n"))
                    .collect::<String>(),
            )
        };
        assert_eq!(
            error(&without("url")),
            "w.toml:1: event_webhook.audit.url: missing (where the webhook's requests go)"
        );
        assert!(
            error(&without("events")).starts_with("w.toml:1: event_webhook.audit.events: missing")
        );
        let cases = [
            (
                "url = \"not a url\"",
                "w.toml:2: event_webhook.audit.url: \"not a url\" is not a valid URL",
            ),
            (
                "url = \"ftp://a.example/\"",
                "w.toml:2: event_webhook.audit.url: \"ftp://a.example/\": the scheme is \"ftp\"",
            ),
            (
                "policy = \"Required\"",
                "w.toml:3: event_webhook.audit.policy: unknown policy \"Required\" (it is required, optional or async)",
            ),
            (
                "events = []",
                "w.toml:4: event_webhook.audit.events: event webhook must have at least one event",
            ),
            (
                "events = [\"push\"]",
                "w.toml:4: event_webhook.audit.events: unknown event kind \"push\"",
            ),
        ];
        for (line, expected) in cases {
            let key = line.split(' ').next().unwrap();
            let text = valid
                .lines()
                .map(|l| if l.starts_with(key) { line } else { l })
                .map(|l| format!("{l}\n"))
                .collect::<String>();
            let got = error(&table(&text));
            assert!(got.starts_with(expected), "{got}");
        }
        let extra = |line: &str| error(&table(&format!("{valid}{line}\n")));
        assert_eq!(
            extra("token = \"\""),
            "w.toml:5: event_webhook.audit.token: event webhook token must not be empty"
        );
        assert_eq!(
            extra("max_retries = 17"),
            "w.toml:5: event_webhook.audit.max_retries: max_retries=17 exceeds the supported \
             maximum of 16"
        );
        assert!(extra("repository_filter = [\"(\"]").starts_with(
            "w.toml:5: event_webhook.audit.repository_filter: [0] is not a valid regular expression"
        ));
        assert_eq!(
            extra("max_retry = 2"),
            "w.toml:5: event_webhook.audit.max_retry: unknown key (did you mean max_retries?)"
        );
        assert_eq!(
            error(&format!(
                "{}\n[global]\nevent_webhooks = [\"audit\", \"audti\"]\n",
                table(valid)
            )),
            "w.toml:7: global.event_webhooks: \"audti\" is not defined (there is no \
             [event_webhook.audti])"
        );
        assert_eq!(
            error("[repository.\"production\"]\nevent_webhooks = [\"x\"]\n"),
            "w.toml:2: repository.\"production\".event_webhooks: \"x\" is not defined (there \
             is no [event_webhook.x])"
        );
        // Angos's other settings in [global] and [repository.*] are not webhookd's concern.
        let file = webhooks(&format!(
            "{}\n[global]\nmax_concurrent_cache_jobs = 4\nevent_webhooks = [\"audit\"]\n\
             [repository.\"docker-hub\"]\nupstream = []\n",
            table(valid)
        ));
        assert_eq!(file.global, ["audit"]);
        assert!(file.repositories.is_empty());
    }
}
