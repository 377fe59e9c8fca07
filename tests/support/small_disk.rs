//! A small file system that fills up: a tmpfs mounted over a folder, for
//! the tests of a full disk. Mounting needs root, as the image tests'
//! containers do; the tests say so when it is refused.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a given size mounted at a folder, unmounted on drop.
pub struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` at `path` (made if missing).
    pub fn mount(path: &Path, bytes: u64) -> Self {
        std::fs::create_dir_all(path).expect("mount point");
        let size = format!("size={bytes}");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            mounted,
            "cannot mount a tmpfs at {}: the full-disk tests need root",
            path.display()
        );
        Self {
            path: path.to_path_buf(),
        }
    }

    /// Gives the file system `bytes` in all, keeping its files.
    pub fn grow(&self, bytes: u64) {
        let size = format!("remount,size={bytes}");
        let status = Command::new("mount")
            .args(["-o", &size])
            .arg(&self.path)
            .status()
            .expect("mount runs");
        assert!(status.success(), "cannot grow {}", self.path.display());
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a process still holding a file there (a coordinator not
        // yet reaped) must not keep the mount for ever.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
