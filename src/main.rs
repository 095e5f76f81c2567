//! The `webhookd` binary: parse the command line, set up logging, run the command.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser as _};
use tracing_subscriber::EnvFilter;
use webhookd::config::{
    Cli, Command, ConfigCommand, ListenArgs, PublishArgs, ServeArgs, TokenCommand, TokenCreateArgs,
};
use webhookd::database::{Database, DatabaseArgs};
use webhookd::domain::{ApiToken, OwnerName, TokenScope};
use webhookd::{app, config_file, operator, store};

/// mimalloc instead of glibc's malloc: `perf` put glibc's malloc and free at ~15% of
/// `serve`'s CPU during delivery. Its v2 line, which returns freed memory after 10 ms rather
/// than v3's 1 s: peak RSS ~111 MB instead of ~145 MB over 100,000 deliveries, for a few
/// percent of throughput (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The command line, with `serve --config FILE`'s settings as its flags' defaults (so that
/// flags and environment variables override the file).
fn parse_cli() -> anyhow::Result<Cli> {
    let cli = Cli::parse();
    let Command::Serve(args) = &cli.command else {
        return Ok(cli);
    };
    let Some(path) = &args.config else {
        return Ok(cli);
    };
    let file = config_file::load(path, &webhookd::config::serve_command()?)?;
    let matches = config_file::apply(Cli::command(), &file.settings).get_matches();
    Ok(Cli::from_arg_matches(&matches)?)
}

/// `webhookd config check FILE`.
fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let config = config_file::load(file, &webhookd::config::serve_command()?)?;
    println!("{}: ok, {} settings", file.display(), config.settings.len());
    for setting in config.settings {
        println!("  {} = {}", setting.id, setting.value);
    }
    for source in config.github_sources {
        let owner = source
            .owner
            .as_deref()
            .unwrap_or("the payload's repository owner");
        println!("  relay source github/{} (owner: {owner})", source.name);
    }
    for source in config.harbor_sources {
        let owner = source
            .owner
            .as_deref()
            .unwrap_or("the payload's repository namespace");
        println!("  relay source harbor/{} (owner: {owner})", source.name);
    }
    for source in config.angos_sources {
        let owner = source
            .owner
            .as_deref()
            .unwrap_or("the payload's repository or namespace");
        println!("  relay source angos/{} (owner: {owner})", source.name);
    }
    let webhooks = &config.webhooks;
    for (name, webhook) in &webhooks.webhooks {
        let mut enabled: Vec<String> = Vec::new();
        if webhooks.global.contains(name) {
            enabled.push("globally".into());
        }
        for (repository, names) in &webhooks.repositories {
            if names.contains(name) {
                enabled.push(format!("repository {repository:?}"));
            }
        }
        let enabled = if enabled.is_empty() {
            "enabled nowhere".to_owned()
        } else {
            format!("enabled {}", enabled.join(", "))
        };
        println!(
            "  event webhook {name}: {} {}, {} ({}), timeout {} ms, {} retries, {enabled}",
            webhook.policy.as_str(),
            webhook.url,
            webhook.events.join(", "),
            if webhook.token.is_some() {
                "signed"
            } else {
                "unsigned"
            },
            webhook.timeout_ms,
            webhook.max_retries,
        );
    }
    Ok(())
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Config(ConfigCommand::Check(args)) => check_config(&args.file),
        Command::Subscriptions(args) => {
            print!(
                "{}",
                operator::subscriptions(&args.operator, &args.command).await?
            );
            Ok(())
        }
        Command::Deliveries(args) => {
            print!(
                "{}",
                operator::deliveries(&args.operator, &args.command).await?
            );
            Ok(())
        }
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(args) => {
            let db = Database::open(&args, 1).await?;
            eprintln!("migrations applied");
            db.close().await
        }
        Command::Publish(args) => publish(args).await,
        Command::Listen(args) => listen(args).await,
        Command::Token(TokenCommand::Create(args)) => create_token(args).await,
        Command::Token(TokenCommand::List(args)) => list_tokens(&args).await,
        Command::Token(TokenCommand::Revoke(args)) => {
            let db = Database::open(&args.database, 1).await?;
            let revoked = store::tokens::revoke(&mut *db.pool.acquire().await?, args.id).await;
            db.close().await?;
            if !revoked? {
                anyhow::bail!("no live token has id {}", args.id);
            }
            eprintln!("token {} revoked", args.id);
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    app::check_settings(&args)?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let db = Database::open(&args.database, args.max_db_connections).await?;
    let result = app::run(&args, db.pool.clone(), listener, shutdown_signal()).await;
    db.close().await?;
    result
}

async fn create_token(args: TokenCreateArgs) -> anyhow::Result<()> {
    let owners = args
        .owners
        .iter()
        // An owner of any family: a BSR owner, a registry project, a GitHub organization.
        .map(|o| OwnerName::parse_any("owner_name", o).map(|o| o.as_str().to_owned()))
        .collect::<Result<Vec<_>, _>>()?;
    let scope = TokenScope {
        owners,
        all_owners: args.all_owners,
    };
    let token = ApiToken::generate();
    let db = Database::open(&args.database, 1).await?;
    let id = store::tokens::insert(&mut *db.pool.acquire().await?, token.hash(), &scope).await;
    db.close().await?;
    eprintln!(
        "created token {} (shown once; only its hash is stored)",
        id?
    );
    println!("{}", token.expose());
    Ok(())
}

async fn list_tokens(args: &DatabaseArgs) -> anyhow::Result<()> {
    let db = Database::open(args, 1).await?;
    let tokens = store::tokens::list(&mut *db.pool.acquire().await?).await;
    db.close().await?;
    println!("{:<36}  {:<25}  {:<8}  OWNERS", "ID", "CREATED", "STATE");
    for t in tokens? {
        let owners = if t.scope.all_owners {
            "*".to_owned()
        } else {
            t.scope.owners.join(",")
        };
        let state = if t.revoke_time.is_some() {
            "revoked"
        } else {
            "active"
        };
        println!(
            "{:<36}  {:<25}  {:<8}  {owners}",
            t.id,
            t.create_time.format("%Y-%m-%dT%H:%M:%SZ"),
            state
        );
    }
    Ok(())
}

async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    use sqlx::Acquire as _;
    use webhookd::config::SyntheticFamily;
    use webhookd::domain::{Family, RepositoryName};
    use webhookd::publish::{MAX_BATCH, OutboundEvent};
    let family = match args.family {
        SyntheticFamily::Bsr => Family::Bsr,
        SyntheticFamily::Registry => Family::Registry,
        SyntheticFamily::Github => Family::GitHub,
    };
    let (owner, repository) = (
        OwnerName::parse_in(family, "--owner", &args.owner)?,
        RepositoryName::parse_in(family, "--repository", &args.repository)?,
    );
    let db = Database::open(&args.database, 2).await?;
    let (mut events, mut queued) = (0u64, 0i64);
    let result: anyhow::Result<()> = async {
        let mut conn = db.pool.acquire().await?;
        while events < u64::from(args.count) {
            let n = (u64::from(args.count) - events).min(MAX_BATCH as u64);
            let batch = (events..events + n)
                .map(|i| {
                    let (owner, repository) = (owner.as_str(), repository.as_str());
                    match args.family {
                        SyntheticFamily::Bsr => OutboundEvent::from_request(
                            &webhookd::synthetic::repository_push(owner, repository, i),
                            None,
                        ),
                        SyntheticFamily::Registry => OutboundEvent::from_registry(
                            &webhookd::synthetic::artifact_push(owner, repository, i),
                            None,
                        ),
                        SyntheticFamily::Github => OutboundEvent::from_github(
                            &webhookd::synthetic::github_push(owner, repository, i),
                            None,
                        ),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut tx = conn.begin().await?;
            let stored = webhookd::publish::publish(&mut tx, &batch).await?;
            tx.commit().await?;
            for s in &stored {
                println!("{}", s.event_id);
                queued += s.deliveries_queued;
            }
            events += n;
        }
        Ok(())
    }
    .await;
    db.close().await?;
    result?;
    eprintln!("published {events} events to {owner}/{repository}; {queued} deliveries queued");
    Ok(())
}

async fn listen(args: ListenArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    use webhookd::listener::{VerifyingListener, json_line};
    use webhookd::signing::SigningSecret;
    let from_file = match &args.secret_file {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("reading --secret-file {}", file.display()))?,
        None => String::new(),
    };
    let secrets = args
        .secrets
        .iter()
        .map(String::as_str)
        .chain(from_file.split_whitespace())
        .map(|s| {
            SigningSecret::parse(s).ok_or_else(|| {
                anyhow::anyhow!(
                    "a --secret or --secret-file secret is not whsec_ followed by base64"
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let verifying = !secrets.is_empty();
    // A line that cannot be written (stdout closed, disk full) is not acknowledged: the
    // delivery is answered 503 and webhookd retries it.
    let router = VerifyingListener::new(secrets, |event| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", json_line(&event))?;
        out.flush()?;
        Ok(())
    })
    .into_router();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!(
        "listening on http://{}/buf.alpha.webhook.v1alpha1.EventService/Event (signatures {})",
        listener.local_addr()?,
        if verifying { "verified" } else { "not checked" }
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term =
        signal(SignalKind::terminate()).expect("installing a SIGTERM handler at start-up");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
