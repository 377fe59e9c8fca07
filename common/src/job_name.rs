//! The one rule for job names, shared by `dreamfarm render` and the
//! coordinator: a name becomes a folder and a video file name, so it must
//! be a plain file name.

/// Longest job name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Why a job name is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "job name {0:?} is not usable: a name is 1 to 64 characters without path separators (/ or \\) or control characters, and does not start with '.'. Fix: pass --name NAME (letters, digits, spaces, - and _ are safe)"
)]
pub struct BadJobName(pub String);

/// Checks `name` against the rule (see the module docs).
pub fn check_job_name(name: &str) -> Result<(), BadJobName> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.starts_with('.')
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(BadJobName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_paths_do_not() {
        for good in ["trip", "my photo", "a-b_c.v2", "été", &"x".repeat(64)] {
            assert_eq!(check_job_name(good), Ok(()), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "tab\there",
            &"x".repeat(65),
        ] {
            assert!(check_job_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
