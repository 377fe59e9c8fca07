//! Smoke test of the built OCI images (deploy/images/build.sh), run as the
//! cpu overlay runs them: the coordinator image and a worker image started
//! with `buildah run --isolation chroot` (Kubernetes and `podman run`
//! cannot run here) with exactly the arguments, environment, user and
//! volumes of the rendered manifests, on the host's loopback; a small job
//! submitted from outside renders frames identical to `dreamfarm render`.
//!
//!     deploy/images/build.sh && cargo test --release -p dreamfarm-tests --test images -- --ignored
//!
//! Needs root, buildah and the images: not part of the default run (the
//! build takes about ten minutes).

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dreamfarm_tests::cluster::TOKEN;
use dreamfarm_tests::manifests::{Container, find, render};
use dreamfarm_tests::small_job;
use dreamfarm_tests::{dreamfarm, frame_bytes, run, run_ok, wait_for};

/// A working container of `image`, removed on drop, and its process.
struct Running {
    container: String,
    child: Option<Child>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // `buildah run` and the program it runs share a process group
            // of their own: killing buildah alone would leave the program
            // running, still holding its ports.
            // SAFETY: kill(2) of the process group our child leads.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
        let _ = Command::new("buildah")
            .args(["rm", &self.container])
            .output();
    }
}

/// The image a container runs, as build.sh tagged it here (`localhost/`).
fn local_image(c: &Container) -> String {
    let name = c.image.rsplit('/').next().unwrap_or(&c.image);
    format!("localhost/{name}")
}

/// The image's entry point, from its own configuration.
fn entrypoint(image: &str) -> Vec<String> {
    let (out, stdout, stderr) = run({
        let mut c = Command::new("buildah");
        c.args(["inspect", "--type", "image", image]);
        c
    });
    assert!(
        out.status.success(),
        "{image}: {stderr} (run deploy/images/build.sh first)"
    );
    let config: serde_json::Value = serde_json::from_str(&stdout).expect("buildah's JSON");
    serde_json::from_value(config["OCIv1"]["config"]["Entrypoint"].clone())
        .expect("an entry point list")
}

/// Starts container `c` of the manifest: its image's entry point and the
/// manifest's args, env, user and volumes (`mounts`: path in the container
/// → host folder), on the host network, with `hosts` (`NAME:IP`) resolved
/// as a cluster's DNS would, logging to `log`.
fn start(
    c: &Container,
    user: u64,
    mounts: &BTreeMap<&str, &Path>,
    hosts: &[String],
    log: &Path,
) -> Running {
    let image = local_image(c);
    let entry = entrypoint(&image);
    let (out, stdout, stderr) = run({
        let mut cmd = Command::new("buildah");
        cmd.args(["from", "--quiet", "--pull=never"]);
        for host in hosts {
            cmd.args(["--add-host", host]);
        }
        cmd.arg(&image);
        cmd
    });
    assert!(out.status.success(), "buildah from {image}: {stderr}");
    let mut running = Running {
        container: stdout.trim().to_string(),
        child: None,
    };
    let mut cmd = Command::new("buildah");
    cmd.args(["run", "--isolation", "chroot", "--network", "host"])
        .args(["--user", &format!("{user}:{user}")]);
    for (inside, host) in mounts {
        cmd.args(["--volume", &format!("{}:{inside}", host.display())]);
    }
    for (name, value) in c.literal_env(TOKEN, &format!("{}-pod", c.name)) {
        cmd.args(["--env", &format!("{name}={value}")]);
    }
    cmd.arg(&running.container)
        .arg("--")
        .args(&entry)
        .args(&c.args);
    let child = cmd
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("buildah runs");
    running.child = Some(child);
    running
}

/// A folder the images' user may write.
fn writable(dir: &Path, uid: u64) -> &Path {
    std::fs::create_dir_all(dir).expect("folder");
    let c = std::ffi::CString::new(dir.to_str().expect("UTF-8")).expect("path");
    // SAFETY: chown(2) on a path we created.
    let rc = unsafe { libc::chown(c.as_ptr(), uid as u32, uid as u32) };
    assert_eq!(rc, 0, "chown {}", dir.display());
    dir
}

#[test]
#[ignore = "needs root, buildah and deploy/images/build.sh's images"]
fn the_images_render_what_dreamfarm_render_does() {
    let objects = render("cpu");
    let coordinator_pod = find(&objects, "Deployment", "dreamfarm-coordinator").pod();
    let worker_pod = find(&objects, "Deployment", "dreamfarm-worker").pod();
    let (coordinator, worker) = (&coordinator_pod.containers[0], &worker_pod.containers[0]);
    let uid = coordinator_pod.security_context["runAsUser"]
        .as_u64()
        .expect("runAsUser");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // The worker dials the Service by name, as in the cluster: here the
    // name resolves to loopback, where the coordinator listens.
    let url = worker
        .env_value("DREAMFARM_COORDINATOR")
        .expect("the worker's URL");
    let service = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .expect("a host in the URL");
    let hosts = [format!("{service}:127.0.0.1")];

    let (data, c_tmp, w_tmp) = (
        d.join("data"),
        d.join("coordinator-tmp"),
        d.join("worker-tmp"),
    );
    let c_mounts = BTreeMap::from([
        ("/var/lib/dreamfarm", writable(&data, uid)),
        ("/tmp", writable(&c_tmp, uid)),
    ]);
    let w_mounts = BTreeMap::from([("/tmp", writable(&w_tmp, uid))]);
    let _c = start(coordinator, uid, &c_mounts, &[], &d.join("coordinator.log"));
    let _w = start(worker, uid, &w_mounts, &hosts, &d.join("worker.log"));

    let grpc = coordinator.port("grpc").expect("grpc port");
    let url = format!("http://127.0.0.1:{grpc}");
    let client = |sub: &str, args: &[&str]| {
        let mut c = dreamfarm(&[sub, "--coordinator", &url, "--token", TOKEN]);
        c.args(args);
        c
    };
    let log = |name: &str| std::fs::read_to_string(d.join(name)).unwrap_or_default();
    wait_for(
        "the coordinator image to serve",
        Duration::from_secs(120),
        || run(client("status", &[])).0.status.success(),
    );
    let job = run_ok(client("submit", &small_job::job("images")))
        .trim()
        .to_string();
    let (out, _, stderr) = run({
        let mut c = client("watch", &[&job]);
        c.stdout(Stdio::null());
        c
    });
    assert!(
        out.status.success(),
        "{stderr}\ncoordinator: {}\nworker: {}",
        log("coordinator.log"),
        log("worker.log")
    );
    let fetched = d.join("fetched");
    run_ok(client(
        "fetch",
        &[&job, "--out", fetched.to_str().expect("UTF-8")],
    ));
    let frames = frame_bytes(&fetched);
    assert!(!frames.is_empty(), "no frames fetched");
    assert!(
        frames == small_job::reference(),
        "the images' frames differ from dreamfarm render's"
    );
}
