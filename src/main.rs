//! The `webhookd` binary: parse the command line, set up logging, run the command.

use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;
use webhookd::config::{Cli, Command, ServeArgs, TokenCommand, TokenCreateArgs};
use webhookd::database::{Database, DatabaseArgs};
use webhookd::domain::{ApiToken, OwnerName, TokenScope};
use webhookd::{app, store};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => {
            let db = Database::open(&args, 1).await?;
            eprintln!("migrations applied");
            db.close().await
        }
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
        .map(|o| OwnerName::parse(o).map(|o| o.as_str().to_owned()))
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
