//! Folders a user names (frames, downloads, the coordinator's data),
//! created where missing.

use std::io;
use std::path::Path;

/// Creates `dir` and the folders above it where missing. Where a file
/// stands in the way the system says only "File exists" or "Not a
/// directory"; this says which path is the file.
pub fn create(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        let not_a_folder = |what: String| {
            io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{what} is a file, not a folder"),
            )
        };
        match dir.ancestors().find(|p| p.is_file()) {
            Some(file) if file == dir => not_a_folder("it".into()),
            Some(file) => not_a_folder(file.display().to_string()),
            None => e,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file at the path, or above it, is named; a folder that can be
    /// made is.
    #[test]
    fn a_file_in_the_way_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").expect("write");
        let said = |path: &Path| create(path).expect_err("a file in the way").to_string();
        assert_eq!(said(&file), "it is a file, not a folder");
        assert_eq!(
            said(&file.join("x/y")),
            format!("{} is a file, not a folder", file.display())
        );
        create(&dir.path().join("new/deeper")).expect("a new folder");
        assert!(dir.path().join("new/deeper").is_dir());
    }
}
