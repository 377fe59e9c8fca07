//! A job's files over HTTP: one frame, the latest frame, the video and
//! the frames so far as a zip (streamed, never held in memory whole).

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tokio_util::io::ReaderStream;

use super::error::WebError;
use super::source::{JobRow, JobSource};
use super::{Source, blocking};

/// Frame numbers have at most this many digits (a million frames at most).
const MAX_FRAME_DIGITS: usize = 7;

/// The file of frame `n` in `dir` (as the renders name them).
fn frame_file(dir: &Path, n: u64) -> PathBuf {
    crate::output::OutputDir::existing(dir).frame_path(n)
}

/// A frame number from a `N.png` path segment.
pub fn parse_frame(file: &str) -> Result<u64, WebError> {
    let bad = || {
        WebError::BadRequest(format!(
            "{file:?} is not a frame: frames are /jobs/JOB/frames/N.png with N a frame number from 0"
        ))
    };
    let digits = file.strip_suffix(".png").ok_or_else(bad)?;
    if digits.is_empty()
        || digits.len() > MAX_FRAME_DIGITS
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    digits.parse().map_err(|_| bad())
}

/// Frame `n` of `job` as a PNG response, cached as `cache` says.
async fn png(
    source: &Source,
    job: &JobRow,
    n: u64,
    cache: &'static str,
) -> Result<Response, WebError> {
    if n >= job.frames_done {
        return Err(WebError::NotFound(format!(
            "frame {n} of job {} is not rendered yet ({} frames so far)",
            job.id, job.frames_done
        )));
    }
    let files = {
        let (source, id) = (source.clone(), job.id.clone());
        blocking(move || source.files(&id)).await?
    };
    let path = frame_file(&files.frames_dir, n);
    let bytes = tokio::fs::read(&path).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => WebError::NotFound(format!(
            "frame {n} of job {} is not on disk (deleted?)",
            job.id
        )),
        _ => WebError::Internal(format!("cannot read {}: {e}", path.display())),
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response())
}

/// The job `id`'s row, off the runtime.
async fn job_row(source: &Source, id: String) -> Result<JobRow, WebError> {
    let source = source.clone();
    blocking(move || source.job(&id)).await
}

/// `GET /jobs/JOB/latest.png`: the latest complete frame.
pub async fn latest(
    State(source): State<Source>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, WebError> {
    let job = job_row(&source, id).await?;
    match job.frames_done {
        0 => Err(WebError::NotFound(format!(
            "job {} has no frame yet",
            job.id
        ))),
        n => png(&source, &job, n - 1, "no-cache").await,
    }
}

/// `GET /jobs/JOB/frames/N.png`: frame N (a written frame never changes).
pub async fn frame(
    State(source): State<Source>,
    UrlPath((id, file)): UrlPath<(String, String)>,
) -> Result<Response, WebError> {
    let n = parse_frame(&file)?;
    let job = job_row(&source, id).await?;
    png(&source, &job, n, "private, max-age=86400").await
}

/// A download of the file `file` (of `len` bytes) named `name`.
fn download(file: std::fs::File, len: u64, name: &str, kind: &'static str) -> Response {
    let body = Body::from_stream(ReaderStream::new(tokio::fs::File::from_std(file)));
    let mut response = ([(header::CONTENT_TYPE, kind)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let disposition = format!("attachment; filename=\"{}\"", file_name(name));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// `name` safe inside a quoted `filename=` (job names may hold anything
/// but separators).
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect()
}

/// `GET /jobs/JOB/video.mp4`: the video, once the job is done.
pub async fn video(
    State(source): State<Source>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, WebError> {
    let (job, files) = {
        let source = source.clone();
        blocking(move || Ok((source.job(&id)?, source.files(&id)?))).await?
    };
    let file = std::fs::File::open(&files.video).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => WebError::NotFound(format!(
            "job {} has no video yet: it is made when the job is done ({}, {} of {} frames)",
            job.id, job.state, job.frames_done, job.frames_total
        )),
        _ => WebError::Internal(format!("cannot read {}: {e}", files.video.display())),
    })?;
    let len = file
        .metadata()
        .map_err(|e| WebError::Internal(e.to_string()))?
        .len();
    Ok(download(
        file,
        len,
        &format!("{}.mp4", job.name),
        "video/mp4",
    ))
}

/// Writes frames `0..frames` of `dir` into a zip in a temporary file
/// (PNGs are stored, not compressed again), under the folder `name/`.
fn zip_frames(dir: &Path, frames: u64, name: &str) -> Result<(std::fs::File, u64), WebError> {
    let fail =
        |e: &dyn std::fmt::Display| WebError::Internal(format!("cannot zip the frames: {e}"));
    let mut zip = zip::ZipWriter::new(tempfile::tempfile().map_err(|e| fail(&e))?);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for n in 0..frames {
        let path = frame_file(dir, n);
        let mut frame =
            std::fs::File::open(&path).map_err(|e| fail(&format!("{}: {e}", path.display())))?;
        zip.start_file(format!("{name}/{n:06}.png"), options)
            .map_err(|e| fail(&e))?;
        std::io::copy(&mut frame, &mut zip).map_err(|e| fail(&e))?;
    }
    let mut file = zip.finish().map_err(|e| fail(&e))?;
    file.flush().map_err(|e| fail(&e))?;
    let len = file.stream_position().map_err(|e| fail(&e))?;
    file.rewind().map_err(|e| fail(&e))?;
    Ok((file, len))
}

/// `GET /jobs/JOB/frames.zip`: the frames so far.
pub async fn frames_zip(
    State(source): State<Source>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, WebError> {
    let source: Arc<dyn JobSource> = source;
    let (job, file, len) = blocking(move || {
        let job = source.job(&id)?;
        let files = source.files(&id)?;
        let name = file_name(&job.name);
        let (file, len) = zip_frames(&files.frames_dir, job.frames_done, &name)?;
        Ok((job, file, len))
    })
    .await?;
    Ok(download(
        file,
        len,
        &format!("{}-frames.zip", job.name),
        "application/zip",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_numbers_are_plain_numbers() {
        assert_eq!(parse_frame("0.png"), Ok(0));
        assert_eq!(parse_frame("0012.png"), Ok(12));
        for bad in [
            "",
            ".png",
            "-1.png",
            "1e3.png",
            "12",
            "12.jpg",
            "99999999.png",
            "../x.png",
        ] {
            assert!(
                matches!(parse_frame(bad), Err(WebError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn download_names_keep_to_safe_characters() {
        assert_eq!(file_name("trip v2.mp4"), "trip_v2.mp4");
        assert_eq!(file_name("a\"b\\c;é"), "a_b_c__");
    }

    #[test]
    fn the_zip_holds_every_frame_so_far() {
        let dir = tempfile::tempdir().unwrap();
        for n in 0..3u8 {
            std::fs::write(frame_file(dir.path(), u64::from(n)), [n; 10]).unwrap();
        }
        let (file, len) = zip_frames(dir.path(), 2, "trip").unwrap();
        assert!(len > 20);
        let mut zip = zip::ZipArchive::new(file).unwrap();
        assert_eq!(zip.len(), 2);
        assert_eq!(zip.by_index(1).unwrap().name(), "trip/000001.png");
    }
}
