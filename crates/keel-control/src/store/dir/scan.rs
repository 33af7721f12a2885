//! Finding and reading the store's files.

use std::fs;
use std::path::{Path, PathBuf};

use crate::store::atomic;

use super::MAX_DEPTH;

pub(super) fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    let len = fs::metadata(path)?.len();
    if len > keel_config::source::MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "file is {len} bytes, more than the {} byte limit for configuration",
            keel_config::source::MAX_FILE_BYTES
        )));
    }
    fs::read(path)
}

pub(super) fn is_config_file(name: &str) -> bool {
    [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e))
}

/// Config files under `dir` (relative to the root), sorted; hidden entries skipped.
pub(super) fn scan(root: &Path, rel: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(root.join(rel)) else {
        return;
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    for name in names {
        let path = rel.join(&name);
        let Ok(meta) = fs::metadata(root.join(&path)) else {
            continue;
        };
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                scan(root, &path, depth + 1, out);
            }
        } else if is_config_file(&name) {
            out.push(path);
        }
    }
    if depth == 0 {
        out.sort();
    }
}

/// Removes temporary files a crash left behind.
pub(super) fn remove_temp_files(dir: &Path, depth: usize) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if atomic::is_temp_name(&name) {
            let _ = fs::remove_file(&path);
        } else if !name.starts_with('.')
            && depth < MAX_DEPTH
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            remove_temp_files(&path, depth + 1);
        }
    }
}
