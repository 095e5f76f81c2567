//! `serve --config webhookd.toml` and `webhookd config check`, as the binary runs them: the
//! file's settings apply, environment variables override the file and flags override both,
//! and a bad file stops the server before it starts, naming the line and key.

use std::path::Path;
use std::process::Stdio;

use crate::helpers::{Spawned, TestApp, free_port, run, spawn_app, tempdir, wait_for_port};

fn webhookd() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_webhookd"));
    command.env("RUST_LOG", "warn").env_remove("DATABASE_URL");
    command
}

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let file = dir.join("webhookd.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// A `serve --config FILE` process on `app`'s database with `env` and `flags`.
fn serve(app: &TestApp, file: &Path, env: &[(&str, &str)], flags: &[&str]) -> Spawned {
    let mut command = webhookd();
    command
        .args(["serve", "--config"])
        .arg(file)
        .args(flags)
        .env("DATABASE_URL", app.database_url())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    Spawned::new(&mut command)
}

async fn answers(port: u16, path: &str) -> u16 {
    crate::helpers::http_client()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_file_sets_serve_flags_the_environment_overrides_it_and_flags_override_both() {
    let app = spawn_app().await;
    let dir = tempdir("config");
    let (file_port, flag_port, file_metrics, env_metrics) =
        (free_port(), free_port(), free_port(), free_port());
    let key = app.secret_key_file();
    let file = write(
        &dir,
        &format!(
            "# webhookd's settings\n[serve]\nlisten = \"127.0.0.1:{file_port}\"\n\
             metrics_listen = \"127.0.0.1:{file_metrics}\"\nsecret_key_file = {key:?}\n\
             batch_size = 100\ndrain = true\nallow_insecure_callbacks = true\n"
        ),
    );
    // The file alone: its listen address and its metrics port.
    let mut only_file = serve(&app, &file, &[], &[]);
    wait_for_port(file_port).await;
    assert_eq!(answers(file_port, "/healthz").await, 200);
    wait_for_port(file_metrics).await;
    assert_eq!(answers(file_metrics, "/metrics").await, 200);
    assert_eq!(
        answers(file_port, "/metrics").await,
        404,
        "moved by the file"
    );
    only_file.kill().unwrap();
    only_file.wait().unwrap();

    // The environment beats the file (metrics), a flag beats both (listen).
    let _both = serve(
        &app,
        &file,
        &[
            (
                "WEBHOOKD_METRICS_LISTEN",
                &format!("127.0.0.1:{env_metrics}"),
            ),
            ("WEBHOOKD_LISTEN", &format!("127.0.0.1:{file_port}")),
        ],
        &["--listen", &format!("127.0.0.1:{flag_port}")],
    );
    wait_for_port(flag_port).await;
    wait_for_port(env_metrics).await;
    assert_eq!(answers(env_metrics, "/metrics").await, 200);
    assert_eq!(
        answers(file_port, "/healthz").await,
        0,
        "nothing on the file's port"
    );
    assert_eq!(answers(file_metrics, "/metrics").await, 0);
}

#[tokio::test]
async fn a_bad_file_stops_serve_before_it_starts_and_config_check_says_where() {
    let app = spawn_app().await;
    let dir = tempdir("config-bad");
    let port = free_port();
    let file = write(
        &dir,
        &format!("[serve]\nlisten = \"127.0.0.1:{port}\"\n\nbatch_sise = 100\n"),
    );
    let mut command = webhookd();
    command
        .args(["serve", "--config"])
        .arg(&file)
        .env("DATABASE_URL", app.database_url());
    let (code, _, stderr) = run(command).await;
    assert_eq!(code, 1, "{stderr}");
    let expected = format!(
        "{}:4: serve.batch_sise: unknown key (did you mean batch_size?)",
        file.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(answers(port, "/healthz").await, 0, "nothing started");

    let mut check = webhookd();
    check.args(["config", "check"]).arg(&file);
    let (code, _, stderr) = run(check).await;
    assert_eq!(code, 1);
    assert!(stderr.contains(&expected), "{stderr}");

    std::fs::write(&file, "[serve]\nbatch_size = \"lots\"\n").unwrap();
    let mut check = webhookd();
    check.args(["config", "check"]).arg(&file);
    let (code, _, stderr) = run(check).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "{}:2: serve.batch_size: invalid value \"lots\"",
            file.display()
        )),
        "{stderr}"
    );

    std::fs::write(
        &file,
        "[serve]\nbatch_size = 1000\npoll_interval = \"1s\"\n",
    )
    .unwrap();
    let mut check = webhookd();
    check.args(["config", "check"]).arg(&file);
    let (code, stdout, stderr) = run(check).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "{}: ok, 2 settings\n  batch_size = 1000\n  poll_interval = 1s\n",
            file.display()
        )
    );
}

#[tokio::test]
async fn the_readme_example_file_checks() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let start = readme
        .find("```toml\n[serve]")
        .expect("the README's example")
        + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let dir = tempdir("config-readme");
    let file = write(&dir, &readme[start..end]);
    let mut check = webhookd();
    check.args(["config", "check"]).arg(&file);
    let (code, stdout, stderr) = run(check).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok, 9 settings"), "{stdout}");
}
