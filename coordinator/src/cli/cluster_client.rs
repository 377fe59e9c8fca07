//! The cluster's client commands: `submit`, `status`, `watch`, `cancel` and
//! `fetch`, talking to a coordinator's `JobService`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use dreamfarm_proto::MAX_MESSAGE_BYTES;
use dreamfarm_proto::auth::AttachToken;
use dreamfarm_proto::chunks::split;
use dreamfarm_proto::connect::connect;
use dreamfarm_proto::pb::job_service_client::JobServiceClient;
use dreamfarm_proto::pb::submit_request::Body;
use dreamfarm_proto::pb::{
    JobRequest, JobState, JobStatus, ListRequest, SubmitRequest, SubmitStart,
};
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
    async fn client(&self) -> anyhow::Result<Client> {
        let channel = connect(&self.coordinator, self.tls_ca.as_deref()).await?;
        let token = AttachToken::new(self.token.as_deref())
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        Ok(JobServiceClient::with_interceptor(channel, token)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// Arguments of `dreamfarm submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    job: JobArgs,
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

/// Arguments of `dreamfarm fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The job id.
    job: String,
    /// Folder to write the frames and video into [default: dream/JOB].
    #[arg(long)]
    out: Option<PathBuf>,
}

fn block_on<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// A gRPC status as one line that says what to do.
fn explain(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("the coordinator said: {} ({:?})", s.message(), s.code())
}

/// Runs `dreamfarm submit`: uploads the job and prints its id.
pub fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let (mut spec, _, name) = args.job.spec()?;
    let input = std::fs::read(&spec.input)
        .with_context(|| format!("cannot read the input image {}", spec.input.display()))?;
    spec.input = "input".into();
    let job_toml = toml::to_string(&spec).context("cannot encode the job")?;
    block_on(async move {
        let mut client = args.client.client().await?;
        let mut messages = vec![SubmitRequest {
            body: Some(Body::Start(SubmitStart {
                job_toml,
                name,
                input_bytes: input.len() as u64,
            })),
        }];
        messages.extend(split(&input).map(|c| SubmitRequest {
            body: Some(Body::InputChunk(c)),
        }));
        let reply = client
            .submit(tokio_stream::iter(messages))
            .await
            .map_err(explain)?;
        println!("{}", reply.into_inner().job_id);
        Ok(())
    })
}

fn state_name(s: &JobStatus) -> &'static str {
    match JobState::try_from(s.state) {
        Ok(JobState::Queued) => "queued",
        Ok(JobState::Running) => "running",
        Ok(JobState::Done) => "done",
        Ok(JobState::Failed) => "failed",
        Ok(JobState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

fn status_line(s: &JobStatus) -> String {
    let mut line = format!(
        "{}  {:9}  frames {}/{}  tiles {}/{}  {:.2} tiles/s  workers {}",
        s.job_id,
        state_name(s),
        s.frames_done,
        s.frames_total,
        s.tiles_done,
        s.tiles_total,
        s.tiles_per_second,
        s.workers
    );
    if s.eta_seconds > 0.0 {
        line += &format!("  ETA {:.0}s", s.eta_seconds);
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
        let jobs = client
            .list(ListRequest {})
            .await
            .map_err(explain)?
            .into_inner()
            .jobs;
        let shown: Vec<&JobStatus> = jobs
            .iter()
            .filter(|j| args.job.as_ref().is_none_or(|id| &j.job_id == id))
            .collect();
        if let (Some(id), true) = (&args.job, shown.is_empty()) {
            bail!("no job {id:?} on this coordinator");
        }
        if shown.is_empty() {
            println!("no jobs");
        }
        for j in shown {
            println!("{}", status_line(j));
        }
        Ok(())
    })
}

/// Runs `dreamfarm watch`: a progress bar on a terminal, lines otherwise;
/// exits non-zero if the job fails or is cancelled.
pub fn watch(args: JobIdArgs) -> anyhow::Result<()> {
    block_on(async move {
        let mut client = args.client.client().await?;
        let mut stream = client
            .watch(JobRequest {
                job_id: args.job.clone(),
            })
            .await
            .map_err(explain)?
            .into_inner();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] frame {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_prefix(args.job.clone());
            bar
        });
        let mut last = None;
        let mut last_line = String::new();
        while let Some(s) = stream.message().await.map_err(explain)? {
            match &bar {
                Some(bar) => {
                    bar.set_length(s.frames_total);
                    bar.set_position(s.frames_done);
                    bar.set_message(format!(
                        "tiles {}/{}  {:.2} tiles/s  ETA {:.0}s  {}",
                        s.tiles_done, s.tiles_total, s.tiles_per_second, s.eta_seconds, s.message
                    ));
                }
                None => {
                    // One line per frame or state change, not per tile.
                    let line = format!(
                        "{} {} {} {}",
                        state_name(&s),
                        s.frames_done,
                        s.frames_total,
                        s.message
                    );
                    if line != last_line {
                        println!("{}", status_line(&s));
                        last_line = line;
                    }
                }
            }
            last = Some(s);
        }
        // Without a bar the loop has already printed the final line.
        let had_bar = bar.inspect(indicatif::ProgressBar::finish).is_some();
        match last {
            Some(s) if s.state == JobState::Done as i32 => {
                if had_bar {
                    println!("{}", status_line(&s));
                }
                Ok(())
            }
            Some(s) => bail!("job {} {}: {}", s.job_id, state_name(&s), s.message),
            None => bail!("the coordinator ended the watch without a status"),
        }
    })
}

/// Runs `dreamfarm cancel`.
pub fn cancel(args: JobIdArgs) -> anyhow::Result<()> {
    block_on(async move {
        let mut client = args.client.client().await?;
        let s = client
            .cancel(JobRequest { job_id: args.job })
            .await
            .map_err(explain)?
            .into_inner();
        println!("{}", status_line(&s));
        Ok(())
    })
}

/// Runs `dreamfarm fetch`: the job's frames and video into a folder; files
/// are written whole (temp file + rename) and existing ones are replaced
/// only by complete copies.
pub fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("dream").join(&args.job));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    block_on(async move {
        let mut client = args.client.client().await?;
        let mut stream = client
            .fetch(JobRequest { job_id: args.job })
            .await
            .map_err(explain)?
            .into_inner();
        let mut current: Option<(String, tempfile::NamedTempFile)> = None;
        let mut files = 0;
        let finish = |(name, tmp): (String, tempfile::NamedTempFile)| -> anyhow::Result<()> {
            tmp.persist(out.join(&name))
                .with_context(|| format!("cannot write {name}"))?;
            Ok(())
        };
        while let Some(chunk) = stream.message().await.map_err(explain)? {
            let name = chunk.path;
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                bail!("the coordinator sent a bad file name {name:?}");
            }
            if current.as_ref().is_none_or(|(n, _)| *n != name) {
                if let Some(done) = current.take() {
                    finish(done)?;
                    files += 1;
                }
                current = Some((name.clone(), tempfile::NamedTempFile::new_in(&out)?));
            }
            if let Some((_, tmp)) = current.as_mut() {
                std::io::Write::write_all(tmp, &chunk.data)?;
            }
        }
        if let Some(done) = current.take() {
            finish(done)?;
            files += 1;
        }
        println!("{files} files in {}", out.display());
        Ok(())
    })
}
