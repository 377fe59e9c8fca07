//! The Kubernetes manifests against the code: every overlay renders and
//! passes strict schema validation; every `DREAMFARM_*` variable and flag
//! they set exists in the binary the image runs; their ports and probes
//! are what the processes serve (started with the manifests' own
//! environment), and the tls overlay's processes, given the files of the
//! Secrets it mounts, speak TLS to each other (the coordinator's gRPC and
//! the workers' change service); the workers' grace period covers the
//! drain; every pod is
//! locked down and every image pinned; the Dockerfiles follow the image
//! description. A renamed flag, a moved port or a shortened grace period
//! fails here, not on a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dreamfarm_proto::change_channels::{CHANGE_TLS_NAME, Channels};
use dreamfarm_tests::manifests::{Container, Object, bytes, find, overlays, render};
use dreamfarm_tests::pki::Pki;
use dreamfarm_tests::{binary, default_store, repo, run, worker_binary};

/// Seconds a CPU worker needs, at most, to finish a lease of the default
/// tile size after SIGTERM: the slowest device we support. Measured with
/// `cargo bench -p dreamfarm-tests --bench worker_drain` (README).
const MEASURED_DRAIN_SECONDS: u64 = 35;

/// Seconds a worker needs beyond its drain timeout to hand back and exit.
const EXIT_MARGIN_SECONDS: u64 = 10;

/// A value of deploy/images/layout.sh (`NAME=value` or `NAME='value'`).
fn layout(name: &str) -> String {
    let text = std::fs::read_to_string(repo().join("deploy/images/layout.sh")).expect("layout.sh");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("layout.sh sets no {name}"))
        .trim_matches('\'')
        .to_string()
}

/// The workspace's version, which the images are tagged with.
fn version() -> String {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    text.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("workspace version")
        .to_string()
}

/// The image (coordinator or worker) a container runs, from its reference.
fn image_kind(c: &Container) -> &'static str {
    let name = c.image.rsplit('/').next().unwrap_or(&c.image);
    if name.starts_with("dreamfarm-coordinator:") {
        "coordinator"
    } else if name.starts_with("dreamfarm-worker:") {
        "worker"
    } else {
        panic!("container {} runs an unknown image {}", c.name, c.image)
    }
}

/// The host binary that the container's image runs as its entry point.
fn entrypoint(c: &Container) -> &'static Path {
    let kind = image_kind(c);
    match layout(&format!("{kind}_entrypoint")).as_str() {
        r#"["dreamfarm"]"# => binary(),
        r#"["dreamfarm-worker"]"# => worker_binary(),
        other => panic!("{kind}'s entry point {other} is not a dreamfarm binary"),
    }
}

/// Every Deployment's containers in `objects`, with the pod around them.
fn deployments(objects: &[Object]) -> Vec<(&Object, dreamfarm_tests::manifests::PodSpec)> {
    objects
        .iter()
        .filter(|o| o.kind == "Deployment")
        .map(|o| (o, o.pod()))
        .collect()
}

/// The flags and environment variables in a command's `--help`.
fn help(program: &Path, args: &[String]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut c = Command::new(program);
    c.args(args).arg("--help");
    let (out, stdout, stderr) = run(c);
    assert!(
        out.status.success(),
        "{} --help: {stderr}",
        program.display()
    );
    let flags = stdout
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches([',', '.', ']']).to_string())
        .collect();
    let env = stdout
        .split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.split(['=', ']'])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    (flags, env)
}

#[test]
fn every_overlay_passes_strict_schema_validation() {
    let out = Command::new(repo().join(".venv/bin/python"))
        .arg("deploy/k8s/check.py")
        .current_dir(repo())
        .output()
        .expect("the virtualenv's Python runs (scripts/setup.sh makes it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for overlay in ["cpu", "gpu", "gpu-hpa", "tls"] {
        assert!(
            text.contains(&format!("{overlay}: ")),
            "{overlay} not checked: {text}"
        );
    }
}

#[test]
fn manifests_set_only_flags_and_variables_the_binaries_have() {
    for overlay in overlays() {
        let objects = render(&overlay);
        for (deployment, pod) in deployments(&objects) {
            for c in &pod.containers {
                let args: Vec<String> = c
                    .args
                    .iter()
                    .filter(|a| !a.starts_with('-'))
                    .cloned()
                    .collect();
                let (flags, env) = help(entrypoint(c), &args);
                let at = format!(
                    "{overlay}: {} container {}",
                    deployment.metadata.name, c.name
                );
                for var in c.env.iter().filter(|e| e.name.starts_with("DREAMFARM_")) {
                    assert!(
                        env.contains(&var.name),
                        "{at} sets {}, which {} does not read; it reads {env:?}",
                        var.name,
                        c.image
                    );
                }
                for arg in c.args.iter().filter(|a| a.starts_with("--")) {
                    let flag = arg.split('=').next().unwrap_or(arg);
                    assert!(
                        flags.contains(flag),
                        "{at} passes {flag}, which the binary does not take"
                    );
                }
            }
        }
    }
}

#[test]
fn the_workers_grace_period_covers_their_drain() {
    for overlay in overlays() {
        let objects = render(&overlay);
        let pod = find(&objects, "Deployment", "dreamfarm-worker").pod();
        let worker = &pod.containers[0];
        let drain: u64 = worker
            .env_value("DREAMFARM_DRAIN_TIMEOUT")
            .expect("the worker's drain timeout is set where the grace period is")
            .parse()
            .expect("seconds");
        let grace = pod
            .termination_grace_period_seconds
            .expect("a grace period");
        assert!(
            drain >= MEASURED_DRAIN_SECONDS,
            "{overlay}: a drain timeout of {drain}s cuts off a lease (measured {MEASURED_DRAIN_SECONDS}s on CPU)"
        );
        assert!(
            grace >= drain + EXIT_MARGIN_SECONDS,
            "{overlay}: terminationGracePeriodSeconds {grace} < drain timeout {drain} + {EXIT_MARGIN_SECONDS}s to exit: Kubernetes would kill workers mid-drain"
        );
    }
}

#[test]
fn processes_compute_on_the_cpus_they_request() {
    // libtorch, and host work split across `available_parallelism`, count
    // the node's cores, whatever the pod asked for: eight workers on a
    // 64-core node would each run 64 threads.
    for overlay in overlays() {
        let objects = render(&overlay);
        for (_, pod) in deployments(&objects) {
            for c in &pod.containers {
                let threads = c
                    .env_var("DREAMFARM_THREADS")
                    .and_then(|e| e.value_from.as_ref())
                    .unwrap_or_else(|| {
                        panic!(
                            "{overlay}: {}'s DREAMFARM_THREADS does not come from its resources",
                            c.name
                        )
                    });
                assert_eq!(
                    threads["resourceFieldRef"]["resource"], "requests.cpu",
                    "{overlay}: {}'s DREAMFARM_THREADS comes from {threads}",
                    c.name
                );
                let cpus = c.resource_field(&threads["resourceFieldRef"]);
                assert!(
                    cpus.parse::<u32>().is_ok_and(|n| n >= 1),
                    "{overlay}: {} requests {cpus} CPUs",
                    c.name
                );
            }
        }
    }
}

#[test]
fn pods_are_locked_down_and_images_pinned() {
    let uid: u64 = layout("DREAMFARM_UID").parse().expect("a uid");
    let tag = format!(":{}", version());
    for overlay in overlays() {
        let objects = render(&overlay);
        assert!(
            objects.iter().all(|o| o.kind != "Secret"),
            "{overlay} applies a Secret: the token must come from `kubectl create secret`"
        );
        for (deployment, pod) in deployments(&objects) {
            let at = format!("{overlay}: {}", deployment.metadata.name);
            let sc = &pod.security_context;
            assert_eq!(sc["runAsNonRoot"], true, "{at}");
            assert_eq!(sc["runAsUser"], uid, "{at}: the images' user is {uid}");
            assert_eq!(
                sc["fsGroup"], uid,
                "{at}: volumes must be writable by {uid}"
            );
            assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{at}");
            for c in &pod.containers {
                assert!(
                    c.image.ends_with(&tag),
                    "{at}: image {} is not pinned to {tag}",
                    c.image
                );
                let csc = &c.rest["securityContext"];
                assert_eq!(csc["readOnlyRootFilesystem"], true, "{at}");
                assert_eq!(csc["allowPrivilegeEscalation"], false, "{at}");
                assert_eq!(
                    csc["capabilities"]["drop"],
                    serde_json::json!(["ALL"]),
                    "{at}"
                );
                let mounts = c.rest["volumeMounts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let tmp = mounts
                    .iter()
                    .find(|m| m["mountPath"] == "/tmp")
                    .expect("scratch on /tmp");
                let scratch = pod
                    .volumes
                    .iter()
                    .find(|v| v["name"] == tmp["name"])
                    .expect("its volume");
                assert!(
                    scratch.get("emptyDir").is_some(),
                    "{at}: /tmp must be an emptyDir"
                );
            }
        }
        let coordinator = find(&objects, "Deployment", "dreamfarm-coordinator").pod();
        let c = &coordinator.containers[0];
        let limit = bytes(
            c.rest["resources"]["limits"]["memory"]
                .as_str()
                .expect("a memory limit"),
        );
        let budget = bytes(
            c.env_value("DREAMFARM_MAX_MEMORY")
                .expect("a memory budget"),
        );
        assert!(
            budget * 5 <= limit * 4,
            "{overlay}: the job budget {budget} leaves too little of the {limit}-byte limit to the process"
        );
        if overlay.starts_with("gpu") || overlay == "tls" {
            let worker = find(&objects, "Deployment", "dreamfarm-worker").pod();
            let w = &worker.containers[0];
            assert_eq!(
                w.rest["resources"]["limits"]["nvidia.com/gpu"], 1,
                "{overlay}"
            );
            assert_eq!(w.env_value("DREAMFARM_DEVICE"), Some("cuda"), "{overlay}");
        }
    }
}

#[test]
fn dockerfiles_follow_the_image_description() {
    let (out, _, stderr) = run({
        let mut c = Command::new("bash");
        c.args(["deploy/images/build.sh", "--dockerfiles", "--check"])
            .current_dir(repo());
        c
    });
    assert!(out.status.success(), "{stderr}");
}

/// A free port on loopback.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// The HTTP status of GET `path` on loopback `port` (0: no answer).
fn http_status(port: u16, path: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
    );
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A process started with a container's environment, on loopback.
struct Pod {
    child: Child,
    /// Container port → the loopback port it was moved to.
    ports: BTreeMap<u16, u16>,
    /// Its stderr.
    log: PathBuf,
}

impl Pod {
    /// Polls `cond` every 100 ms until it holds; fails naming `what`, with
    /// the process's log, once it has exited or after `limit`.
    fn wait_for(&mut self, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while !cond() {
            let log = || std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "waiting for {what}, the process exited ({status}); its log:\n{}",
                    log()
                );
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; the process's log:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a container started by [`start`] finds things on loopback.
struct Loopback<'a> {
    /// Scratch folder: absolute paths of the manifest land under it.
    scratch: &'a Path,
    /// Service name → the loopback port it forwards to.
    services: &'a BTreeMap<String, u16>,
    /// Container port → loopback port, where it must be a given one.
    fixed: BTreeMap<u16, u16>,
    /// Secret name → its keys' files, for the Secrets mounted as files.
    secrets: &'a Secrets,
}

/// Secret name → key → the file holding its value.
type Secrets = BTreeMap<&'static str, BTreeMap<&'static str, PathBuf>>;

/// Copies the files of the Secrets that `c` mounts (from `volumes`, its
/// pod's) to where it mounts them under `scratch`.
fn mount_secrets(c: &Container, volumes: &[serde_json::Value], scratch: &Path, secrets: &Secrets) {
    let mounts = c.rest["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for mount in mounts {
        let Some(secret) = volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .and_then(|v| v.get("secret"))
        else {
            continue;
        };
        let name = secret["secretName"].as_str().expect("a Secret's name");
        let files = secrets.get(name).unwrap_or_else(|| {
            panic!(
                "{} mounts the Secret {name}, which the test does not make",
                c.name
            )
        });
        let at = scratch.join(
            mount["mountPath"]
                .as_str()
                .expect("a mount path")
                .trim_start_matches('/'),
        );
        std::fs::create_dir_all(&at).expect("the mount's folder");
        for item in secret["items"]
            .as_array()
            .expect("the Secret's items listed")
        {
            let key = item["key"].as_str().expect("an item's key");
            let file = files
                .get(key)
                .unwrap_or_else(|| panic!("the Secret {name} has no key {key}"));
            std::fs::copy(
                file,
                at.join(item["path"].as_str().expect("an item's path")),
            )
            .expect("the Secret's file");
        }
    }
}

/// Starts `c` (of a pod with `volumes`) with its entry point, arguments
/// and environment, moved to loopback: listen addresses get free (or
/// `at.fixed`) ports, absolute paths land under the scratch folder (with
/// the Secrets it mounts there), a Service URL points at its loopback port
/// (as `localhost` over TLS, the name a test certificate carries), and
/// values from Secrets or fields are filled in. Logs go to `NAME.log` in
/// the scratch folder.
fn start(c: &Container, volumes: &[serde_json::Value], at: &Loopback<'_>) -> Pod {
    let scratch = at.scratch.join(&c.name);
    mount_secrets(c, volumes, &scratch, at.secrets);
    let mut ports = BTreeMap::new();
    let mut cmd = Command::new(entrypoint(c));
    cmd.args(&c.args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (name, value) in c.literal_env("manifest-test-token", "manifest-test-pod") {
        let value = if let Some(port) = value.strip_prefix("0.0.0.0:") {
            let port: u16 = port.parse().expect("a port");
            let local = at.fixed.get(&port).copied().unwrap_or_else(free_port);
            ports.insert(port, local);
            format!("127.0.0.1:{local}")
        } else if let Some((scheme, rest)) = value.split_once("://") {
            let service = rest.split(['.', ':']).next().unwrap_or_default();
            let local = at.services.get(service).unwrap_or_else(|| {
                panic!("{} dials {value}, not a Service of the overlay", c.name)
            });
            match scheme {
                "https" => format!("https://localhost:{local}"),
                _ => format!("http://127.0.0.1:{local}"),
            }
        } else if name == "DREAMFARM_DEVICE" {
            // The GPU overlays' workers, on this machine's CPU.
            "cpu".into()
        } else if name == "DREAMFARM_MODELS" {
            default_store().display().to_string()
        } else if value.starts_with('/') {
            let path: PathBuf = scratch.join(value.trim_start_matches('/'));
            // A file a Secret put there, or a folder.
            if !path.is_file() {
                std::fs::create_dir_all(&path).expect("scratch folder");
            }
            path.display().to_string()
        } else {
            value
        };
        cmd.env(name, value);
    }
    let log = at.scratch.join(format!("{}.log", c.name));
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("the entry point starts");
    Pod { child, ports, log }
}

/// The loopback port of `c`'s probe `probe` in `pod`.
fn probe_port(c: &Container, pod: &Pod, port: &str) -> u16 {
    let number = c
        .port(port)
        .unwrap_or_else(|| panic!("{}: probe port {port} is not declared", c.name));
    *pod.ports
        .get(&number)
        .unwrap_or_else(|| panic!("{}: nothing listens on port {number} ({port})", c.name))
}

#[test]
fn probes_and_ports_are_what_the_processes_serve() {
    serves_what_the_manifests_say("cpu", &Secrets::new());
}

#[test]
fn the_tls_overlays_processes_speak_tls_with_the_secrets_files() {
    // The files of the Secrets the tls overlay mounts, as deploy/TLS.md
    // makes them: the coordinator's certificate for its Service name
    // (localhost on loopback) and the workers' for dreamfarm-worker, both
    // signed by one CA.
    let pki = Pki::new(&["localhost"]);
    pki.issue("worker", &[CHANGE_TLS_NAME]);
    let secrets = Secrets::from([
        (
            "dreamfarm-tls",
            BTreeMap::from([
                ("tls.crt", pki.path("server.pem")),
                ("tls.key", pki.path("server-key.pem")),
                ("ca.crt", pki.path("ca.pem")),
            ]),
        ),
        (
            "dreamfarm-worker-tls",
            BTreeMap::from([
                ("tls.crt", pki.path("worker.pem")),
                ("tls.key", pki.path("worker-key.pem")),
            ]),
        ),
    ]);
    serves_what_the_manifests_say("tls", &secrets);
}

/// Checks that Prometheus finds each process's metrics where `objects`
/// point it: the port and path of its pod's `prometheus.io` annotations
/// serve them (the coordinator counting the worker, the worker connected),
/// each Service whose port is named `metrics` (the Operator's, with the
/// servicemonitor component) targets that port, and the pods' network
/// policy lets the monitoring namespace in there. `running` pairs each
/// Deployment's container with its process, both connected.
fn scraped_where_the_manifests_say(objects: &[Object], running: [(&Container, &Pod); 2]) {
    for (container, pod) in running {
        let component = container.name.as_str();
        let deployment = format!("dreamfarm-{component}");
        let template = &find(objects, "Deployment", &deployment).spec["template"];
        let notes = &template["metadata"]["annotations"];
        assert_eq!(notes["prometheus.io/scrape"], "true", "{deployment}");
        let port: u16 = notes["prometheus.io/port"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{deployment}: no prometheus.io/port"));
        let path = notes["prometheus.io/path"].as_str().unwrap_or("/metrics");
        let local = pod
            .ports
            .get(&port)
            .unwrap_or_else(|| panic!("{deployment}: nothing listens on the scraped port {port}"));
        let page = dreamfarm_tests::http::get(&format!("127.0.0.1:{local}"), path, &[]).text();
        // Its threads, as many as the CPUs it requests.
        let requested = container.resource_field(&serde_json::json!({"resource": "requests.cpu"}));
        let expect = match component {
            "worker" => [
                "dreamfarm_worker_connected 1\n".to_string(),
                format!("dreamfarm_worker_cpu_threads {requested}\n"),
            ],
            _ => [
                "dreamfarm_workers 1\n".to_string(),
                format!("dreamfarm_host_threads {requested}\n"),
            ],
        };
        for expect in expect {
            assert!(
                page.contains(&expect),
                "{deployment} serves no {expect:?} at {path} on {port}: {page}"
            );
        }
        let named = |p: &serde_json::Value| match p.as_str() {
            Some(name) => container.port(name),
            None => p.as_u64().and_then(|n| u16::try_from(n).ok()),
        };
        for service in objects.iter().filter(|o| {
            o.kind == "Service" && o.spec["selector"]["app.kubernetes.io/component"] == component
        }) {
            for p in service.spec["ports"].as_array().into_iter().flatten() {
                if p["name"] == "metrics" {
                    assert_eq!(
                        named(&p["targetPort"]),
                        Some(port),
                        "Service {} sends metrics elsewhere than {deployment}'s {port}",
                        service.metadata.name
                    );
                }
            }
        }
        let policy = &find(objects, "NetworkPolicy", &deployment).spec;
        let open = policy["ingress"].as_array().into_iter().flatten().any(|r| {
            r["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                == "monitoring"
                && r["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| named(&p["port"]) == Some(port))
        });
        assert!(
            open,
            "{deployment}'s network policy keeps Prometheus off port {port}: {policy}"
        );
    }
}

/// Starts `overlay`'s worker and coordinator on loopback with the files of
/// `secrets` where they mount them, and checks that their probes and ports
/// are what the processes serve: the worker alive but not ready without a
/// coordinator, ready once it is there and not once it left; its changes
/// served on its declared port (over TLS, with the certificate neighbours
/// check, where the overlay gives it one), which the workers' network
/// policy opens between them.
fn serves_what_the_manifests_say(overlay: &str, secrets: &Secrets) {
    let objects = render(overlay);
    let scratch = tempfile::tempdir().expect("tempdir");
    let service = find(&objects, "Service", "dreamfarm-coordinator");
    let coordinator_pod = find(&objects, "Deployment", "dreamfarm-coordinator").pod();
    let coordinator = &coordinator_pod.containers[0];
    let worker_pod = find(&objects, "Deployment", "dreamfarm-worker").pod();
    let worker = &worker_pod.containers[0];

    // The Service reaches the coordinator's named gRPC port, and the
    // worker dials that Service port.
    let grpc = service.spec["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == "grpc"))
        .expect("a grpc Service port");
    let target = grpc["targetPort"].as_str().expect("a named targetPort");
    let grpc_port = coordinator
        .port(target)
        .expect("the coordinator declares the targetPort");
    let url = worker
        .env_value("DREAMFARM_COORDINATOR")
        .expect("the worker's coordinator URL");
    assert!(
        url.ends_with(&format!(":{}", grpc["port"])),
        "the worker dials {url}, the Service listens on {}",
        grpc["port"]
    );

    // A worker with no coordinator yet: alive, not ready.
    let grpc_local = free_port();
    let services = BTreeMap::from([(service.metadata.name.clone(), grpc_local)]);
    let loopback = |fixed| Loopback {
        scratch: scratch.path(),
        services: &services,
        fixed,
        secrets,
    };
    let mut w = start(worker, &worker_pod.volumes, &loopback(BTreeMap::new()));
    let probes = worker.http_probes();
    let ready = probes
        .iter()
        .find(|p| p.kind == "readinessProbe")
        .expect("worker readiness");
    let alive = probes
        .iter()
        .find(|p| p.kind == "livenessProbe")
        .expect("worker liveness");
    let (w_ready, w_alive) = (
        probe_port(worker, &w, &ready.port),
        probe_port(worker, &w, &alive.port),
    );
    w.wait_for(
        "the worker's liveness probe",
        Duration::from_secs(30),
        || http_status(w_alive, &alive.path) == 200,
    );
    assert_eq!(
        http_status(w_ready, &ready.path),
        503,
        "ready without a coordinator"
    );

    // The coordinator, its gRPC port where the Service sends it.
    let mut c = start(
        coordinator,
        &coordinator_pod.volumes,
        &loopback(BTreeMap::from([(grpc_port, grpc_local)])),
    );
    assert_eq!(
        c.ports.get(&grpc_port),
        Some(&grpc_local),
        "no listen address of the coordinator uses its gRPC port {grpc_port}"
    );
    for probe in coordinator.http_probes() {
        let port = probe_port(coordinator, &c, &probe.port);
        c.wait_for(
            &format!("the coordinator's {}", probe.kind),
            Duration::from_secs(30),
            || http_status(port, &probe.path) == 200,
        );
    }
    w.wait_for(
        "the worker to connect and turn ready",
        Duration::from_secs(30),
        || http_status(w_ready, &ready.path) == 200,
    );
    scraped_where_the_manifests_say(&objects, [(coordinator, &c), (worker, &w)]);
    // It serves its changes to the other workers on its declared port
    // `changes`, at the pod's IP, which the workers' policy opens to each
    // other.
    let changes = probe_port(worker, &w, "changes");
    match worker.env_value("DREAMFARM_CHANGE_TLS_CERT") {
        None => assert!(
            std::net::TcpStream::connect(("127.0.0.1", changes)).is_ok(),
            "nothing serves changes on port {changes}"
        ),
        Some(_) => {
            // The handshake a neighbour makes: the cluster's CA, the
            // workers' name.
            let ca = std::fs::read(&secrets["dreamfarm-tls"]["ca.crt"]).expect("the CA");
            let neighbour = Channels::new(Some(ca), CHANGE_TLS_NAME);
            let runtime = tokio::runtime::Runtime::new().expect("a runtime");
            let address = format!("https://127.0.0.1:{changes}");
            if let Err(e) = runtime.block_on(neighbour.handshake(&address)) {
                panic!(
                    "{overlay}: the worker's change service at {address} refused a neighbour: {e}"
                );
            }
        }
    }
    let policy = &find(&objects, "NetworkPolicy", "dreamfarm-worker").spec;
    let opens = |rules: &str, peers: &str, port: &str| {
        policy[rules].as_array().is_some_and(|rules| {
            rules.iter().any(|r| {
                r["ports"][0]["port"].to_string().trim_matches('"') == port
                    && r[peers][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                        == "worker"
            })
        })
    };
    let number = worker.port("changes").expect("a changes port").to_string();
    assert!(
        opens("ingress", "from", "changes") && opens("egress", "to", &number),
        "the workers' network policy does not open the change port between workers: {policy}"
    );
    drop(c);
    w.wait_for(
        "the worker to notice the coordinator left",
        Duration::from_secs(30),
        || http_status(w_ready, &ready.path) == 503,
    );
    assert_eq!(
        http_status(w_alive, &alive.path),
        200,
        "a worker waiting for its coordinator is alive"
    );
    drop(w);
}
