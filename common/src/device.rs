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

/// The devices of `dreamfarm render`, `dream` or a cluster worker: one as
/// [`DeviceSpec`] reads it, several separated by commas (`cuda:0,cuda:1`),
/// each then computing tiles of the same job, or `all`. A multi-GPU
/// machine renders one job on all its GPUs in one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Devices {
    /// These devices, one embedded worker each (never empty).
    Each(Vec<DeviceSpec>),
    /// Every CUDA device libtorch sees; the CPU when it sees none.
    All,
}

/// A `--device` list with an entry that is not a device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown device {0:?}: use auto, cpu, cuda or cuda:N (N a device index such as 0), \
     several of those separated by commas (cuda:0,cuda:1), or all"
)]
pub struct BadDevices(pub String);

impl FromStr for Devices {
    type Err = BadDevices;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        s.split(',')
            .map(|one| one.parse().map_err(|BadDevice(one)| BadDevices(one)))
            .collect::<Result<Vec<DeviceSpec>, _>>()
            .map(Self::Each)
    }
}

impl fmt::Display for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Each(devices) => {
                for (i, device) in devices.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{device}")?;
                }
                Ok(())
            }
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

    #[test]
    fn a_device_list_reads_one_device_several_or_all() {
        assert_eq!("auto".parse(), Ok(Devices::Each(vec![DeviceSpec::Auto])));
        assert_eq!(
            "cuda:0, CUDA:1,cpu".parse(),
            Ok(Devices::Each(vec![
                DeviceSpec::Cuda(0),
                DeviceSpec::Cuda(1),
                DeviceSpec::Cpu
            ]))
        );
        assert_eq!(" All ".parse(), Ok(Devices::All));
        assert_eq!(
            "cuda:0,cuda:1".parse::<Devices>().map(|d| d.to_string()),
            Ok("cuda:0,cuda:1".to_string())
        );
        assert_eq!(Devices::Each(vec![DeviceSpec::Cpu]).to_string(), "cpu");
    }

    #[test]
    fn a_device_list_names_its_bad_entry() {
        let err = "cuda:0,,cuda:1".parse::<Devices>().unwrap_err();
        assert_eq!(err, BadDevices(String::new()));
        let err = "cuda:0,tpu".parse::<Devices>().unwrap_err();
        assert!(
            err.to_string().starts_with("unknown device \"tpu\""),
            "{err}"
        );
        assert!(err.to_string().contains("separated by commas"), "{err}");
        assert!("".parse::<Devices>().is_err());
    }
}
