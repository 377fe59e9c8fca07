//! Which torch device a worker runs on, as the user writes it.

use std::fmt;
use std::str::FromStr;

/// A device request: `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum DeviceSpec {
    /// The first CUDA device when one is present, else the CPU.
    #[default]
    Auto,
    /// The CPU, always.
    Cpu,
    /// The CUDA device with this index.
    Cuda(usize),
}

/// A device string that is none of the accepted forms.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown device {0:?}: use auto, cpu, cuda or cuda:N (N a device index such as 0)")]
pub struct BadDevice(pub String);

impl FromStr for DeviceSpec {
    type Err = BadDevice;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| BadDevice(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        assert_eq!("auto".parse(), Ok(DeviceSpec::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
    }

    #[test]
    fn rejects_garbage_with_the_accepted_forms_in_the_message() {
        let err = "cuda:x".parse::<DeviceSpec>().unwrap_err();
        assert!(err.to_string().contains("auto, cpu, cuda or cuda:N"));
        assert!("tpu".parse::<DeviceSpec>().is_err());
    }
}
