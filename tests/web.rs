//! The web interface against a real coordinator and worker: headless
//! Chromium logs in through the form, sees the job's row with its latest
//! frame loaded, opens the job and pauses it with a click (the coordinator
//! agrees), saving screenshots (into docs/ with `DREAMFARM_UPDATE_DOCS=1`,
//! where the README shows them; else beside the build); over plain HTTP every page,
//! image and download refuses a missing or wrong token, cross-site
//! actions are refused, `/metrics` stays open, bad input gets 400/404;
//! and `dreamfarm render --ui` serves its job's page.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use dreamfarm_tests::browser::Browser;
use dreamfarm_tests::cluster::{Coordinator, TOKEN};
use dreamfarm_tests::http::{Reply, get, request};
use dreamfarm_tests::{dreamfarm, repo, wait_for};

/// Where screenshot `name` goes: docs/, which the README shows, when
/// `DREAMFARM_UPDATE_DOCS` is set; else the build's scratch folder, so a
/// test run leaves the checkout as it found it.
fn screenshot_path(name: &str) -> PathBuf {
    if std::env::var_os("DREAMFARM_UPDATE_DOCS").is_some() {
        repo().join("docs").join(name)
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
    }
}

/// A job of small, quick frames (well under a second each on a CPU), so
/// the first frame comes soon and the job runs on while the test clicks.
const JOB: &[&str] = &[
    "--input",
    "assets/astronaut.png",
    "--size",
    "160x120",
    "--octaves",
    "1",
    "--iterations",
    "2",
    "--step-size",
    "0.06",
    "--tile-size",
    "96",
    "--tile-margin",
    "16",
    "--blend-band",
    "8",
    "--zoom-factor",
    "1.04",
    "--rotate",
    "0.5",
];

/// Longest wait for anything (the worker's first frame included).
const LIMIT: Duration = Duration::from_secs(120);

/// True when every thumbnail on the page takes the one box they all get,
/// whether its frame has come or not: a row that grew when its first frame
/// came would move the rows below it away from a pointer about to click.
const THUMBNAILS_KEEP_THEIR_BOX: &str = "Array.from(document.querySelectorAll('img.thumb'))\
     .every((i) => { const r = i.getBoundingClientRect(); return r.width === 128 && r.height === 72; })";

/// Asserts [`THUMBNAILS_KEEP_THEIR_BOX`] of the page `when`.
fn assert_thumbnails_keep_their_box(browser: &mut Browser, when: &str) {
    assert_eq!(
        browser.eval(THUMBNAILS_KEEP_THEIR_BOX),
        serde_json::json!(true),
        "{when}, a thumbnail is not in its 128x72 box: {}",
        browser.eval(
            "JSON.stringify(Array.from(document.querySelectorAll('img.thumb'), \
             (i) => [i.className, i.getBoundingClientRect().width, i.getBoundingClientRect().height]))"
        )
    );
}

/// Submits the job as `name` with `frames` frames; its id.
fn submit(c: &Coordinator, name: &str, frames: u32) -> String {
    let frames = frames.to_string();
    let mut args = JOB.to_vec();
    args.extend(["--name", name, "--frames", &frames]);
    c.submit(&args)
}

/// The job's state word in `dreamfarm status JOB`.
fn state(c: &Coordinator, id: &str) -> String {
    c.status(id)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// The id as a URL path segment, every byte percent-encoded (ids hold
/// the job's name, which may hold spaces and `<`).
fn segment(id: &str) -> String {
    id.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// A JavaScript string literal of `s`.
fn js(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[test]
fn a_browser_logs_in_sees_the_live_preview_and_pauses_the_job() {
    // First, so that a machine without Chromium fails at once.
    let mut browser = Browser::start();
    let c = Coordinator::start();
    let _worker = c.worker("w");
    let id = submit(&c, "astronaut-zoom", 1000);
    let base = format!("http://{}", c.metrics);

    // Not logged in: the page asks for the token.
    browser.open(&format!("{base}/"), &format!("{base}/"));
    browser.wait_for(
        "the login form",
        "!!document.querySelector('form.login')",
        LIMIT,
    );
    browser.type_into("input[name=token]", TOKEN);
    browser.click("form.login button[type=submit]");
    let row = format!(
        "document.querySelector('tr[data-job=' + {} + ']')",
        js(&js(&id))
    );
    browser.wait_for(
        "the job's row after logging in",
        &format!("location.pathname === '/' && document.readyState === 'complete' && !!{row}"),
        LIMIT,
    );
    assert_thumbnails_keep_their_box(&mut browser, "as the index is drawn");
    assert_eq!(
        browser.eval("document.cookie.includes('dreamfarm_session')"),
        serde_json::json!(false),
        "the session cookie is HttpOnly"
    );
    // The thumbnail really loads, updated live by the page's polling.
    browser.wait_for(
        "the latest frame's thumbnail to load",
        &format!(
            "(() => {{ const i = {row}.querySelector('img.thumb'); \
             return !i.classList.contains('pending') && i.complete && i.naturalWidth > 0; }})()"
        ),
        LIMIT,
    );
    assert_thumbnails_keep_their_box(&mut browser, "with the latest frame loaded");
    assert_eq!(
        browser.eval(&format!("{row}.querySelector('.state').textContent")),
        serde_json::json!("running")
    );
    assert_eq!(
        browser.eval(
            "!!document.querySelector('nav a[href=\"/workers\"]') && \
             !!document.querySelector('nav form[action=\"/logout\"]')"
        ),
        serde_json::json!(true),
        "a cluster behind a token links its workers and offers to log out"
    );
    browser.screenshot(&screenshot_path("web-jobs.png"));
    // On a phone the page does not scroll sideways, and each job shows
    // its progress and time left on the screen, none hidden in a table
    // scrolled sideways.
    assert_eq!(browser.overflow_on_a_phone(), 0.0, "the index on a phone");
    assert_eq!(
        browser.on_a_phone(&format!(
            "[...{row}.querySelectorAll('td.progress, td.eta, .state')] \
               .map(e => e.getBoundingClientRect()) \
               .every(r => r.width > 0 && r.left >= 0 && r.right <= 390)"
        )),
        serde_json::json!(true),
        "a job's progress, state and time left on a phone's screen"
    );
    // A job submitted while the index is open is drawn on it.
    let second = submit(&c, "second-take", 1);
    browser.wait_for(
        "the row of a job submitted after the page was drawn",
        &format!(
            "document.readyState === 'complete' && \
             !!document.querySelector('tr[data-job=' + {} + ']')",
            js(&js(&second))
        ),
        LIMIT,
    );
    assert_thumbnails_keep_their_box(&mut browser, "with a second job's row");

    // The job's page: the latest frame large, the scrubber, then pause.
    browser.click(&format!("tr[data-job={}] a.name", js(&id)));
    // The name keeps the id to characters a URL takes as they are.
    let page = format!("{base}/jobs/{id}");
    browser.wait_for(
        "the job's page with its latest frame",
        &format!(
            "location.href === {} && (() => {{ const v = document.getElementById('view'); \
             return !!v && !v.hidden && v.complete && v.naturalWidth > 0; }})()",
            js(&page)
        ),
        LIMIT,
    );
    browser.wait_for(
        "a few frames on the scrubber",
        "Number(document.getElementById('scrub').max) >= 2",
        LIMIT,
    );
    browser.screenshot(&screenshot_path("web-job.png"));
    assert_eq!(
        browser.overflow_on_a_phone(),
        0.0,
        "the job's page on a phone"
    );
    browser.click("button[data-action=pause]");
    browser.wait_for(
        "the page to show the job paused",
        &format!(
            "location.href === {} && document.readyState === 'complete' && \
             document.querySelector('.jobhead .state').textContent === 'paused'",
            js(&page)
        ),
        LIMIT,
    );
    assert_eq!(state(&c, &id), "paused", "{}", c.status(&id));
    assert!(
        browser
            .eval("document.querySelector('button[data-action=resume]').offsetParent !== null")
            .as_bool()
            .unwrap_or(false),
        "the resume button shows once paused"
    );
}

/// Every page, image, download and action of the job at `/jobs/{job}`.
fn guarded_paths(job: &str) -> Vec<(&'static str, String)> {
    let mut paths: Vec<(&str, String)> = [
        "/".to_string(),
        "/jobs.json".into(),
        "/workers".into(),
        format!("/jobs/{job}"),
        format!("/jobs/{job}/latest.png"),
        format!("/jobs/{job}/frames/0.png"),
        format!("/jobs/{job}/video.mp4"),
        format!("/jobs/{job}/frames.zip"),
    ]
    .into_iter()
    .map(|p| ("GET", p))
    .collect();
    paths.push(("POST", format!("/jobs/{job}/pause")));
    paths
}

/// The session cookie (`name=value`) a login answer sets.
fn session_cookie(login: &Reply) -> String {
    let set = login.header("set-cookie").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set} lacks {attribute}");
    }
    assert!(
        !set.contains(TOKEN),
        "the token itself is not the cookie: {set}"
    );
    set.split(';').next().expect("name=value").to_string()
}

#[test]
fn pages_images_downloads_and_actions_need_the_token_and_actions_this_site() {
    let c = Coordinator::start();
    // No worker: the job has no frame yet.
    let id = submit(&c, "<b>bold<b>", 3);
    let job = segment(&id);
    let host = c.metrics.as_str();
    let bearer = format!("Bearer {TOKEN}");
    for (method, path) in guarded_paths(&job) {
        for headers in [
            vec![],
            vec![("Authorization", "Bearer wrong-token")],
            vec![("Cookie", "dreamfarm_session=forged")],
            vec![("Accept", "text/html")],
        ] {
            let reply = request(host, method, &path, &headers, "");
            assert_eq!(reply.status, 401, "{method} {path} with {headers:?}");
        }
    }
    for open in [
        "/metrics",
        "/healthz",
        "/readyz",
        "/login",
        "/assets/app.js",
    ] {
        assert_eq!(get(host, open, &[]).status, 200, "{open} stays open");
    }

    // With the token: pages, and clear refusals of bad input.
    let auth = [("Authorization", bearer.as_str())];
    let index = get(host, "/", &auth);
    assert_eq!(index.status, 200);
    assert!(index.text().contains("&lt;b&gt;bold&lt;b&gt;"));
    assert!(!index.text().contains("<b>bold"), "the name is escaped");
    assert_eq!(get(host, &format!("/jobs/{job}"), &auth).status, 200);
    for (path, status, says) in [
        (format!("/jobs/{job}/latest.png"), 404, "no frame yet"),
        (format!("/jobs/{job}/frames/x.png"), 400, "not a frame"),
        (format!("/jobs/{job}/frames/7.png"), 404, "not rendered yet"),
        (format!("/jobs/{job}/video.mp4"), 404, "no video yet"),
        ("/jobs/no-such-job".to_string(), 404, "no job"),
        (
            "/no/such/page".to_string(),
            404,
            "there is no page at /no/such/page",
        ),
        (
            format!("/jobs/{job}/pause"),
            405,
            "is an action: use its button",
        ),
    ] {
        let reply = get(host, &path, &auth);
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
        assert!(reply.text().contains(says), "{path}: {}", reply.text());
    }
    let zip = get(host, &format!("/jobs/{job}/frames.zip"), &auth);
    assert_eq!(
        (zip.status, zip.header("content-type")),
        (200, Some("application/zip"))
    );
    let priority = format!("/jobs/{job}/priority");
    let bad = request(host, "POST", &priority, &auth, "priority=high");
    assert_eq!(bad.status, 400, "{}", bad.text());
    let set = request(host, "POST", &priority, &auth, "priority=-3");
    assert_eq!(set.status, 303, "{}", set.text());
    assert!(c.status(&id).contains("-3"), "{}", c.status(&id));

    // A browser's session: a wrong token gets the form again, the right
    // one a cookie; actions with it are refused from another site.
    let wrong = request(host, "POST", "/login", &[], "token=nope&next=%2F");
    assert_eq!(wrong.status, 401);
    let login = request(
        host,
        "POST",
        "/login",
        &[],
        &format!("token={TOKEN}&next=%2F"),
    );
    assert_eq!((login.status, login.header("location")), (303, Some("/")));
    let cookie = session_cookie(&login);
    assert_eq!(get(host, "/", &[("Cookie", &cookie)]).status, 200);
    let pause = format!("/jobs/{job}/pause");
    let origin = format!("http://{host}");
    for cross_site in [
        ("Origin", "https://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let headers = [cross_site, ("Cookie", cookie.as_str())];
        let reply = request(host, "POST", &pause, &headers, "");
        assert_eq!(reply.status, 403, "{cross_site:?}: {}", reply.text());
    }
    assert_ne!(state(&c, &id), "paused", "a refused action changes nothing");
    let same_site = [
        ("Cookie", cookie.as_str()),
        ("Origin", origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let paused = request(host, "POST", &pause, &same_site, "");
    assert_eq!(paused.status, 303, "{}", paused.text());
    assert_eq!(state(&c, &id), "paused");
    let again = request(host, "POST", &pause, &same_site, "");
    assert_eq!(again.status, 409, "pausing a paused job: {}", again.text());
}

#[test]
fn render_ui_serves_the_render_s_page_behind_its_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let mut args = vec![
        "render",
        "--device",
        "cpu",
        "--ui",
        "127.0.0.1:0",
        "--token",
        "ui-token",
        "--name",
        "solo",
        "--frames",
        "500",
        "--output",
        out.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(JOB);
    let mut render = dreamfarm(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("render starts");
    let mut line = String::new();
    let mut stdout = BufReader::new(render.stdout.take().expect("stdout"));
    stdout.read_line(&mut line).expect("the address line");
    // "web interface on http://127.0.0.1:PORT/jobs/solo"
    let url = line.trim().rsplit(' ').next().expect("a URL").to_string();
    let host = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .expect("an http:// URL")
        .to_string();
    assert!(url.ends_with("/jobs/solo"), "{line}");
    assert_eq!(get(&host, "/jobs/solo", &[]).status, 401);
    let auth = [("Authorization", "Bearer ui-token")];
    wait_for("the render's first frame", LIMIT, || {
        get(&host, "/jobs/solo/latest.png", &auth).status == 200
    });
    let png = get(&host, "/jobs/solo/latest.png", &auth);
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert!(png.body.starts_with(b"\x89PNG"));
    let page = get(&host, "/jobs/solo", &auth).text();
    assert!(page.contains("frames = 500"), "its settings: {page}");
    assert!(!page.contains("data-action=\"pause\""), "read-only: {page}");
    // One machine, behind a token: no Workers link, a Log out button.
    assert!(!page.contains("href=\"/workers\""), "{page}");
    assert!(page.contains("Log out"), "{page}");
    let pause = request(&host, "POST", "/jobs/solo/pause", &auth, "");
    assert_eq!(pause.status, 405, "{}", pause.text());
    assert_eq!(get(&host, "/workers", &auth).status, 404);
    let _ = render.kill();
    let _ = render.wait();
}
