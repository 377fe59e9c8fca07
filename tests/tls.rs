//! The cluster over TLS, as separate processes: a coordinator serving a
//! certificate signed by a test CA, workers and a client that trust that
//! CA, the workers serving each other their changes over TLS too, and
//! frames byte-identical to the single-machine render. And the mistakes a
//! new user makes, each told in words that say what to fix: a self-signed
//! CA certificate as the coordinator's own (refused at start, and
//! explained by a client that meets one), a CA or name the client does
//! not expect, a client speaking plaintext to a TLS coordinator or TLS to
//! a plaintext one, and a worker's change certificate its neighbours
//! would refuse.

use std::path::Path;
use std::time::{Duration, Instant};

use dreamfarm_proto::change_channels::CHANGE_TLS_NAME;
use dreamfarm_tests::cluster::{Coordinator, TOKEN, coordinator_fails};
use dreamfarm_tests::pki::Pki;
use dreamfarm_tests::small_job::{LIMIT, job, reference};
use dreamfarm_tests::{dreamfarm, run, run_ok, run_refused, wait_for};

/// A TLS server on a free loopback port that presents `cert` (PEM) and
/// serves nothing: it stands in for a coordinator with a certificate no
/// coordinator would start with. Served until the runtime is dropped.
fn tls_server(cert: &Path, key: &Path) -> (u16, tokio::runtime::Runtime) {
    use tonic::transport::{Identity, Server, ServerTlsConfig};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let identity = Identity::from_pem(
        std::fs::read(cert).expect("cert"),
        std::fs::read(key).expect("key"),
    );
    let mut server = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(identity))
        .expect("TLS config");
    let router = server.add_routes(tonic::service::Routes::default());
    runtime.spawn(
        router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (port, runtime)
}

/// `dreamfarm status`, trusting `ca`, against a TLS server on localhost
/// that presents `cert` must fail: the server's URL, and the stderr.
fn status_against(cert: &Path, key: &Path, ca: &Path) -> (String, String) {
    let (port, _server) = tls_server(cert, key);
    let url = format!("https://localhost:{port}");
    let stderr = status_fails(&url, Some(ca));
    (url, stderr)
}

/// `dreamfarm status` against `url` must fail: its stderr.
fn status_fails(url: &str, ca: Option<&Path>) -> String {
    let mut c = dreamfarm(&["status", "--coordinator", url, "--token", TOKEN]);
    if let Some(ca) = ca {
        c.arg("--tls-ca").arg(ca);
    }
    let (out, _, stderr) = run(c);
    assert!(!out.status.success(), "status succeeded against {url}");
    stderr
}

/// A coordinator serving a certificate for localhost and 127.0.0.1 signed
/// by a test CA, and the PKI (which must outlive it).
fn tls_coordinator() -> (Pki, Coordinator) {
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let c = Coordinator::start_tls(
        &pki.path("server.pem"),
        &pki.path("server-key.pem"),
        &pki.path("ca.pem"),
    );
    (pki, c)
}

/// Checks that a client and a worker dialling `c` at `url` are told
/// `advice`: the client fails with it, the worker logs it (and keeps
/// trying).
fn both_told(c: &Coordinator, url: &str, advice: &str) {
    let (out, _, stderr) = run(c.client_at(url, "status", &[]));
    assert!(!out.status.success());
    assert!(stderr.contains(advice), "{stderr}");
    let worker = c.worker_via("misdialled", url);
    wait_for("the worker's advice", LIMIT, || {
        worker.log().contains(advice)
    });
}

/// `url` with its scheme replaced by `scheme`.
fn with_scheme(url: &str, scheme: &str) -> String {
    let rest = url.split_once("://").expect("URL with a scheme").1;
    format!("{scheme}://{rest}")
}

#[test]
fn a_job_over_tls_gives_single_machine_frames() {
    // Frame 0 goes by tiles through the coordinator, frames 1 and 2 by
    // regions on workers that fetch each other's changes over TLS (their
    // certificates for dreamfarm-worker, signed by the cluster's CA).
    let (pki, c) = tls_coordinator();
    assert!(c.url.starts_with("https://localhost:"), "{}", c.url);
    pki.issue("worker", &[CHANGE_TLS_NAME]);
    let flags = pki.change_tls("worker");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _pool: Vec<_> = (0..2)
        .map(|i| c.worker_serving_changes(&format!("tls{i}"), &flags))
        .collect();
    let id = c.submit(&job("tls"));
    let watch = run_ok(c.client("watch", &[&id]));
    assert!(watch.contains("done"), "{watch}");
    assert!(
        c.fetch_frames(&id) == reference(),
        "frames over TLS differ from the single-machine render"
    );
    let regions = c.metric("dreamfarm_regions_completed_total");
    assert!(regions >= 2.0 * 6.0, "{regions} regions answered");
    // A client that does not trust the test CA is told to pass it.
    let stderr = status_fails(&c.url, None);
    assert!(
        stderr.contains("signed by a CA this side does not trust (rustls: UnknownIssuer)")
            && stderr.contains("--tls-ca FILE"),
        "{stderr}"
    );
}

#[test]
fn a_self_signed_ca_certificate_is_refused_at_start_with_advice() {
    let pki = Pki::new(&["localhost"]);
    // The new user's first try: one self-signed certificate, CA:TRUE,
    // used as the coordinator's own.
    let cert = pki.path("ca.pem");
    let (status, stderr) = coordinator_fails(&[
        "--tls-cert",
        cert.to_str().expect("UTF-8"),
        "--tls-key",
        pki.path("ca-key.pem").to_str().expect("UTF-8"),
    ]);
    assert!(!status.success(), "{stderr}");
    let expected = format!(
        "--tls-cert {} is a CA certificate (basicConstraints CA:TRUE); TLS clients refuse a CA certificate as a server's own (rustls: CaUsedAsEndEntity). Make a CA, then a server certificate signed by it: see deploy/TLS.md",
        cert.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn a_client_that_refuses_a_certificate_says_what_to_fix() {
    let pki = Pki::new(&["elsewhere.example"]);
    let ca = pki.path("ca.pem");
    // A server presenting a CA certificate as its own.
    let (url, stderr) = status_against(&ca, &pki.path("ca-key.pem"), &ca);
    assert!(
        stderr.contains(&format!(
            "the coordinator at {url} presents a CA certificate as its own, which TLS clients refuse (rustls: CaUsedAsEndEntity)"
        )) && stderr.contains("deploy/TLS.md"),
        "{stderr}"
    );
    // A certificate for another name.
    let (url, stderr) = status_against(&pki.path("server.pem"), &pki.path("server-key.pem"), &ca);
    assert!(
        stderr.contains(&format!(
            "the coordinator at {url} presents a certificate that is not for localhost"
        )) && stderr.contains("elsewhere.example"),
        "{stderr}"
    );
}

#[test]
fn a_plaintext_client_of_a_tls_coordinator_is_told_to_use_https() {
    let (_pki, c) = tls_coordinator();
    let http = with_scheme(&c.url, "http");
    let advice = format!(
        "the coordinator at {http} answered with TLS: use {} (and --tls-ca FILE for a private CA)",
        c.url
    );
    both_told(&c, &http, &advice);
    // `watch` does not take the mistake for an outage to wait out.
    let start = Instant::now();
    let (out, _, stderr) = run(c.client_at(&http, "watch", &["any", "--reconnect-for", "20"]));
    assert!(!out.status.success());
    assert!(stderr.contains(&advice), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(15), "watch waited");
}

#[test]
fn a_tls_client_of_a_plaintext_coordinator_is_told_to_use_http() {
    let c = Coordinator::start();
    let https = with_scheme(&c.url, "https");
    let advice = format!(
        "the coordinator at {https} is not serving TLS: use {}",
        c.url
    );
    both_told(&c, &https, &advice);
}

#[test]
fn a_change_certificate_neighbours_would_refuse_stops_the_worker_at_start() {
    let pki = Pki::new(&["localhost"]);
    pki.issue("elsewhere", &["worker.example"]);
    let other = Pki::new(&[CHANGE_TLS_NAME]);
    let ca = pki.path("ca.pem");
    let refusal = |flags: &[String]| {
        let mut c = dreamfarm(&["worker", "--device", "cpu"]);
        c.args(["--coordinator", "https://localhost:1", "--tls-ca"])
            .arg(&ca)
            .args(["--change-listen", "127.0.0.1:0"])
            .args(flags);
        run_refused(c)
    };
    let said = refusal(&pki.change_tls("elsewhere"));
    assert!(
        said.contains("is not for dreamfarm-worker, the name the workers check")
            && said.contains("Fix: make it with DNS:dreamfarm-worker in subjectAltName"),
        "{said}"
    );
    let said = refusal(&other.change_tls("server"));
    assert!(
        said.contains("is not signed by the CA the workers trust (--tls-ca"),
        "{said}"
    );
    let said = refusal(&[
        "--change-tls-cert".into(),
        ca.display().to_string(),
        "--change-tls-key".into(),
        pki.path("ca-key.pem").display().to_string(),
    ]);
    assert!(said.contains("is a CA certificate"), "{said}");
    pki.issue("worker", &[CHANGE_TLS_NAME]);
    let mut flags = pki.change_tls("worker");
    flags[3] = pki.path("server-key.pem").display().to_string();
    let said = refusal(&flags);
    assert!(
        said.contains("is not the private key of --change-tls-cert"),
        "{said}"
    );
    // Beside a TLS coordinator, a change service must have TLS.
    let said = refusal(&[]);
    assert!(
        said.contains("would cross the network in clear")
            && said.contains("--change-tls-cert and --change-tls-key"),
        "{said}"
    );
}
