//! The embedded default: a private PostgreSQL server, run from the machine's installed
//! binaries, used when no `DATABASE_URL` is given.
//!
//! Its cluster lives in `<data-dir>/pg`, is created on first use and reused afterwards. The
//! server listens only on a Unix socket inside that directory, so it never collides with
//! another server's TCP port. When run as root, PostgreSQL (which refuses root) runs as the
//! `postgres` system user.
//!
//! Several commands may share one data directory (`serve` plus a `token create` beside it).
//! Two file locks make that safe: `control.lock` serialises start and stop decisions, and
//! every user holds a shared lock on `users.lock` while it uses the server. A user that
//! leaves stops the server only if it can then take `users.lock` exclusively, i.e. when
//! nobody else is using it. A process that dies releases its locks with it.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use sqlx::postgres::PgConnectOptions;

/// The database and role webhookd uses inside its private cluster.
const DATABASE: &str = "webhookd";
const ROLE: &str = "webhookd";
/// Unix socket paths are limited to 107 bytes.
const MAX_SOCKET_PATH: usize = 100;

/// How the private server is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// PostgreSQL defaults: every commit reaches the disk. For anything that holds real data.
    Durable,
    /// `fsync=off` and friends: for throw-away test clusters only.
    Ephemeral,
}

/// A running private PostgreSQL server that this process is using.
#[derive(Debug)]
pub struct LocalPg {
    root: PathBuf,
    cluster: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<(u32, u32)>,
    /// Our shared lock on `users.lock`; dropping it says "I no longer use the server".
    lease: Option<File>,
}

impl LocalPg {
    /// Starts (or joins) the private server under `data_dir`, using the binaries in `bin_dir`
    /// (or found as [`find_bin_dir`] says). Blocks; call it from `spawn_blocking` in async code.
    ///
    /// # Errors
    /// When no PostgreSQL binaries are installed, the directory is unusable, or the server
    /// does not start; each message says what to do.
    pub fn start(
        data_dir: &Path,
        bin_dir: Option<&Path>,
        durability: Durability,
    ) -> anyhow::Result<Self> {
        let root = std::path::absolute(data_dir).context("resolving --data-dir")?;
        fs::create_dir_all(&root)
            .with_context(|| format!("creating data directory {}", root.display()))?;
        let bin_dir = match bin_dir {
            Some(dir) if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() => {
                dir.to_path_buf()
            }
            Some(dir) => bail!(
                "{} does not hold PostgreSQL's initdb and pg_ctl: install PostgreSQL \
                 (e.g. 'apt-get install postgresql'), fix --postgres-bin-dir, or set DATABASE_URL",
                dir.display()
            ),
            None => find_bin_dir()?,
        };
        let run_as = postgres_user_if_root()?;
        let cluster = root.join("pg");
        let socket = cluster.join(".s.PGSQL.5432");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "the data directory path {} is too long for a Unix socket; choose a shorter --data-dir",
                root.display()
            );
        }
        let mut pg = Self {
            root,
            cluster,
            bin_dir,
            run_as,
            lease: None,
        };
        let control = pg.lock_control()?;
        if !pg.cluster.join("PG_VERSION").exists() {
            pg.init_cluster(durability)?;
        }
        if !pg.is_running()? {
            pg.start_server(durability)?;
        }
        let lease = File::create(pg.root.join("users.lock"))?;
        lease.lock_shared()?;
        pg.lease = Some(lease);
        drop(control);
        Ok(pg)
    }

    /// Connection options for the server's Unix socket and the `webhookd` database.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.admin_options().database(DATABASE)
    }

    /// The name of the database webhookd uses in the cluster.
    pub fn database_name(&self) -> &'static str {
        DATABASE
    }

    /// Options for the maintenance database `postgres`, used to create other databases.
    pub fn admin_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.cluster)
            .username(ROLE)
            .database("postgres")
    }

    /// Stops using the server, and stops the server if no other process uses it.
    /// Blocks, like [`LocalPg::start`].
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub fn release(mut self) -> anyhow::Result<()> {
        let control = self.lock_control()?;
        drop(self.lease.take());
        let users = File::create(self.root.join("users.lock"))?;
        if users.try_lock().is_ok() {
            tracing::info!(cluster = %self.cluster.display(), "stopping the embedded PostgreSQL");
            self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"])?;
        }
        drop(control);
        Ok(())
    }

    fn lock_control(&self) -> anyhow::Result<File> {
        let control = File::create(self.root.join("control.lock"))
            .with_context(|| format!("opening {}/control.lock", self.root.display()))?;
        control.lock()?;
        Ok(control)
    }

    fn init_cluster(&self, durability: Durability) -> anyhow::Result<()> {
        tracing::info!(cluster = %self.cluster.display(), "creating the embedded PostgreSQL cluster");
        // A half-made cluster from an interrupted initdb is useless; start afresh.
        if self.cluster.exists() {
            fs::remove_dir_all(&self.cluster)?;
        }
        fs::create_dir_all(&self.cluster)?;
        fs::set_permissions(&self.cluster, fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = self.run_as {
            check_traversable(&self.root)?;
            std::os::unix::fs::chown(&self.cluster, Some(uid), Some(gid))?;
        }
        let cluster = self.cluster.to_string_lossy().into_owned();
        let mut args = vec![
            "-D",
            &cluster,
            "-A",
            "trust",
            "-U",
            ROLE,
            "-E",
            "UTF8",
            "--locale=C",
        ];
        if durability == Durability::Ephemeral {
            args.push("--no-sync");
        }
        self.run(&self.bin_dir.join("initdb"), &args)?;
        fs::write(
            self.cluster.join("webhookd.txt"),
            "Created by webhookd: the embedded PostgreSQL cluster.\n",
        )
        .ok();
        Ok(())
    }

    fn start_server(&self, durability: Durability) -> anyhow::Result<()> {
        tracing::info!(cluster = %self.cluster.display(), "starting the embedded PostgreSQL");
        let mut options = format!(
            "-k {} -c listen_addresses='' -c max_connections=200",
            self.cluster.display()
        );
        if durability == Durability::Ephemeral {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let log = self
            .cluster
            .join("server.log")
            .to_string_lossy()
            .into_owned();
        self.pg_ctl(&["start", "-w", "-t", "60", "-l", &log, "-o", &options])
            .with_context(|| format!("PostgreSQL did not start; its log is {log}"))
    }

    fn is_running(&self) -> anyhow::Result<bool> {
        let status = self
            .command(&self.bin_dir.join("pg_ctl"))
            .args(["status", "-D"])
            .arg(&self.cluster)
            .output()
            .context("running pg_ctl status")?;
        Ok(status.status.success())
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let cluster = self.cluster.to_string_lossy().into_owned();
        let mut all = vec!["-D", &cluster];
        all.extend_from_slice(args);
        self.run(&self.bin_dir.join("pg_ctl"), &all)
    }

    fn run(&self, program: &Path, args: &[&str]) -> anyhow::Result<()> {
        let output = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "{} {} failed ({}): {}",
                program.display(),
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command.current_dir("/").env("LC_ALL", "C");
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }
}

impl Drop for LocalPg {
    fn drop(&mut self) {
        // Dropping without `release` (a panic, an early return) leaves the server running for
        // the next command; our lease goes with the file handle.
        drop(self.lease.take());
    }
}

/// Finds the directory holding `initdb` and `pg_ctl`: `pg_config --bindir`, then `PATH`,
/// then the newest `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_tools(&dir) {
            return Ok(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_tools(d))
    {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).ok_or_else(|| {
        anyhow::anyhow!(
            "no PostgreSQL server binaries found (looked at pg_config, PATH and \
             /usr/lib/postgresql/*/bin): install PostgreSQL (e.g. 'apt-get install postgresql') \
             or set DATABASE_URL to use an existing server"
        )
    })
}

/// When running as root, the uid and gid of the `postgres` system user, which PostgreSQL
/// must run as; `None` otherwise.
fn postgres_user_if_root() -> anyhow::Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")?.ok_or_else(|| {
        anyhow::anyhow!(
            "running as root, and PostgreSQL refuses to run as root, but there is no 'postgres' \
             system user to run it as: create one (installing PostgreSQL's packages does) or set DATABASE_URL"
        )
    })?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

/// The `postgres` user must be able to enter every directory above the cluster.
fn check_traversable(root: &Path) -> anyhow::Result<()> {
    for dir in root.ancestors() {
        let mode = fs::metadata(dir)?.permissions().mode();
        if mode & 0o001 == 0 {
            bail!(
                "PostgreSQL runs as the 'postgres' user, which cannot enter {} (mode {:o}); \
                 choose a --data-dir outside it or set DATABASE_URL",
                dir.display(),
                mode & 0o777
            );
        }
    }
    Ok(())
}
