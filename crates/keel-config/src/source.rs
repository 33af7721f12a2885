//! Where configuration comes from: files, directories (recursive) and standard input.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diagnostic::{Diagnostic, Level};

/// The text of one input, with the name used in messages.
#[derive(Debug, Clone)]
pub struct Input {
    pub name: Arc<str>,
    pub text: String,
}

/// Files larger than this are refused: no real configuration is this big, and reading it
/// whole would let a mistaken path exhaust memory.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

fn is_config_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Reads every path: `-` is standard input, a directory is walked recursively for `.yaml`,
/// `.yml` and `.json` files (in sorted order), a file is read whatever its extension.
pub fn read_inputs(paths: &[PathBuf]) -> (Vec<Input>, Vec<Diagnostic>) {
    let mut inputs = Vec::new();
    let mut diags = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin()
                .take(MAX_FILE_BYTES)
                .read_to_string(&mut text)
            {
                Ok(_) => inputs.push(Input {
                    name: Arc::from("<stdin>"),
                    text,
                }),
                Err(e) => diags.push(io_error("<stdin>", &e)),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = collect(path, true, &mut files) {
            diags.push(io_error(&path.display().to_string(), &e));
            continue;
        }
        for file in files {
            match read_file(&file) {
                Ok(text) => inputs.push(Input {
                    name: Arc::from(file.display().to_string()),
                    text,
                }),
                Err(e) => diags.push(io_error(&file.display().to_string(), &e)),
            }
        }
    }
    (inputs, diags)
}

fn collect(path: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            let hidden = entry
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if entry.is_dir() {
                collect(&entry, false, out)?;
            } else if is_config_file(&entry) {
                out.push(entry);
            }
        }
    } else if explicit || is_config_file(path) {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn read_file(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "file is {} bytes, more than the {} byte limit for configuration",
            meta.len(),
            MAX_FILE_BYTES
        )));
    }
    let bytes = std::fs::read(path)?;
    String::from_utf8(bytes).map_err(|_| std::io::Error::other("file is not UTF-8 text"))
}

fn io_error(name: &str, e: &std::io::Error) -> Diagnostic {
    let hint = match e.kind() {
        std::io::ErrorKind::NotFound => " (check the path)",
        std::io::ErrorKind::PermissionDenied => " (check the file's permissions)",
        _ => "",
    };
    Diagnostic::new(
        Level::Error,
        &Arc::from(name),
        None,
        format!("cannot read: {e}{hint}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_directories_recursively_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
        std::fs::write(root.join("b.yaml"), "b").expect("write");
        std::fs::write(root.join("a.yml"), "a").expect("write");
        std::fs::write(root.join("notes.txt"), "skip").expect("write");
        std::fs::write(root.join("sub/deeper/c.json"), "{}").expect("write");
        std::fs::write(root.join(".hidden.yaml"), "skip").expect("write");
        let (inputs, diags) = read_inputs(&[root.to_path_buf()]);
        assert!(diags.is_empty());
        let names: Vec<String> = inputs
            .iter()
            .map(|i| {
                Path::new(&*i.name)
                    .strip_prefix(root)
                    .expect("prefix")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, vec!["a.yml", "b.yaml", "sub/deeper/c.json"]);
        let (_, diags) = read_inputs(&[root.join("missing.yaml")]);
        assert!(diags[0].message.contains("check the path"));
    }
}
