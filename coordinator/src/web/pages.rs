//! The HTML pages, built with maud: every value from a job (its name, its
//! settings, its events, a worker's name) is escaped by construction.
//! The pages work without JavaScript; `app.js` only refreshes them.

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};

use super::source::{EventRow, JobList, JobRow, Pool};
use crate::progress::duration;
use crate::store::utc_time;

/// The header's links beside "Jobs": each only where it leads somewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nav {
    /// "Workers": a cluster has a pool; a single-machine render has none.
    pub workers: bool,
    /// "Log out": only behind a token; an open page has no session to end.
    pub log_out: bool,
}

/// A page of the interface with its navigation (none on the login form).
fn layout(title: &str, nav: Option<Nav>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · dreamfarm" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "dreamfarm" }
                    @if let Some(nav) = nav {
                        nav {
                            a href="/" { "Jobs" }
                            @if nav.workers { a href="/workers" { "Workers" } }
                            @if nav.log_out {
                                form.inline method="post" action="/logout" {
                                    button.link type="submit" { "Log out" }
                                }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// `id` as one URL path segment.
pub fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The path of job `id`'s page.
fn job_path(id: &str) -> String {
    format!("/jobs/{}", segment(id))
}

/// A job's state as a badge that `app.js` keeps current.
fn state_badge(state: &str) -> Markup {
    html! { span class={ "state state-" (state) } { (state) } }
}

/// A job's progress bar and frame count.
fn progress(job: &JobRow) -> Markup {
    html! {
        progress max=(job.frames_total.max(1)) value=(job.frames_done) {}
        " "
        span.frames { (job.frames_done) " / " (job.frames_total) }
    }
}

/// The thumbnail of a job's latest frame: a box of one size whether or
/// not a frame has come (an empty box until one has), so that a row never
/// grows under the pointer of someone about to click the row below.
fn thumbnail(job: &JobRow) -> Markup {
    let src = match job.frames_done {
        0 => None,
        n => Some(format!("{}/latest.png?f={n}", job_path(&job.id))),
    };
    html! {
        img.thumb.pending[src.is_none()] src=[src] alt={ "latest frame of " (job.name) };
    }
}

/// `n` and `what`, plural unless one.
fn count(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        _ => format!("{n} {what}s"),
    }
}

/// The pool in one line.
fn pool_line(pool: &Pool) -> Markup {
    html! {
        p.pool {
            a href="/workers" { (count(pool.workers.len(), "worker")) }
            " · " span.queued { (pool.queued_tiles) } " tiles queued · "
            (count(pool.leases_in_flight, "lease")) " in flight · "
            (format!("{:.1}", pool.tiles_per_second)) " tiles/s"
        }
        @if let Some(seconds) = pool.regions_paused_s {
            p.warning.regions-paused {
                "Frames go by tiles through the coordinator for "
                (duration(seconds))
                " more: a frame's workers could not fetch each other's changes. Each job's "
                code { "exchange-failed" }
                " event names the address; let the workers reach each other's change port (deploy/README.md)."
            }
        }
        @for why in &pool.unreachable {
            p.warning.unreachable { (why) "." }
        }
    }
}

/// `/`: the jobs with their progress and latest frame.
pub fn index(list: &JobList, pool: Option<&Pool>, nav: Nav) -> Markup {
    let jobs = &list.jobs;
    layout(
        "Jobs",
        Some(nav),
        html! {
            h1 { "Jobs" }
            @if let Some(pool) = pool { (pool_line(pool)) }
            @if jobs.is_empty() {
                p.no-jobs { "No jobs yet. Submit one with " code { "dreamfarm submit" } "." }
            } @else {
                div.scroll {
                    table.jobs {
                        thead { tr {
                            th { "Latest" } th { "Job" } th { "State" } th { "Priority" }
                            th { "Progress" } th { "Frames/min" } th { "ETA" }
                        } }
                        tbody {
                            @for job in jobs {
                                tr data-job=(job.id) {
                                    td { a href=(job_path(&job.id)) { (thumbnail(job)) } }
                                    td {
                                        a.name href=(job_path(&job.id)) { (job.name) }
                                        div.id { (job.id) }
                                    }
                                    td { (state_badge(&job.state)) div.message { (job.message) } }
                                    td.priority { (job.priority) }
                                    td.progress { (progress(job)) }
                                    td.fpm { (format!("{:.1}", job.frames_per_minute)) }
                                    td.eta { (duration(job.eta_seconds)) }
                                }
                            }
                        }
                    }
                }
            }
            @if list.older_finished > 0 {
                p.older {
                    (count(list.older_finished, "older finished job")) " not shown: "
                    code { "dreamfarm status" } " lists every job."
                }
            }
        },
    )
}

/// The buttons of a job's controls; each shows only in the states it
/// applies to (`app.js` keeps that current).
fn controls(job: &JobRow) -> Markup {
    let base = job_path(&job.id);
    let button = |action: &str, label: &str, states: &str| {
        let shown = states.split(' ').any(|s| s == job.state);
        html! {
            form.inline method="post" action={ (base) "/" (action) } data-states=(states) hidden[!shown] {
                button type="submit" data-action=(action) { (label) }
            }
        }
    };
    html! {
        section.actions {
            (button("pause", "Pause", "queued running"))
            (button("resume", "Resume", "paused"))
            (button("retry", "Retry", "failed"))
            (button("cancel", "Cancel", "queued running paused"))
            form.inline method="post" action={ (base) "/priority" } {
                label { "Priority " input type="number" name="priority" value=(job.priority) step="1"; }
                " "
                button type="submit" data-action="priority" { "Set" }
            }
        }
    }
}

/// What the job page shows beyond the job's row.
pub struct JobPage<'a> {
    /// The job.
    pub job: &'a JobRow,
    /// Its settings (TOML).
    pub settings: &'a str,
    /// The latest events of its log, oldest first.
    pub events: &'a [EventRow],
    /// How many events its log holds.
    pub events_total: u64,
    /// Whether this is a coordinator's job (`dreamfarm events` lists its
    /// whole log), not a single-machine render's.
    pub cluster: bool,
    /// Whether the controls are offered.
    pub controls: bool,
    /// Whether its video exists.
    pub has_video: bool,
}

/// `/jobs/JOB`: the latest frame large, a scrubber over the frames so far,
/// the controls, the downloads, the settings and the event log.
pub fn job(page: &JobPage<'_>, nav: Nav) -> Markup {
    let job = page.job;
    let base = job_path(&job.id);
    let last = job.frames_done.saturating_sub(1);
    let first_view = match job.frames_done {
        0 => String::new(),
        _ => format!("{base}/frames/{last}.png"),
    };
    layout(
        &job.name,
        Some(nav),
        html! {
            div.jobhead data-job=(job.id) {
                h1 { (job.name) " " (state_badge(&job.state)) }
                p.facts {
                    span.id { (job.id) } " · priority " span.priority { (job.priority) }
                    " · " (progress(job))
                    " · " span.fpm { (format!("{:.1}", job.frames_per_minute)) } " frames/min"
                    " · ETA " span.eta { (duration(job.eta_seconds)) }
                }
                p.message { (job.message) }
                @if page.controls { (controls(job)) }
            }
            section.viewer data-base=(base) data-job=(job.id) {
                img #view src=(first_view) alt={ "frame of " (job.name) } hidden[job.frames_done == 0];
                @if job.frames_done == 0 { p #no-frames { "No frame yet." } }
                div.scrubber {
                    button #play type="button" title="Play the frames so far" { "▶" }
                    input #scrub type="range" min="0" max=(last) value=(last) step="1"
                        aria-label="frame";
                    span #frame-label { "frame " (last) }
                    label.follow { input #follow type="checkbox" checked; " follow the latest" }
                }
            }
            section.downloads {
                h2 { "Downloads" }
                @if page.has_video {
                    a href={ (base) "/video.mp4" } download { "Video (MP4)" }
                } @else {
                    span.muted { "The video is made when the job is done." }
                }
                " · "
                a href={ (base) "/frames.zip" } download { "Frames so far (zip)" }
            }
            section {
                h2 { "Settings" }
                pre.settings { (page.settings) }
            }
            section {
                h2 { "Events" }
                @let shown = page.events.len() as u64;
                @if page.events_total > shown {
                    p.muted {
                        "The latest " (shown) " of " (page.events_total) " events."
                        @if page.cluster {
                            " " code { "dreamfarm events " (job.id) } " lists them all."
                        }
                    }
                }
                div.scroll {
                    table.events {
                        thead { tr { th { "When (UTC)" } th { "What" } th { "Details" } } }
                        tbody {
                            @for e in page.events.iter().rev() {
                                tr { td { (utc_time(e.at_ms)) } td { (e.kind) } td { (e.detail) } }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// `/workers`: the pool, refreshed every 5 s.
pub fn workers(pool: &Pool, nav: Nav) -> Markup {
    layout(
        "Workers",
        Some(nav),
        html! {
            meta http-equiv="refresh" content="5";
            h1 { "Workers" }
            (pool_line(pool))
            @if pool.workers.is_empty() {
                p.no-workers { "No worker is connected. Start one with " code { "dreamfarm worker" } "." }
            } @else {
                div.scroll {
                    table.workers {
                        thead { tr {
                            th { "Name" } th { "Device" } th { "Concurrency" } th { "Leases" }
                            th { "Tiles/s" } th { "Last heartbeat" } th { "Changes at" }
                        } }
                        tbody {
                            @for w in &pool.workers {
                                tr {
                                    td { (w.name) } td { (w.device) } td { (w.concurrency) }
                                    td { (w.leases) } td { (format!("{:.2}", w.tiles_per_second)) }
                                    td { (format!("{:.1} s ago", w.last_heartbeat_s)) }
                                    td {
                                        @if w.changes_at.is_empty() { "tiles only" } @else { code { (w.changes_at) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// `/login`: the token form; `message` says why it is shown again.
pub fn login(next: &str, message: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            h1 { "Log in" }
            @if let Some(m) = message { p.error { (m) } }
            form.login method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label {
                    "Cluster token (the coordinator's " code { "--token" } ")"
                    input type="password" name="token" autocomplete="current-password" autofocus required;
                }
                button type="submit" { "Log in" }
            }
        },
    )
}

/// An error page: only the link to the jobs, since it may answer a
/// request that never got in.
pub fn error(status: StatusCode, message: &str) -> Markup {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    layout(
        &title,
        Some(Nav::default()),
        html! {
            h1 { (title) }
            p.error { (message) }
            p { a href="/" { "All jobs" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A running job named `name` saying `message`.
    fn job(name: &str, message: &str) -> JobRow {
        JobRow {
            id: "trip-1a2b".into(),
            name: name.into(),
            state: "running".into(),
            priority: 0,
            frames_done: 3,
            frames_total: 10,
            frames_per_minute: 1.5,
            eta_seconds: 90.0,
            message: message.into(),
        }
    }

    /// What a hostile name or event might hold.
    const ATTACK: &str = "<script>alert(1)</script>";

    #[test]
    fn names_messages_and_events_are_escaped() {
        let evil = job("<img src=x onerror=alert(1)>", ATTACK);
        let list = JobList {
            jobs: vec![evil.clone()],
            older_finished: 0,
        };
        let index = index(&list, None, Nav::default()).into_string();
        assert!(!index.contains("<img src=x"), "{index}");
        assert!(index.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!index.contains(ATTACK));
        assert!(index.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        let events = [EventRow {
            at_ms: 0,
            kind: "frame".into(),
            detail: ATTACK.into(),
        }];
        let page = super::job(
            &JobPage {
                job: &evil,
                settings: "name = \"</pre><script>x</script>\"",
                events: &events,
                events_total: 1,
                cluster: true,
                controls: true,
                has_video: false,
            },
            Nav::default(),
        )
        .into_string();
        assert!(!page.contains(ATTACK), "{page}");
        assert!(!page.contains("</pre><script>"));
        let pool = Pool {
            workers: vec![super::super::source::WorkerRow {
                name: ATTACK.into(),
                device: "cpu".into(),
                concurrency: 1,
                leases: 0,
                tiles_per_second: 0.0,
                last_heartbeat_s: 0.0,
                changes_at: ATTACK.into(),
            }],
            ..Pool::default()
        };
        assert!(
            !workers(&pool, Nav::default())
                .into_string()
                .contains(ATTACK)
        );
        let login = login("/\"><script>alert(1)</script>", Some(ATTACK)).into_string();
        assert!(!login.contains("<script>alert"), "{login}");
    }

    #[test]
    fn ids_become_one_path_segment() {
        assert_eq!(segment("trip-1a2b"), "trip-1a2b");
        assert_eq!(segment("a b/c?"), "a%20b%2Fc%3F");
    }

    #[test]
    fn only_the_controls_of_the_state_show() {
        let page = |state: &str| {
            let mut j = job("a", "");
            j.state = state.into();
            controls(&j).into_string()
        };
        let running = page("running");
        assert!(
            running.contains(r#"data-states="queued running">"#),
            "{running}"
        );
        assert!(running.contains(r#"data-states="paused" hidden"#));
    }

    #[test]
    fn the_header_offers_only_links_that_lead_somewhere() {
        let header = |nav: Nav| {
            let page = index(&JobList::default(), None, nav).into_string();
            let end = page.find("</header>").expect("a header");
            page[..end].to_string()
        };
        let open_render = header(Nav::default());
        assert!(open_render.contains(r#"href="/""#), "{open_render}");
        assert!(!open_render.contains("/workers"), "{open_render}");
        assert!(!open_render.contains("Log out"), "{open_render}");
        let cluster = header(Nav {
            workers: true,
            log_out: true,
        });
        assert!(cluster.contains(r#"href="/workers""#), "{cluster}");
        assert!(cluster.contains("Log out"), "{cluster}");
        let login = login("/", None).into_string();
        assert!(!login.contains("<nav>"), "{login}");
    }
}
