//! The embedded default: a private PostgreSQL server, run from the machine's installed
//! binaries, used when no `DATABASE_URL` is given.
//!
//! Its cluster lives in `<data-dir>/pg`, is created on first use and reused afterwards. The
//! server listens only on a Unix socket inside that directory, so it never collides with
//! another server's TCP port. When run as root, PostgreSQL (which refuses root) runs as the
//! `postgres` system user.
//!
//! The cluster's own configuration, rewritten at every start, keeps it closed even when
//! started by hand: no TCP listener (and TCP rejected in `pg_hba.conf` should one be
//! configured), a socket in a directory only the server's user can enter, and peer
//! authentication admitting only the OS user running webhookd, as the `webhookd` role. The
//! data directory is checked by [`crate::data_dir`].
//!
//! Several commands may share one data directory (`serve` plus a `token create` beside it).
//! Two file locks make that safe: `control.lock` serialises start and stop decisions, and
//! every user holds a shared lock on `users.lock` while it uses the server. A user that
//! leaves stops the server only if it can then take `users.lock` exclusively, i.e. when
//! nobody else is using it. A process that dies releases its locks with it.

use std::fs::{self, File};
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use sqlx::postgres::PgConnectOptions;

use crate::data_dir;

/// The database and role webhookd uses inside its private cluster.
const DATABASE: &str = "webhookd";
const ROLE: &str = "webhookd";
/// The line that makes `postgresql.conf` read webhookd's settings last, over the defaults.
const INCLUDE: &str = "include 'webhookd.conf'";
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
        let root = data_dir::prepare(data_dir)?;
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
        if pg.cluster.symlink_metadata().is_ok() {
            pg.check_cluster_dir()?;
        }
        if !pg.cluster.join("PG_VERSION").exists() {
            pg.init_cluster(durability)?;
        }
        pg.write_config()?;
        if pg.is_running()? {
            // A server left running by an older webhookd picks up the rules above.
            pg.pg_ctl(&["reload"])?;
        } else {
            pg.start_server(durability)?;
        }
        let lease = data_dir::open_private(&pg.root.join("users.lock"), true)?;
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
        let users = data_dir::open_private(&self.root.join("users.lock"), true)?;
        if users.try_lock().is_ok() {
            tracing::info!(cluster = %self.cluster.display(), "stopping the embedded PostgreSQL");
            self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"])?;
        }
        drop(control);
        Ok(())
    }

    fn lock_control(&self) -> anyhow::Result<File> {
        let control = data_dir::open_private(&self.root.join("control.lock"), true)?;
        control.lock()?;
        Ok(control)
    }

    /// The cluster directory must be a real directory owned by the user the server runs as,
    /// open to nobody else: PostgreSQL refuses a looser one, and a symlink could point the
    /// server (or `initdb`'s clean-up) at another directory.
    fn check_cluster_dir(&self) -> anyhow::Result<()> {
        let meta = data_dir::refuse_symlinked_dir(&self.cluster)?;
        let owner = self
            .run_as
            .map_or_else(|| nix::unistd::geteuid().as_raw(), |(uid, _)| uid);
        if meta.uid() != owner {
            bail!(
                "{} belongs to uid {}, not to uid {owner} that runs the embedded PostgreSQL: \
                 `chown -R` it or choose another --data-dir",
                self.cluster.display(),
                meta.uid()
            );
        }
        Ok(())
    }

    /// Writes the server's access rules and settings into the cluster itself, so that a
    /// server started by hand (`pg_ctl start -D ...`) is as closed as one webhookd starts:
    /// no TCP listener, a socket only its owner can reach, and only the user running webhookd
    /// admitted, by peer authentication, as the `webhookd` role. Rewritten at every start,
    /// which also closes clusters made by older versions with `initdb -A trust`.
    fn write_config(&self) -> anyhow::Result<()> {
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid())?.ok_or_else(|| {
            anyhow::anyhow!(
                "the user running webhookd (uid {}) has no name in the user database, and the \
                 embedded PostgreSQL's peer authentication needs one: add one or set DATABASE_URL",
                nix::unistd::geteuid()
            )
        })?;
        let socket_dir = self.cluster.to_string_lossy().replace('\'', "''");
        self.write_owned(
            "webhookd.conf",
            &format!(
                "# Written by webhookd at every start of the embedded server; edits are lost.\n\
                 listen_addresses = ''\n\
                 unix_socket_directories = '{socket_dir}'\n\
                 unix_socket_permissions = 0700\n\
                 password_encryption = 'scram-sha-256'\n\
                 max_connections = 200\n"
            ),
        )?;
        self.write_owned(
            "pg_hba.conf",
            &format!(
                "# Written by webhookd at every start of the embedded server; edits are lost.\n\
                 # Only the OS user running webhookd, over the Unix socket, as role {ROLE}.\n\
                 local all {ROLE} peer map=webhookd\n\
                 local all all reject\n\
                 host all all all reject\n"
            ),
        )?;
        self.write_owned(
            "pg_ident.conf",
            &format!(
                "# Written by webhookd at every start of the embedded server; edits are lost.\n\
                 webhookd {} {ROLE}\n",
                me.name
            ),
        )?;
        let main = self.cluster.join("postgresql.conf");
        let mut text = String::new();
        data_dir::open_private(&main, false)?.read_to_string(&mut text)?;
        if !text.lines().any(|line| line.trim() == INCLUDE) {
            text.push_str(&format!("\n{INCLUDE}\n"));
            self.write_owned("postgresql.conf", &text)?;
        }
        Ok(())
    }

    /// Replaces the cluster file `name` with `contents`, mode 0600, owned by the server's
    /// user: written aside and renamed over, so a symlink in its place is replaced, not
    /// followed, and a crash leaves the old file or the new one.
    fn write_owned(&self, name: &str, contents: &str) -> anyhow::Result<()> {
        use std::io::Write as _;
        let path = self.cluster.join(name);
        let aside = self.cluster.join(format!(".{name}.webhookd-new"));
        let _ = fs::remove_file(&aside);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&aside)
            .with_context(|| format!("writing {}", aside.display()))?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        fs::rename(&aside, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
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
            "--auth-local=peer",
            "--auth-host=reject",
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
        self.write_owned(
            "webhookd.txt",
            "Created by webhookd: the embedded PostgreSQL cluster.\n",
        )?;
        Ok(())
    }

    fn start_server(&self, durability: Durability) -> anyhow::Result<()> {
        tracing::info!(cluster = %self.cluster.display(), "starting the embedded PostgreSQL");
        // Everything else is in the cluster's own webhookd.conf (see `write_config`).
        let mut options = String::new();
        if durability == Durability::Ephemeral {
            options.push_str("-c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let log = self
            .cluster
            .join("server.log")
            .to_string_lossy()
            .into_owned();
        let mut args = vec!["start", "-w", "-t", "60", "-l", &log];
        if !options.is_empty() {
            args.extend(["-o", &options]);
        }
        self.pg_ctl(&args)
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
///
/// # Errors
/// When none is found; the message says what to install.
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
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
