//! The Kubernetes manifests as `kubectl kustomize` renders an overlay, read
//! the way the cluster reads them: each Deployment's pod and containers,
//! their environment, ports and probes.

use std::collections::BTreeMap;
use std::process::Command;

use serde::Deserialize;

use crate::repo;

/// One object of a rendered overlay (only what the tests read).
#[derive(Debug, Deserialize)]
pub struct Object {
    /// `Deployment`, `Service`, …
    pub kind: String,
    /// Name and labels.
    pub metadata: Metadata,
    /// The kind's spec, read further by the accessors below.
    #[serde(default)]
    pub spec: serde_json::Value,
}

/// An object's name.
#[derive(Debug, Deserialize)]
pub struct Metadata {
    /// `metadata.name`.
    pub name: String,
}

/// A pod template's spec.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// The containers.
    pub containers: Vec<Container>,
    /// Seconds between SIGTERM and SIGKILL.
    pub termination_grace_period_seconds: Option<u64>,
    /// The pod's security context, as written.
    #[serde(default)]
    pub security_context: serde_json::Value,
    /// Volumes, as written.
    #[serde(default)]
    pub volumes: Vec<serde_json::Value>,
}

/// A container of a pod.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Its name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Arguments after the entry point.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment.
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// Declared ports.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Probes by kind (`livenessProbe`, …), as written.
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

/// One environment variable.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Its name.
    pub name: String,
    /// A literal value (absent when it comes from a Secret or a field).
    pub value: Option<String>,
    /// Where the value comes from otherwise.
    pub value_from: Option<serde_json::Value>,
}

/// A declared container port.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// Its name, which probes and Services refer to.
    pub name: String,
    /// The port number.
    pub container_port: u16,
}

/// An HTTP probe: the port's name or number and the path.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpProbe {
    /// `livenessProbe`, `readinessProbe` or `startupProbe`.
    pub kind: String,
    /// The port, by name or number.
    pub port: String,
    /// The path requested.
    pub path: String,
}

impl Object {
    /// A Deployment's pod spec.
    pub fn pod(&self) -> PodSpec {
        serde_json::from_value(self.spec["template"]["spec"].clone())
            .unwrap_or_else(|e| panic!("{} {}: pod spec: {e}", self.kind, self.metadata.name))
    }
}

impl Container {
    /// Variable `name`, if the manifest sets it.
    pub fn env_var(&self, name: &str) -> Option<&EnvVar> {
        self.env.iter().find(|e| e.name == name)
    }

    /// The literal value of variable `name`, if the manifest sets one.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env_var(name).and_then(|e| e.value.as_deref())
    }

    /// The environment as the pod gets it, with values that come from a
    /// Secret (the token), a field (the pod's name) or the container's
    /// resources (its CPUs) filled in.
    pub fn literal_env(&self, token: &str, pod: &str) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|var| {
                let value = match (&var.value, &var.value_from) {
                    (Some(v), _) => v.clone(),
                    (None, Some(from)) if from.get("secretKeyRef").is_some() => token.into(),
                    // The pod's IP, on loopback.
                    (None, Some(from)) if from["fieldRef"]["fieldPath"] == "status.podIP" => {
                        "127.0.0.1".into()
                    }
                    (None, Some(from)) if from.get("resourceFieldRef").is_some() => {
                        self.resource_field(&from["resourceFieldRef"])
                    }
                    (None, Some(_)) => pod.into(),
                    (None, None) => String::new(),
                };
                (var.name.clone(), value)
            })
            .collect()
    }

    /// A `resourceFieldRef`'s value as the kubelet gives it: the
    /// container's CPU request or limit over the divisor, rounded up
    /// (`requests.cpu: 500m` is "1" with the default divisor of 1).
    pub fn resource_field(&self, field: &serde_json::Value) -> String {
        let resource = field["resource"]
            .as_str()
            .expect("resourceFieldRef.resource");
        let (kind, name) = resource
            .split_once('.')
            .unwrap_or_else(|| panic!("{}: resource {resource}", self.name));
        assert_eq!(name, "cpu", "{}: only CPU fields are read here", self.name);
        let quantity = |v: &serde_json::Value| -> f64 {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match text.strip_suffix('m') {
                Some(milli) => milli.parse::<f64>().map(|m| m / 1000.0),
                None => text.parse(),
            }
            .unwrap_or_else(|e| panic!("{}: CPU quantity {text:?}: {e}", self.name))
        };
        let value = quantity(&self.rest["resources"][kind][name]);
        let divisor = field.get("divisor").map_or(1.0, quantity);
        format!("{}", (value / divisor).ceil())
    }

    /// The number of the port called `name` (or written as a number).
    pub fn port(&self, name: &str) -> Option<u16> {
        name.parse().ok().or_else(|| {
            self.ports
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.container_port)
        })
    }

    /// Every probe, which must be HTTP GETs (they work with TLS on).
    pub fn http_probes(&self) -> Vec<HttpProbe> {
        self.rest
            .iter()
            .filter(|(k, _)| k.ends_with("Probe"))
            .map(|(kind, p)| {
                let get = &p["httpGet"];
                let port = match &get["port"] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => panic!("{}: {kind} is not an httpGet probe: {p}", self.name),
                };
                HttpProbe {
                    kind: kind.clone(),
                    port,
                    path: get["path"].as_str().unwrap_or("/").to_string(),
                }
            })
            .collect()
    }
}

/// The overlays under deploy/k8s/overlays.
pub fn overlays() -> Vec<String> {
    let dir = repo().join("deploy/k8s/overlays");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The objects of `overlay`, rendered by `kubectl kustomize`.
pub fn render(overlay: &str) -> Vec<Object> {
    let out = Command::new("kubectl")
        .args(["kustomize", &format!("deploy/k8s/overlays/{overlay}")])
        .current_dir(repo())
        .output()
        .expect("kubectl runs (it renders the manifests offline; install it to run these tests)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Object::deserialize(doc).unwrap_or_else(|e| panic!("{overlay}: {e}")))
        .collect()
}

/// The object of `kind` called `name` in `objects`.
pub fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a Object {
    objects
        .iter()
        .find(|o| o.kind == kind && o.metadata.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Bytes of a Kubernetes quantity (`8Gi`, `512Mi`) or of a dreamfarm size
/// (`6GiB`).
pub fn bytes(quantity: &str) -> u64 {
    let units = [
        ("KiB", 1u64 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
    ];
    for (suffix, scale) in units {
        if let Some(n) = quantity.strip_suffix(suffix) {
            return n.parse::<u64>().expect("a whole number") * scale;
        }
    }
    quantity.parse().expect("a number of bytes")
}
