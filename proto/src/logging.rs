//! How the dreamfarm processes log: to stderr, filtered by `RUST_LOG`
//! (default `info`), as text (coloured only on a terminal, so files and
//! CI logs carry no escape codes) or as one JSON object a line for log
//! collectors.

use std::io::IsTerminal;
use std::str::FromStr;

/// Environment variable that picks the format when no flag does.
pub const FORMAT_ENV: &str = "DREAMFARM_LOG_FORMAT";

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (Loki, Elasticsearch, `jq`).
    Json,
}

/// A format name that is neither `text` nor `json`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown log format {0:?}: use text or json")]
pub struct UnknownFormat(pub String);

impl FromStr for LogFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(UnknownFormat(other.to_string())),
        }
    }
}

/// Installs the process's logger (once, at start).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!(
            "yaml".parse::<LogFormat>(),
            Err(UnknownFormat("yaml".into()))
        );
    }
}
