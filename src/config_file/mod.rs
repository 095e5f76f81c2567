//! The configuration file (`serve --config webhookd.toml`): a `[serve]` table whose keys
//! are `serve`'s flags in snake case (`batch_size = 1000` for `--batch-size 1000`). Each
//! value becomes that flag's default, so a flag on the command line beats its environment
//! variable, which beats the file, which beats the built-in default.
//!
//! `[ingest.github.NAME]` tables configure the relay's sources (`POST /ingest/github/NAME`:
//! webhooks a GitHub instance sends to webhookd): `secret`, the HMAC key of their
//! `X-Hub-Signature-256`, and optionally `owner`, the webhookd owner their events are
//! published under (by default the payload's repository owner).
//!
//! `[event_webhook.NAME]`, `[global]` and `[repository."NAME"]` tables define webhooks the
//! Angos way (see `angos` and [`crate::domain::FileWebhooks`]).
//!
//! Every key and value is checked before anything starts, each value by its flag's own
//! parser: an unknown key, a value of the wrong type or one its flag refuses is an error
//! naming the file, the line and the key.

use std::path::Path;

use anyhow::Context as _;
use toml::de::{DeTable, DeValue};

use crate::domain::FileWebhooks;

mod angos;

/// The table of `serve`'s settings.
pub const SERVE_TABLE: &str = "serve";
/// The table of the relay's sources.
pub const INGEST_TABLE: &str = "ingest";
/// The flags a file cannot set: the one that names the file.
const NOT_IN_FILE: &[&str] = &["config", "help", "version"];

/// One setting read from a file: the flag's id and its value as the command line would
/// spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The flag's id (clap's, the field name).
    pub id: String,
    /// Its value.
    pub value: String,
}

/// A relay source (`[ingest.github.NAME]`, `[ingest.harbor.NAME]`, `[ingest.angos.NAME]`).
#[derive(Clone, PartialEq, Eq)]
pub struct IngestSource {
    /// Its name, the last part of its path.
    pub name: String,
    /// What authenticates its webhooks: the HMAC key they are signed with (GitHub's
    /// `secret`, Angos's `token`), or the `Authorization` header they carry (Harbor's
    /// `auth_header`). Never logged.
    pub secret: String,
    /// The owner its events are published under; `None`: the payload's repository owner.
    pub owner: Option<String>,
}

impl std::fmt::Debug for IngestSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestSource")
            .field("name", &self.name)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// What a file holds: `serve`'s settings and the relay's sources.
#[derive(Debug, Clone, Default)]
pub struct FileConfig {
    /// `[serve]`.
    pub settings: Vec<Setting>,
    /// `[ingest.github.*]`.
    pub github_sources: Vec<IngestSource>,
    /// `[ingest.harbor.*]`.
    pub harbor_sources: Vec<IngestSource>,
    /// `[ingest.angos.*]`.
    pub angos_sources: Vec<IngestSource>,
    /// `[event_webhook.*]`, `[global]`, `[repository.*]`.
    pub webhooks: FileWebhooks,
}

/// Reads and checks the file at `path` against `serve`'s flags; its settings.
///
/// # Errors
/// When the file cannot be read or is not TOML, or holds a key or value `serve` does not
/// take: the message names the file, the line and the key.
pub fn load(path: &Path, serve: &clap::Command) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    parse(&text, &path.display().to_string(), serve)
}

/// Checks `text` (the file `name`) against `serve`'s flags; its settings.
///
/// # Errors
/// See [`load`].
pub fn parse(text: &str, name: &str, serve: &clap::Command) -> anyhow::Result<FileConfig> {
    let document = DeTable::parse(text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let mut settings = vec![];
    let (mut github_sources, mut harbor_sources, mut angos_sources) = (vec![], vec![], vec![]);
    let mut angos = angos::Tables::default();
    for (key, value) in document.get_ref() {
        let at = line(key.span().start);
        if key.get_ref() == INGEST_TABLE {
            (github_sources, harbor_sources, angos_sources) = ingest(value.get_ref(), name, &line)?;
            continue;
        }
        if angos.take(key.get_ref(), value, at) {
            continue;
        }
        if key.get_ref() != SERVE_TABLE {
            anyhow::bail!(
                "{name}:{at}: {:?} is not a setting webhookd knows: serve's settings go in a \
                 [{SERVE_TABLE}] table, the relay's sources in [{INGEST_TABLE}.github.NAME], \
                 webhooks in [event_webhook.NAME]",
                key.get_ref()
            );
        }
        let DeValue::Table(table) = value.get_ref() else {
            anyhow::bail!("{name}:{at}: {SERVE_TABLE} must be a table ([{SERVE_TABLE}])");
        };
        for (key, value) in table {
            let at = line(key.span().start);
            let setting = setting(serve, key.get_ref(), value.get_ref()).map_err(|why| {
                anyhow::anyhow!("{name}:{at}: {SERVE_TABLE}.{}: {why}", key.get_ref())
            })?;
            settings.push(setting);
        }
    }
    Ok(FileConfig {
        settings,
        github_sources,
        harbor_sources,
        angos_sources,
        webhooks: angos.check(name, &line)?,
    })
}

/// The GitHub, Harbor and Angos sources.
type Sources = (Vec<IngestSource>, Vec<IngestSource>, Vec<IngestSource>);

/// The sources of an `[ingest]` table: `[ingest.github.NAME]` tables with `secret`,
/// `[ingest.harbor.NAME]` tables with `auth_header` and `[ingest.angos.NAME]` tables with
/// `token`, each optionally with `owner`.
fn ingest(
    value: &DeValue<'_>,
    name: &str,
    line: &dyn Fn(usize) -> usize,
) -> anyhow::Result<Sources> {
    let DeValue::Table(kinds) = value else {
        anyhow::bail!("{name}: {INGEST_TABLE} must be a table ([{INGEST_TABLE}.github.NAME])");
    };
    let (mut github, mut harbor, mut angos) = (vec![], vec![], vec![]);
    for (kind, sources_of_kind) in kinds {
        let at = line(kind.span().start);
        let (sources, field, what) = match kind.get_ref().as_ref() {
            "github" => (
                &mut github,
                "secret",
                "the secret of the GitHub hook that sends here",
            ),
            "harbor" => (
                &mut harbor,
                "auth_header",
                "the auth_header of the Harbor policy target that sends here",
            ),
            "angos" => (
                &mut angos,
                "token",
                "the token of the Angos event webhook that sends here",
            ),
            other => anyhow::bail!(
                "{name}:{at}: {INGEST_TABLE}.{other}: unknown kind of source (webhookd relays \
                 github, harbor and angos)"
            ),
        };
        let kind = kind.get_ref();
        let DeValue::Table(named) = sources_of_kind.get_ref() else {
            anyhow::bail!(
                "{name}:{at}: {INGEST_TABLE}.{kind} must hold [{INGEST_TABLE}.{kind}.NAME] tables"
            );
        };
        for (source, fields) in named {
            let at = line(source.span().start);
            let path = format!("{INGEST_TABLE}.{kind}.{}", source.get_ref());
            let valid_name = !source.get_ref().is_empty()
                && source.get_ref().len() <= 64
                && source
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid_name {
                anyhow::bail!(
                    "{name}:{at}: {path}: a source's name is 1 to 64 of a-z, 0-9 and '-' (it is \
                     the last part of its URL)"
                );
            }
            let DeValue::Table(fields) = fields.get_ref() else {
                anyhow::bail!("{name}:{at}: {path} must be a table");
            };
            let (mut secret, mut owner) = (None, None);
            for (key, value) in fields {
                let at = line(key.span().start);
                let DeValue::String(text) = value.get_ref() else {
                    anyhow::bail!("{name}:{at}: {path}.{}: must be a string", key.get_ref());
                };
                match key.get_ref().as_ref() {
                    k if k == field && !text.is_empty() => secret = Some(text.to_string()),
                    k if k == field => {
                        anyhow::bail!("{name}:{at}: {path}.{field}: must not be empty")
                    }
                    "owner" => owner = Some(text.to_string()),
                    other => anyhow::bail!(
                        "{name}:{at}: {path}.{other}: unknown key (a source takes {field} and owner)"
                    ),
                }
            }
            let Some(secret) = secret else {
                anyhow::bail!("{name}:{at}: {path}.{field}: missing ({what})");
            };
            sources.push(IngestSource {
                name: source.get_ref().to_string(),
                secret,
                owner,
            });
        }
    }
    Ok((github, harbor, angos))
}

/// The setting of key `key` = `value`, checked by its flag's parser.
fn setting(serve: &clap::Command, key: &str, value: &DeValue<'_>) -> Result<Setting, String> {
    let flag = key.replace('_', "-");
    let arg = serve
        .get_arguments()
        .find(|a| a.get_long() == Some(flag.as_str()) && !NOT_IN_FILE.contains(&flag.as_str()))
        .ok_or_else(|| {
            let known: Vec<String> = serve
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|l| !NOT_IN_FILE.contains(l))
                .map(|l| l.replace('-', "_"))
                .collect();
            match closest(key, &known) {
                Some(near) => format!("unknown key (did you mean {near}?)"),
                None => "unknown key".to_owned(),
            }
        })?;
    let text = match value {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(i) => i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
            .map_err(|e| format!("{e}"))?
            .to_string(),
        DeValue::Float(f) => f.as_str().replace('_', ""),
        DeValue::Boolean(b) => b.to_string(),
        other => {
            return Err(format!(
                "expected a string, a number or a boolean, not {}",
                other.type_str()
            ));
        }
    };
    check_value(serve, arg.get_id().as_str(), &text)?;
    Ok(Setting {
        id: arg.get_id().to_string(),
        value: text,
    })
}

/// Whether flag `id` of `serve` takes `text`, checked by clap exactly as the command line's
/// value would be: `serve` parsed with `text` as the flag's default and no environment.
fn check_value(serve: &clap::Command, id: &str, text: &str) -> Result<(), String> {
    let probe = serve
        .clone()
        .no_binary_name(true)
        .mut_args(|arg| arg.env(None::<&str>))
        .mut_arg(id, |arg| arg.default_value(text.to_owned()));
    probe
        .try_get_matches_from(std::iter::empty::<&str>())
        .map(drop)
        .map_err(|e| {
            // "error: invalid value 'x' for '--flag <FLAG>': why": the why.
            let message = e.to_string();
            let first = message.lines().next().unwrap_or("").trim();
            let why = first.rsplit_once("': ").map_or(first, |(_, why)| why);
            format!("invalid value {text:?}: {why}")
        })
}

/// The name in `known` nearest to `key` (by edit distance), if one is near.
fn closest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (distance(key, k), k))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `cli` with each of `settings` as its `serve` flag's default.
pub fn apply(cli: clap::Command, settings: &[Setting]) -> clap::Command {
    cli.mut_subcommand("serve", |serve| {
        settings.iter().fold(serve, |serve, s| {
            serve.mut_arg(&s.id, |arg| arg.default_value(s.value.clone()))
        })
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;
    use crate::config::Cli;

    fn serve() -> clap::Command {
        Cli::command().find_subcommand("serve").unwrap().clone()
    }

    #[test]
    fn keys_are_flags_in_snake_case_and_values_their_flags_values() {
        let text = "[serve]\nbatch_size = 1_000\ndrain = true\npoll_interval = \"2s\"\n";
        let settings = parse(text, "w.toml", &serve()).unwrap().settings;
        let pairs: Vec<(&str, &str)> = settings
            .iter()
            .map(|s| (s.id.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("batch_size", "1000"),
                ("drain", "true"),
                ("poll_interval", "2s")
            ]
        );
    }

    #[test]
    fn relay_sources_are_read_and_their_errors_name_the_key() {
        let text = "[ingest.github.ghes]\nsecret = \"s\"\nowner = \"octo-org\"\n";
        let file = parse(text, "w.toml", &serve()).unwrap();
        assert_eq!(file.github_sources.len(), 1);
        assert_eq!(file.github_sources[0].name, "ghes");
        assert_eq!(file.github_sources[0].owner.as_deref(), Some("octo-org"));
        // The secret is never shown.
        assert!(!format!("{:?}", file.github_sources[0]).contains("\"s\""));
        let error = |text: &str| parse(text, "w.toml", &serve()).unwrap_err().to_string();
        assert_eq!(
            error("[ingest.github.ghes]\nowner = \"o\"\n"),
            "w.toml:1: ingest.github.ghes.secret: missing (the secret of the GitHub hook that \
             sends here)"
        );
        assert_eq!(
            error("[ingest.github.ghes]\nsecret = \"s\"\ntoken = \"t\"\n"),
            "w.toml:3: ingest.github.ghes.token: unknown key (a source takes secret and owner)"
        );
        assert!(error("[ingest.gitlab.x]\nsecret = \"s\"\n").contains("unknown kind"));
        let file = parse(
            "[ingest.harbor.core]\nauth_header = \"Bearer h\"\n",
            "w.toml",
            &serve(),
        )
        .unwrap();
        assert_eq!(file.harbor_sources[0].secret, "Bearer h");
        assert_eq!(
            error("[ingest.harbor.core]\nsecret = \"s\"\n"),
            "w.toml:2: ingest.harbor.core.secret: unknown key (a source takes auth_header and \
             owner)"
        );
        assert!(error("[ingest.github.Bad_Name]\nsecret = \"s\"\n").contains("a-z, 0-9"));
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let error = |text: &str| parse(text, "w.toml", &serve()).unwrap_err().to_string();
        assert_eq!(
            error("[serve]\n\nbatch_sise = 3\n"),
            "w.toml:3: serve.batch_sise: unknown key (did you mean batch_size?)"
        );
        let bad = error("[serve]\nbatch_size = 0\n");
        assert!(
            bad.starts_with("w.toml:2: serve.batch_size: invalid value \"0\""),
            "{bad}"
        );
        let bad = error("[serve]\npoll_interval = [1]\n");
        assert!(
            bad.contains("expected a string, a number or a boolean"),
            "{bad}"
        );
        let bad = error("listen = \"x\"\n");
        assert!(
            bad.starts_with("w.toml:1: \"listen\" is not a setting"),
            "{bad}"
        );
        let bad = error("[serve]\nconfig = \"other.toml\"\n");
        assert!(bad.contains("unknown key"), "{bad}");
        let bad = error("[serve\n");
        assert!(bad.starts_with("w.toml: TOML parse error"), "{bad}");
    }
}
