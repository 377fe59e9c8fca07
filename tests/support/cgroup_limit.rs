//! A CPU or memory limit for a test's process, as a container has one
//! (`docker --cpus`/`--memory`, a Kubernetes `limits.cpu`/`limits.memory`):
//! a cgroup of its own, cgroup v1's `cpu` or `memory` controller or v2's
//! `cpu.max` or `memory.max`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The quota's period, in microseconds (the kernel's default).
const PERIOD_US: u64 = 100_000;

/// A cgroup with a limit; removed on drop (after its processes have
/// exited).
pub struct CgroupLimit {
    /// The cgroup's folder.
    dir: PathBuf,
    /// Its `cgroup.procs`, open for the children to join it by.
    procs: File,
}

impl CgroupLimit {
    /// A new cgroup allowing `cpus` CPUs' time, or why this machine gives
    /// the test none (not root, no cgroup file system, no CPU controller).
    pub fn cpus(cpus: u32) -> Result<Self, String> {
        let quota = u64::from(cpus) * PERIOD_US;
        Self::new(
            "cpu",
            vec![("cpu.max", format!("{quota} {PERIOD_US}"))],
            vec![
                ("cpu.cfs_period_us", PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", quota.to_string()),
            ],
        )
    }

    /// A new cgroup whose processes may have `bytes` of memory together,
    /// the kernel killing one past it, or why this machine gives the test
    /// none.
    pub fn memory(bytes: u64) -> Result<Self, String> {
        Self::new(
            "memory",
            vec![("memory.max", bytes.to_string())],
            vec![("memory.limit_in_bytes", bytes.to_string())],
        )
    }

    /// A new cgroup under `controller`, set as `v2` or `v1` says (file,
    /// value) as the machine has one or the other.
    fn new(
        controller: &str,
        v2: Vec<(&str, String)>,
        v1: Vec<(&str, String)>,
    ) -> Result<Self, String> {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "dreamfarm-test-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        let root = Path::new("/sys/fs/cgroup");
        let (dir, settings) = if root.join("cgroup.controllers").exists() {
            // v2: the root must hand the controller to its children.
            let _ = std::fs::write(
                root.join("cgroup.subtree_control"),
                format!("+{controller}"),
            );
            (root.join(&name), v2)
        } else {
            (root.join(controller).join(&name), v1)
        };
        std::fs::create_dir(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        let made = CgroupLimit {
            procs: File::options()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .map_err(|e| format!("cannot open {}/cgroup.procs: {e}", dir.display()))?,
            dir,
        };
        for (file, value) in settings {
            std::fs::write(made.dir.join(file), &value)
                .map_err(|e| format!("cannot write {value} to {file}: {e}"))?;
        }
        Ok(made)
    }

    /// Starts `command`'s process in the cgroup, so it runs in the limit
    /// from its first instruction.
    pub fn confine(&self, command: &mut Command) {
        use std::os::unix::process::CommandExt;
        let fd = self.procs.as_raw_fd();
        // SAFETY: write(2) of a constant to a descriptor opened before the
        // fork is async-signal-safe, and it is all the child does between
        // fork and exec; "0" is the writing process itself.
        unsafe {
            command.pre_exec(move || match libc::write(fd, b"0\n".as_ptr().cast(), 2) {
                2 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            });
        }
    }
}

impl Drop for CgroupLimit {
    fn drop(&mut self) {
        // A cgroup goes once empty; its last process may take a moment.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
