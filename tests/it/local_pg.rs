//! The embedded PostgreSQL lets in only webhookd (issue 13, item 6): its own configuration
//! keeps TCP closed and admits only the OS user running webhookd even when the server is
//! started by hand; the data directory is refused when others could change it; links
//! planted there are not followed.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use sqlx::Connection as _;
use webhookd::local_pg::{Durability, LocalPg, find_bin_dir};
use webhookd::secret_box::SecretBox;

use crate::helpers::{as_server_user, is_root, pg_ctl, tempdir};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o777
}

async fn start(dir: &Path) -> anyhow::Result<LocalPg> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || LocalPg::start(&dir, None, Durability::Ephemeral))
        .await
        .unwrap()
}

async fn release(pg: LocalPg) {
    tokio::task::spawn_blocking(move || pg.release())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_hand_started_embedded_server_opens_no_tcp_port_and_admits_only_webhookds_user() {
    let dir = tempdir("pg-closed");
    let cluster = dir.join("pg");
    let pg = start(&dir).await.unwrap();
    sqlx::PgConnection::connect_with(&pg.admin_options())
        .await
        .expect("webhookd's own user gets in over the socket")
        .close()
        .await
        .unwrap();
    release(pg).await;

    for file in ["control.lock", "users.lock", "secret.key"] {
        if dir.join(file).exists() {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
    }
    for file in [
        "pg_hba.conf",
        "pg_ident.conf",
        "webhookd.conf",
        "postgresql.conf",
    ] {
        assert_eq!(mode(&cluster.join(file)), 0o600, "{file}");
    }
    let hba = std::fs::read_to_string(cluster.join("pg_hba.conf")).unwrap();
    assert!(!hba.contains("trust"), "{hba}");

    // A cluster made by an older webhookd (`initdb -A trust`) is closed at its next start.
    std::fs::write(
        cluster.join("pg_hba.conf"),
        "local all all trust\nhost all all 0.0.0.0/0 trust\n",
    )
    .unwrap();
    release(start(&dir).await.unwrap()).await;
    let hba = std::fs::read_to_string(cluster.join("pg_hba.conf")).unwrap();
    assert!(!hba.contains("trust"), "{hba}");

    // Started by hand with no options at all: nothing listens on TCP.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let port_arg = format!("-p {port}");
    let log = cluster.join("by-hand.log");
    let log = log.to_str().unwrap();
    pg_ctl(&cluster, &["start", "-w", "-l", log, "-o", &port_arg]);
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port));
    let admin = sqlx::postgres::PgConnectOptions::new()
        .socket(&cluster)
        .port(port)
        .username("webhookd")
        .database("postgres");
    let socket = match sqlx::PgConnection::connect_with(&admin).await {
        Ok(connection) => connection.close().await,
        Err(e) => Err(e),
    };
    // Another local user, even the one the server runs as, is refused on the socket.
    let other = is_root().then(|| {
        as_server_user(&find_bin_dir().unwrap().join("psql"))
            .args(["-X", "-w", "-h"])
            .arg(&cluster)
            .args(["-p", &port.to_string(), "-U", "webhookd", "-d", "postgres"])
            .args(["-c", "select 1"])
            .current_dir("/")
            .output()
            .unwrap()
    });
    pg_ctl(&cluster, &["stop", "-m", "fast", "-w"]);
    assert!(tcp.is_err(), "a hand-started server listens on TCP");
    socket.expect("webhookd's user gets in");
    if let Some(other) = other {
        let stderr = String::from_utf8_lossy(&other.stderr);
        assert!(!other.status.success(), "postgres got in as webhookd");
        assert!(stderr.contains("authentication failed"), "{stderr}");
    }

    // Even told to listen on TCP, it lets nobody in that way.
    let tcp_arg = format!("-p {port} -c listen_addresses=127.0.0.1");
    pg_ctl(&cluster, &["start", "-w", "-l", log, "-o", &tcp_arg]);
    let over_tcp = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("webhookd")
        .database("postgres");
    let refused = sqlx::PgConnection::connect_with(&over_tcp).await;
    pg_ctl(&cluster, &["stop", "-m", "fast", "-w"]);
    let err = refused.expect_err("TCP is refused").to_string();
    assert!(err.contains("pg_hba.conf rejects connection"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_data_directory_that_others_can_change_is_refused_with_the_fix() {
    let dir = tempdir("pg-loose");
    for loose in [0o777, 0o775, 0o757] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(loose)).unwrap();
        let err = start(&dir).await.expect_err("refused").to_string();
        assert!(
            err.contains("writable by its group or by others") && err.contains("chmod go-w"),
            "{err}"
        );
    }
    assert!(!dir.join("pg").exists(), "nothing was created");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    if is_root() {
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        let err = start(&dir).await.expect_err("refused").to_string();
        assert!(err.contains("belongs to uid 65534"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn links_planted_in_the_data_directory_are_not_followed() {
    let dir = tempdir("pg-links");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    let elsewhere = tempdir("pg-links-target");
    let victim = elsewhere.join("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();

    for name in ["control.lock", "secret.key"] {
        let link = dir.join(name);
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = if name == "secret.key" {
            SecretBox::load_or_create(&link).err()
        } else {
            start(&dir).await.err()
        };
        let err = err.expect("refused").to_string();
        assert!(err.contains("is a symlink"), "{name}: {err}");
        std::fs::remove_file(&link).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    assert_eq!(mode(&victim), 0o644);

    // The cluster directory itself.
    std::os::unix::fs::symlink(&elsewhere, dir.join("pg")).unwrap();
    let err = start(&dir).await.expect_err("refused").to_string();
    assert!(err.contains("is a symlink"), "{err}");
    assert!(
        victim.exists(),
        "initdb's clean-up did not run over the link"
    );
    assert!(!elsewhere.join("PG_VERSION").exists());
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&elsewhere).unwrap();
}
