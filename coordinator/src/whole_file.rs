//! Files that appear under their name only once whole: written to a
//! temporary file beside their place, then renamed to their name; and the
//! temporary files a killed writer left.

use std::path::Path;

/// A temporary file in `dir`, named `prefix`…`suffix`, to be renamed to its
/// real name once written.
///
/// tempfile makes its files readable by their owner alone (0600); these
/// become the user's frames, images and job files, so they get what a
/// plain `File::create` gives (0666 less the umask), and a web server or
/// another account can read them like any other file the user writes.
pub fn temp_file_in(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| {
            // tempfile's error ends with the random name it tried ("… at
            // path \"dir/.tmpXYZ.part\""), a file the user never asked for:
            // callers name the folder themselves. The system's error is
            // private to tempfile (its wrapper's `source` is that error's
            // own source), so the message is cut instead.
            let said = e.to_string();
            let reason = said.rsplit_once(" at path ").map_or(&*said, |(r, _)| r);
            std::io::Error::new(e.kind(), reason.to_string())
        })
}

/// Writes `bytes` as the file `name` in `dir`, replacing any file of that
/// name only once they are all on disk: after a crash or a power cut the
/// file is the old one or the new one, never empty or half written. The
/// temporary file is hidden, named `.STEM-`…`.EXT` for `STEM.EXT`.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    let mut tmp = temp_file_in(dir, &format!(".{stem}-"), &format!(".{ext}"))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

/// Removes the temporary files named `prefix`…`suffix` that a writer
/// killed mid-file left in `dir` (never a real file's name, so nothing
/// else goes). Only for a folder the caller holds, or it may remove a
/// running writer's file.
pub fn remove_leftovers(dir: &Path, prefix: &str, suffix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(prefix) && name.ends_with(suffix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn a_temporary_file_gets_the_permissions_of_a_plain_create() {
        let dir = tempfile::tempdir().expect("temp dir");
        let plain = dir.path().join("plain");
        std::fs::File::create(&plain).expect("plain file");
        let tmp = temp_file_in(dir.path(), ".x-", ".png").expect("temp file");
        let name = tmp.path().file_name().expect("a name").to_string_lossy();
        assert!(name.starts_with(".x-") && name.ends_with(".png"), "{name}");
        assert_eq!(mode(tmp.path()), mode(&plain));
    }

    /// A folder it cannot write in gets the system's reason, without the
    /// random name tempfile tried.
    #[test]
    fn a_failure_says_the_systems_reason_and_no_random_name() {
        let missing = tempfile::tempdir().expect("temp dir").path().join("gone");
        let e = temp_file_in(&missing, ".x-", ".png").expect_err("no such folder");
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e:?}");
        assert_eq!(e.to_string(), "No such file or directory (os error 2)");
    }

    #[test]
    fn leftovers_go_and_nothing_else() {
        let dir = tempfile::tempdir().expect("temp dir");
        let names = [
            ".fetch-a1.part",
            ".fetch-b2.part",
            ".fetch-x.png",
            "000001.png",
            "a.part",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        remove_leftovers(dir.path(), ".fetch-", ".part");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".fetch-x.png", "000001.png", "a.part"]);
    }
}
