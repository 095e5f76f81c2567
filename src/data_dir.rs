//! The data directory (`--data-dir`): the default secret key, the embedded PostgreSQL's
//! cluster and its lock files live here, so webhookd refuses a directory that anyone but
//! its owner could change, and opens what it keeps there without following symlinks (a
//! link planted there must not make webhookd write, lock or read a file elsewhere).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The absolute path of `dir`, created if missing, after checking that it belongs to the
/// user running webhookd and that neither its group nor others can write to it.
///
/// # Errors
/// When the directory cannot be created or read, belongs to another user, or is writable
/// by its group or others; the message says how to fix it.
pub fn prepare(dir: &Path) -> anyhow::Result<PathBuf> {
    let root = std::path::absolute(dir).context("resolving --data-dir")?;
    if !root.exists() {
        // The embedded server runs as `postgres` when webhookd runs as root: it must be able
        // to enter the directory to reach its cluster below it, but not to list it.
        let mode = if nix::unistd::geteuid().is_root() {
            0o711
        } else {
            0o700
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&root)
            .with_context(|| format!("creating data directory {}", root.display()))?;
    }
    let meta = fs::metadata(&root)
        .with_context(|| format!("reading data directory {}", root.display()))?;
    if !meta.is_dir() {
        bail!("the data directory {} is not a directory", root.display());
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        bail!(
            "the data directory {} belongs to uid {}, not to the user running webhookd (uid {me}): \
             run webhookd as its owner, `chown` it, or choose another --data-dir",
            root.display(),
            meta.uid()
        );
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        bail!(
            "the data directory {} is writable by its group or by others (mode {mode:o}): \
             another user could replace what webhookd keeps there; run `chmod go-w {}`",
            root.display(),
            root.display()
        );
    }
    Ok(root)
}

/// Opens (creating it if needed, mode 0600) a file webhookd keeps in the data directory,
/// refusing a symlink in its place.
///
/// # Errors
/// When the file cannot be opened, or is a symlink.
pub fn open_private(path: &Path, write: bool) -> anyhow::Result<File> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC);
    if write {
        options.write(true).create(true).mode(0o600);
    }
    options.open(path).map_err(|e| {
        if e.raw_os_error() == Some(nix::libc::ELOOP) {
            anyhow::anyhow!(
                "{} is a symlink: webhookd does not follow links in its data directory; remove it",
                path.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("opening {}", path.display()))
        }
    })
}

/// An error when `path` is a symlink (or missing, or not a directory); the embedded cluster's
/// directory is checked this way before it is used.
///
/// # Errors
/// As described.
pub fn refuse_symlinked_dir(path: &Path) -> anyhow::Result<fs::Metadata> {
    let meta = fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.file_type().is_symlink() {
        bail!(
            "{} is a symlink: webhookd does not follow links in its data directory; remove it",
            path.display()
        );
    }
    if !meta.is_dir() {
        bail!("{} is not a directory", path.display());
    }
    Ok(meta)
}
