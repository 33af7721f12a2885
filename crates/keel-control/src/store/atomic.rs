//! Durable file replacement: a crash leaves either the old file or the new one, never a
//! half-written one.
//!
//! The new content goes to a hidden temporary file in the same directory (so the rename
//! can't cross file systems), is flushed to disk, and is renamed over the target; then the
//! directory is flushed so the rename itself survives a power loss.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Marks the store's temporary files: hidden (so readers skip them) and recognisable (so a
/// store opening after a crash can remove what was left).
pub const TMP_MARKER: &str = ".tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically and durably, creating parent directories.
/// `private` makes the file readable by its owner only (for Secrets).
pub fn write(path: &Path, bytes: &[u8], private: bool) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("no parent directory"))?;
    create_dirs(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other("no file name"))?;
    let tmp = dir.join(format!(
        ".{name}{TMP_MARKER}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if private { 0o600 } else { 0o644 });
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes `path` durably, then the directories above it that became empty, up to `root`.
pub fn remove(path: &Path, root: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    let mut dir = path.parent();
    if let Some(d) = dir {
        sync_dir(d)?;
    }
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
        if let Some(parent) = dir {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Creates `dir` and its missing parents, flushing each parent so the new entries persist.
fn create_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Whether a file name is one of the store's temporary files.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TMP_MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ns/kind/a.yaml");
        write(&path, b"one", false).expect("write");
        write(&path, b"two", true).expect("rewrite");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.yaml")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        remove(&path, dir.path()).expect("remove");
        assert!(!dir.path().join("ns").exists());
        assert!(dir.path().exists());
        assert!(is_temp_name(".a.yaml.tmp-1-2") && !is_temp_name("a.yaml"));
    }
}
