//! The cluster's client commands: `submit`, `status`, `watch`,
//! `events` and the job controls (`cancel`, `pause`, `resume`, `retry`,
//! `priority`, `extend`, `delete`), talking to a coordinator's
//! `JobService`; `fetch` has [`super::fetch`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use dreamfarm_common::model_catalog::ModelSpec;
use dreamfarm_coordinator::cluster::job_weights::check_weights;
use dreamfarm_coordinator::progress::duration;
use dreamfarm_coordinator::render::check_images;
use dreamfarm_coordinator::store::utc_time;
use dreamfarm_proto::MAX_MESSAGE_BYTES;
use dreamfarm_proto::auth::AttachToken;
use dreamfarm_proto::chunks::split;
use dreamfarm_proto::connect::{ConnectError, connect, misdialled};
use dreamfarm_proto::pb::job_service_client::JobServiceClient;
use dreamfarm_proto::pb::submit_request::Body;
use dreamfarm_proto::pb::{
    DeleteRequest, ExtendRequest, JobRequest, JobState, JobStatus, ListRequest, PriorityRequest,
    SubmitRequest, SubmitStart,
};
use dreamfarm_proto::tls::diagnose;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::job_args::JobArgs;

/// Where the coordinator is and how to get in.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The coordinator's URL.
    #[arg(
        long,
        env = "DREAMFARM_COORDINATOR",
        default_value = "http://127.0.0.1:7070"
    )]
    coordinator: String,
    /// The cluster's shared token.
    #[arg(long, env = "DREAMFARM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) for an https:// coordinator.
    #[arg(long, env = "DREAMFARM_TLS_CA")]
    tls_ca: Option<PathBuf>,
}

type Client = JobServiceClient<InterceptedService<Channel, AttachToken>>;

impl ClientArgs {
    /// A client of the coordinator's `JobService`, with the token.
    pub(super) async fn client(&self) -> anyhow::Result<Client> {
        // The token first: a bad one fails the same whether or not the
        // coordinator is up.
        let token = AttachToken::new(self.token.as_deref())
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        let channel = connect(&self.coordinator, self.tls_ca.as_deref()).await?;
        Ok(JobServiceClient::with_interceptor(channel, token)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// A failed call as one error that says what to do: a port that is not
    /// the coordinator's gRPC one, TLS that does not match the
    /// coordinator's, or else what the coordinator said.
    async fn explain(&self, s: tonic::Status) -> anyhow::Error {
        match misdialled(&self.coordinator, &s).await {
            Some(advice) => advice.into(),
            None => anyhow::anyhow!("the coordinator said: {} ({:?})", s.message(), s.code()),
        }
    }

    /// Waits for `call`, its failure explained.
    pub(super) async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, tonic::Status>>,
    ) -> anyhow::Result<T> {
        match call.await {
            Ok(reply) => Ok(reply),
            Err(s) => Err(self.explain(s).await),
        }
    }
}

/// Arguments of `dreamfarm submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    job: JobArgs,
    /// Priority: higher runs first; equal priorities share the pool.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    priority: i32,
}

/// Arguments of `dreamfarm watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The job id `dreamfarm submit` printed.
    job: String,
    /// Seconds to keep reconnecting when the coordinator goes away (it may
    /// be restarting) before giving up.
    #[arg(long, default_value_t = 600)]
    reconnect_for: u64,
}

/// Arguments of `dreamfarm priority`.
#[derive(Debug, Args)]
pub struct PriorityArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The job id.
    job: String,
    /// The new priority: higher runs first.
    #[arg(allow_hyphen_values = true)]
    priority: i32,
}

/// Arguments of `dreamfarm extend`.
#[derive(Debug, Args)]
pub struct ExtendArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The job id.
    job: String,
    /// Frames in all, more than the job has now.
    #[arg(long)]
    frames: u32,
}

/// Arguments of `dreamfarm delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The job id.
    job: String,
    /// Delete it even if it is queued or running.
    #[arg(long)]
    force: bool,
}

/// Arguments of the commands about one job.
#[derive(Debug, Args)]
pub struct JobIdArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The job id `dreamfarm submit` printed.
    job: String,
}

/// Arguments of `dreamfarm status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only this job.
    job: Option<String>,
}

/// Runs `f` to its end on a runtime of this thread.
pub(super) fn block_on<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Runs `dreamfarm submit`: uploads the job and prints its id.
pub fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    if let Some(dir) = args.job.output() {
        bail!(
            "--output {} is where `dreamfarm render` writes; a cluster job's files stay on the coordinator. Fix: drop --output (--name names the job), and fetch its files with `dreamfarm fetch JOB --output {}`",
            dir.display(),
            dir.display()
        );
    }
    let (mut spec, _, name) = args.job.spec()?;
    // The coordinator checks the images too, but its errors would name its
    // copies, and only after the upload.
    check_images(&spec, spec.dream.model_spec()?.min_side())?;
    let read = |path: &mut PathBuf, what: &str, name: &str| {
        let bytes = std::fs::read(&*path)
            .with_context(|| format!("cannot read the {what} {}", path.display()))?;
        *path = name.into();
        anyhow::Ok(bytes)
    };
    let input = read(&mut spec.input, "input image", "input")?;
    let guide = match &mut spec.dream.guide {
        Some(path) => read(path, "guide image", "guide")?,
        None => Vec::new(),
    };
    let color_reference = match &mut spec.color.reference {
        Some(path) => read(path, "colour reference", "color-reference")?,
        None => Vec::new(),
    };
    // Workers get the job's own weights from the coordinator: they need no
    // copy at this path.
    let model = spec.dream.model_spec()?;
    let weights = match &mut spec.dream.weights {
        Some(path) => {
            let local = path.clone();
            let bytes = read(path, "weights file", "weights")?;
            check_weights(&bytes, &local.display().to_string())
                .map_err(|e| anyhow::anyhow!("{}: {e}", local.display()))?;
            check_weights_fit(&model, &local)?;
            bytes
        }
        None => Vec::new(),
    };
    let job_toml = toml::to_string(&spec).context("cannot encode the job")?;
    block_on(async move {
        let mut client = args.client.client().await?;
        let start = SubmitRequest {
            body: Some(Body::Start(SubmitStart {
                job_toml,
                name,
                input_bytes: input.len() as u64,
                priority: args.priority,
                guide_bytes: guide.len() as u64,
                color_reference_bytes: color_reference.len() as u64,
                weights_bytes: weights.len() as u64,
            })),
        };
        // The files follow one another in the order the sizes name them,
        // cut into pieces as the upload takes them.
        let pieces = [input, guide, color_reference, weights]
            .into_iter()
            .flat_map(split)
            .map(|c| SubmitRequest {
                body: Some(Body::InputChunk(c)),
            });
        let messages = std::iter::once(start).chain(pieces);
        let reply = args
            .client
            .call(client.submit(tokio_stream::iter(messages)))
            .await?;
        println!("{}", reply.into_inner().job_id);
        Ok(())
    })
}

/// Loads `model` with the weights at `path` on the CPU, so that weights
/// that do not fit it are refused before the upload, with the model's own
/// error, rather than by every worker in turn.
#[cfg(feature = "embedded-worker")]
fn check_weights_fit(model: &ModelSpec, path: &std::path::Path) -> anyhow::Result<()> {
    if let ModelSpec::Builtin(_) = model {
        dreamfarm_worker::models::Model::load(model, path, tch::Device::Cpu)?;
    }
    Ok(())
}

/// Without libtorch, the coordinator checks only that the weights are a
/// safetensors file; a misfit fails the job's first tile.
#[cfg(not(feature = "embedded-worker"))]
fn check_weights_fit(_: &ModelSpec, _: &std::path::Path) -> anyhow::Result<()> {
    Ok(())
}

fn state_name(s: &JobStatus) -> &'static str {
    match JobState::try_from(s.state) {
        Ok(JobState::Queued) => "queued",
        Ok(JobState::Running) => "running",
        Ok(JobState::Done) => "done",
        Ok(JobState::Failed) => "failed",
        Ok(JobState::Cancelled) => "cancelled",
        Ok(JobState::Paused) => "paused",
        _ => "unknown",
    }
}

/// One job's line: its state and frames, and while it runs the live
/// figures (a paused or finished job's last tile count would read as
/// progress, and the pool's pace and workers as its own).
fn status_line(s: &JobStatus) -> String {
    let mut line = format!(
        "{}  {:9}  priority {}  frames {}/{}",
        s.job_id,
        state_name(s),
        s.priority,
        s.frames_done,
        s.frames_total,
    );
    if s.state == JobState::Running as i32 {
        line += &format!(
            "  tiles {}/{}  {:.2} tiles/s  workers {}",
            s.tiles_done, s.tiles_total, s.tiles_per_second, s.workers
        );
    }
    if s.eta_seconds > 0.0 {
        line += &format!("  ETA {}", duration(s.eta_seconds));
    }
    if !s.message.is_empty() {
        line += &format!("  ({})", s.message);
    }
    line
}

/// Runs `dreamfarm status`.
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    block_on(async move {
        let mut client = args.client.client().await?;
        let request = ListRequest {
            job_id: args.job.clone().unwrap_or_default(),
        };
        let mut replies = args.client.call(client.list(request)).await?.into_inner();
        let mut out = std::io::stdout().lock();
        let mut shown = 0;
        // A coordinator before the filter lists every job.
        let wanted = |j: &&JobStatus| args.job.as_ref().is_none_or(|id| &j.job_id == id);
        while let Some(reply) = args.client.call(replies.message()).await? {
            for j in reply.jobs.iter().filter(wanted) {
                shown += 1;
                // A reader that stops early (`| head`) ends it quietly.
                if writeln!(out, "{}", status_line(j)).is_err() {
                    return Ok(());
                }
            }
        }
        match (&args.job, shown) {
            (Some(id), 0) => {
                bail!("no job {id:?} on this coordinator: `dreamfarm status` lists the jobs")
            }
            (None, 0) => println!("no jobs"),
            _ => {}
        }
        Ok(())
    })
}

/// Whether a failed call may work again once the coordinator is back (it
/// went away or is restarting), rather than being a refusal.
fn is_outage(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    )
}

/// How one watch stream ended.
enum WatchEnd {
    /// The job ended; its last status.
    Over(Box<JobStatus>),
    /// The coordinator went away; why.
    Lost(String),
}

/// Shows progress: a bar on a terminal, one line per frame or state change
/// otherwise.
struct Display {
    bar: Option<indicatif::ProgressBar>,
    last_line: String,
}

impl Display {
    fn new(job: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] frame {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_prefix(job.to_string());
            bar
        });
        Self {
            bar,
            last_line: String::new(),
        }
    }

    fn show(&mut self, s: &JobStatus) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(s.frames_total);
                bar.set_position(s.frames_done);
                bar.set_message(format!(
                    "{}  tiles {}/{}  {:.2} tiles/s  ETA {}  {}",
                    state_name(s),
                    s.tiles_done,
                    s.tiles_total,
                    s.tiles_per_second,
                    duration(s.eta_seconds),
                    s.message
                ));
            }
            None => {
                let line = format!(
                    "{} {} {} {}",
                    state_name(s),
                    s.frames_done,
                    s.frames_total,
                    s.message
                );
                if line != self.last_line {
                    println!("{}", status_line(s));
                    self.last_line = line;
                }
            }
        }
    }

    /// Says something between updates (above the bar on a terminal).
    fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}

/// How a failed watch call ends the stream: the coordinator is away (try
/// again), or an error that says what to do.
async fn lost(client: &ClientArgs, s: tonic::Status) -> anyhow::Result<WatchEnd> {
    if !is_outage(&s) {
        return Err(client.explain(s).await);
    }
    match diagnose(&client.coordinator, &s).await {
        Some(mismatch) => Err(mismatch.into()),
        None => Ok(WatchEnd::Lost(s.message().to_string())),
    }
}

/// Follows one watch stream until the job ends or the coordinator goes.
async fn watch_once(args: &WatchArgs, display: &mut Display) -> anyhow::Result<WatchEnd> {
    let mut client = match args.client.client().await {
        Ok(c) => c,
        Err(e) if matches!(e.downcast_ref(), Some(ConnectError::Transport { .. })) => {
            return Ok(WatchEnd::Lost(format!("{e:#}")));
        }
        Err(e) => return Err(e),
    };
    let mut stream = match client
        .watch(JobRequest {
            job_id: args.job.clone(),
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return lost(&args.client, s).await,
    };
    let mut last = None;
    loop {
        match stream.message().await {
            Ok(Some(s)) => {
                display.show(&s);
                last = Some(s);
            }
            Ok(None) => break,
            Err(s) => return lost(&args.client, s).await,
        }
    }
    let finished = |s: &JobStatus| {
        [JobState::Done, JobState::Failed, JobState::Cancelled]
            .iter()
            .any(|&f| f as i32 == s.state)
    };
    Ok(match last {
        Some(s) if finished(&s) => WatchEnd::Over(Box::new(s)),
        // A stream that ends before its job does: the coordinator stopped.
        _ => WatchEnd::Lost("the coordinator closed the stream".into()),
    })
}

/// Runs `dreamfarm watch`: a progress bar on a terminal, lines otherwise,
/// reconnecting (with backoff) while the coordinator is away; exits
/// non-zero if the job fails or is cancelled.
pub fn watch(args: WatchArgs) -> anyhow::Result<()> {
    block_on(async move {
        let mut display = Display::new(&args.job);
        let patience = Duration::from_secs(args.reconnect_for);
        let mut outage: Option<Instant> = None;
        let mut backoff = Duration::from_millis(250);
        let last = loop {
            match watch_once(&args, &mut display).await? {
                WatchEnd::Over(s) => break s,
                WatchEnd::Lost(why) => {
                    let since = *outage.get_or_insert_with(|| {
                        display.note(&format!(
                            "lost the coordinator ({why}); reconnecting for up to {}s",
                            patience.as_secs()
                        ));
                        Instant::now()
                    });
                    if since.elapsed() >= patience {
                        bail!(
                            "the coordinator at {} has been unreachable for {}s ({why}); the job goes on there: run `dreamfarm watch {}` again once it is back",
                            args.client.coordinator,
                            patience.as_secs(),
                            args.job
                        );
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        };
        if let Some(bar) = &display.bar {
            bar.finish();
            println!("{}", status_line(&last));
        }
        match JobState::try_from(last.state) {
            Ok(JobState::Done) => Ok(()),
            Ok(JobState::Cancelled) => bail!(
                "job {id} was cancelled after {} of its {} frames; they stay on the coordinator: `dreamfarm fetch {id}`",
                last.frames_done,
                last.frames_total,
                id = last.job_id,
            ),
            _ if last.message.is_empty() => bail!("job {} {}", last.job_id, state_name(&last)),
            _ => bail!(
                "job {} {}: {}",
                last.job_id,
                state_name(&last),
                last.message
            ),
        }
    })
}

/// A job control: the call `f` makes, then the job's status line.
fn control<F, Fut>(client: &ClientArgs, f: F) -> anyhow::Result<()>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<tonic::Response<JobStatus>, tonic::Status>>,
{
    block_on(async move {
        let s = client.call(f(client.client().await?)).await?.into_inner();
        println!("{}", status_line(&s));
        Ok(())
    })
}

/// Runs `dreamfarm cancel`.
pub fn cancel(args: JobIdArgs) -> anyhow::Result<()> {
    let job_id = args.job;
    control(&args.client, |mut c| async move {
        c.cancel(JobRequest { job_id }).await
    })
}

/// Runs `dreamfarm pause`.
pub fn pause(args: JobIdArgs) -> anyhow::Result<()> {
    let job_id = args.job;
    control(&args.client, |mut c| async move {
        c.pause(JobRequest { job_id }).await
    })
}

/// Runs `dreamfarm resume`.
pub fn resume(args: JobIdArgs) -> anyhow::Result<()> {
    let job_id = args.job;
    control(&args.client, |mut c| async move {
        c.resume(JobRequest { job_id }).await
    })
}

/// Runs `dreamfarm retry`.
pub fn retry(args: JobIdArgs) -> anyhow::Result<()> {
    let job_id = args.job;
    control(&args.client, |mut c| async move {
        c.retry(JobRequest { job_id }).await
    })
}

/// Runs `dreamfarm priority`.
pub fn priority(args: PriorityArgs) -> anyhow::Result<()> {
    let request = PriorityRequest {
        job_id: args.job,
        priority: args.priority,
    };
    control(&args.client, |mut c| async move {
        c.set_priority(request).await
    })
}

/// Runs `dreamfarm extend`.
pub fn extend(args: ExtendArgs) -> anyhow::Result<()> {
    let request = ExtendRequest {
        job_id: args.job,
        frames: args.frames,
    };
    control(&args.client, |mut c| async move { c.extend(request).await })
}

/// Runs `dreamfarm delete`.
pub fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    block_on(async move {
        let mut client = args.client.client().await?;
        args.client
            .call(client.delete(DeleteRequest {
                job_id: args.job.clone(),
                force: args.force,
            }))
            .await?;
        println!("deleted {}", args.job);
        Ok(())
    })
}

/// Runs `dreamfarm events`: the job's event log, one line each.
pub fn events(args: JobIdArgs) -> anyhow::Result<()> {
    block_on(async move {
        let mut client = args.client.client().await?;
        let mut replies = args
            .client
            .call(client.events(JobRequest { job_id: args.job }))
            .await?
            .into_inner();
        let mut out = std::io::stdout().lock();
        while let Some(reply) = args.client.call(replies.message()).await? {
            for e in reply.events {
                let at = utc_time(e.unix_ms);
                // A reader that stops early (`| head`) ends it quietly.
                if writeln!(out, "{at}  {:14}  {}", e.kind, e.detail).is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_gives_the_eta_as_people_write_it() {
        let mut s = JobStatus {
            job_id: "trip-1a2b".into(),
            state: JobState::Running as i32,
            frames_done: 30,
            frames_total: 3000,
            eta_seconds: 3720.0,
            workers: 8,
            ..JobStatus::default()
        };
        assert_eq!(
            status_line(&s),
            "trip-1a2b  running    priority 0  frames 30/3000  tiles 0/0  0.00 tiles/s  workers 8  ETA 1 h 02 min"
        );
        s.eta_seconds = 0.0;
        assert!(!status_line(&s).contains("ETA"), "{}", status_line(&s));
        s.state = JobState::Paused as i32;
        s.tiles_done = 3;
        s.tiles_total = 12;
        assert_eq!(
            status_line(&s),
            "trip-1a2b  paused     priority 0  frames 30/3000"
        );
    }
}
