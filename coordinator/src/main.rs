//! `dreamfarm`: the command line of the render farm.

mod cli;

fn main() -> std::process::ExitCode {
    let cli = cli::parse();
    dreamfarm_proto::logging::init(cli.log_format);
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once.
///
/// Many errors name their cause in their own message and also hand it on
/// as their source (thiserror's `source` field), and anyhow's `{:#}` would
/// then print it twice (`…: Not a directory (os error 20): Not a directory
/// (os error 20)`); a cause whose words the line already holds is skipped.
fn error_line(e: &anyhow::Error) -> String {
    e.chain().fold(String::new(), |mut line, cause| {
        let words = cause.to_string();
        if !line.contains(&words) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&words);
        }
        line
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that names its source in its message, as many do.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot create the data folder /x: {source}")]
    struct Names {
        source: std::io::Error,
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotADirectory);
        let e = anyhow::Error::from(Names { source: io() });
        assert_eq!(
            error_line(&e),
            format!("cannot create the data folder /x: {}", io())
        );
        // Causes not named yet are all there, in order.
        let e = anyhow::Error::from(io())
            .context("reading job.toml")
            .context("resuming");
        assert_eq!(
            error_line(&e),
            format!("resuming: reading job.toml: {}", io())
        );
    }
}
