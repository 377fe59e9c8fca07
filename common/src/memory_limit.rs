//! Sizes of memory: how much this process may have, and sizes for people
//! and from them. The coordinator's job budget, `render`'s and `dream`'s
//! `--max-memory` and a worker's check of each pass all ask the same
//! question.

use std::path::Path;

/// `bytes` for people: "1.5 GiB".
pub fn human(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else if b >= MIB {
        format!("{:.0} MiB", b / MIB)
    } else if b >= KIB {
        format!("{:.0} KiB", b / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Parses a size: plain bytes or a number with K, M, G, T (powers of 1024;
/// `KiB`, `MB` and the like are read the same way), e.g. `8GiB`, `512M`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write e.g. 8GiB, 512MiB or 1073741824"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?}; use K, M, G or T"
            ));
        }
    };
    let bytes = number * (1u64 << shift) as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("{text:?} is not a usable size"));
    }
    Ok(bytes as u64)
}

/// The memory this process can have: its container's cgroup limit if it
/// has one, else the machine's memory; with which of the two it is, for
/// people.
pub fn memory_limit() -> Option<(u64, &'static str)> {
    cgroup_limit()
        .map(|bytes| (bytes, "the container's memory limit"))
        .or_else(|| machine_memory().map(|bytes| (bytes, "this machine's memory")))
}

/// The tightest cgroup memory limit on this process, if any: its own
/// cgroup's (from `/proc/self/cgroup`) and every ancestor's up to the
/// mount, v2 (`memory.max`) or v1 (`memory.limit_in_bytes`). In a
/// container the process's cgroup is the mount's root; a process put in a
/// cgroup of its own outside one (systemd's `MemoryMax`, a test) has its
/// limit below the root.
fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut files = Vec::new();
    for line in own.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (mount, file) = if controllers.is_empty() {
            ("/sys/fs/cgroup", "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
        } else {
            continue;
        };
        let mut dir = Path::new(mount).join(path.trim_start_matches('/'));
        loop {
            files.push(dir.join(file));
            if dir == Path::new(mount) || !dir.pop() {
                break;
            }
        }
    }
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| t.trim().parse::<u64>().ok())
        // v1 says "no limit" with a huge number, v2 with "max".
        .filter(|&b| b < 1 << 60)
        .min()
}

/// Total memory from /proc/meminfo.
fn machine_memory() -> Option<u64> {
    proc_kib("/proc/meminfo", "MemTotal:")
}

/// This process's resident memory (`VmRSS`), if the kernel says.
pub fn resident_bytes() -> Option<u64> {
    proc_kib("/proc/self/status", "VmRSS:")
}

/// The `key  N kB` line of `/proc` file `file`, in bytes.
fn proc_kib(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in ["", "GiB", "-1G", "0", "8 parsecs", "1e999"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(human(300 << 20), "300 MiB");
        assert_eq!(human(21_494), "21 KiB");
        assert_eq!(human(536), "536 bytes");
    }

    /// Whatever the machine, some limit is found, and none above the
    /// machine's memory.
    #[test]
    fn this_process_has_a_limit() {
        let (bytes, _) = memory_limit().expect("a limit");
        assert!(bytes > 0 && bytes <= machine_memory().expect("/proc/meminfo"));
        let resident = resident_bytes().expect("VmRSS");
        assert!(resident > 0 && resident < bytes);
    }
}
