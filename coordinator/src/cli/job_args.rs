//! The flags and job file that describe a render job, shared by
//! `dreamfarm render` (on this machine) and `dreamfarm submit` (to a
//! cluster).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use dreamfarm_common::job_name::{MAX_NAME_CHARS, check_job_name};
use dreamfarm_common::params::{JobSpec, parse_coherence};
use dreamfarm_common::schedule::Schedule;
use dreamfarm_coordinator::output::{MANIFEST, OutputDir};

use super::dream_flags::{DreamFlags, set};

/// The job of `dreamfarm render` and `dreamfarm submit`.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// TOML job file holding any of the settings below (flags override it).
    #[arg(long)]
    job: Option<PathBuf>,
    /// Starting image (PNG or JPEG).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Job name: frames go to dream/NAME/, the video to dream/NAME/NAME.mp4
    /// [default: the input file's name].
    #[arg(long)]
    name: Option<String>,
    /// Output folder instead of dream/NAME/.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Number of frames to render.
    #[arg(long)]
    frames: Option<u32>,
    /// Seed of every random choice [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Resize the input to WIDTHxHEIGHT first.
    #[arg(long, value_parser = parse_size)]
    size: Option<[u32; 2]>,
    #[command(flatten)]
    dream: DreamFlags,
    /// The seed program's zoom: pixels cropped from each side per frame (as
    /// an isotropic zoom of width / (width - 2 * PX)).
    #[arg(long, conflicts_with = "zoom_factor")]
    zoom: Option<f64>,
    /// Magnification per frame, a number or a schedule like
    /// "0:(1.0), 60:(1.05)" [default: 1.02].
    #[arg(long, allow_hyphen_values = true)]
    zoom_factor: Option<Schedule>,
    /// Rotation per frame in degrees, counter-clockwise; a number or a
    /// schedule like "0:(0), 100:(2)" [default: 0].
    #[arg(long, allow_hyphen_values = true)]
    rotate: Option<Schedule>,
    /// Pan per frame in pixels, RIGHT,DOWN [default: 0,0].
    #[arg(long, value_parser = parse_pair, allow_hyphen_values = true, conflicts_with_all = ["pan_x", "pan_y"])]
    pan: Option<[f64; 2]>,
    /// Pan right per frame in pixels: a number or a schedule.
    #[arg(long, allow_hyphen_values = true)]
    pan_x: Option<Schedule>,
    /// Pan down per frame in pixels: a number or a schedule.
    #[arg(long, allow_hyphen_values = true)]
    pan_y: Option<Schedule>,
    /// Zoom centre as fractions of the frame, X,Y [default: 0.5,0.5].
    #[arg(long, value_parser = parse_pair, conflicts_with_all = ["center_x", "center_y"])]
    center: Option<[f64; 2]>,
    /// Zoom centre's x as a fraction of the width: a number or a schedule.
    #[arg(long)]
    center_x: Option<Schedule>,
    /// Zoom centre's y as a fraction of the height: a number or a schedule.
    #[arg(long)]
    center_y: Option<Schedule>,
    /// Colour coherence: match each frame's colours to frame 0's in lab,
    /// hsv or rgb, or off [default: off].
    #[arg(long, value_parser = ["lab", "hsv", "rgb", "off"])]
    color_coherence: Option<String>,
    /// How strongly frames are pulled to frame 0's colours, 0 to 1: a
    /// number or a schedule [default: 1].
    #[arg(long)]
    color_strength: Option<Schedule>,
    /// Match colours to this image instead of frame 0 (needs
    /// --color-coherence).
    #[arg(long)]
    color_reference: Option<PathBuf>,
    /// Contrast of each frame's input, 1 unchanged: a number or a schedule
    /// [default: 1].
    #[arg(long)]
    contrast: Option<Schedule>,
    /// Unsharp-mask amount on each frame's input, 0 none (0.2 to 0.5
    /// counters the blur of repeated zooming): a number or a schedule
    /// [default: 0].
    #[arg(long)]
    sharpen: Option<Schedule>,
    /// Video frames per second [default: 30].
    #[arg(long)]
    fps: Option<u32>,
    /// Video quality, x264 CRF 0 (lossless) to 51 [default: 18].
    #[arg(long)]
    crf: Option<u32>,
}

fn parse_size(s: &str) -> Result<[u32; 2], String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or("expected WIDTHxHEIGHT, e.g. 1920x1080")?;
    Ok([
        w.parse().map_err(|_| "bad width")?,
        h.parse().map_err(|_| "bad height")?,
    ])
}

fn parse_pair(s: &str) -> Result<[f64; 2], String> {
    let (a, b) = s.split_once(',').ok_or("expected two numbers A,B")?;
    Ok([
        a.trim().parse().map_err(|_| "bad number")?,
        b.trim().parse().map_err(|_| "bad number")?,
    ])
}

/// A job name made from a file or folder name: without leading dots (a
/// temporary folder's `.tmpXYZ` names the job `tmpXYZ`), control
/// characters or path separators, and at most as long as a name may be.
fn default_name(file: &str) -> String {
    let name: String = file
        .trim_start_matches('.')
        .chars()
        .filter(|&c| !(c.is_control() || c == '/' || c == '\\'))
        .take(MAX_NAME_CHARS)
        .collect();
    if name.is_empty() {
        "dream".into()
    } else {
        name
    }
}

/// The folder of `job` when it is a frames folder's own job file
/// ([`MANIFEST`] beside frames).
fn frames_folder_of(job: &Path) -> Option<PathBuf> {
    if job.file_name()? != MANIFEST {
        return None;
    }
    let dir = match job.parent()? {
        p if p.as_os_str().is_empty() => Path::new("."),
        p => p,
    };
    (OutputDir::existing(dir).frames_done() > 0).then(|| dir.to_path_buf())
}

impl JobArgs {
    /// The `--output` folder, if one was given.
    pub fn output(&self) -> Option<&Path> {
        self.output.as_deref()
    }

    /// The job (job file, then flags), its output folder and its name.
    pub fn spec(self) -> anyhow::Result<(JobSpec, PathBuf, String)> {
        let mut spec = match &self.job {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read job file {}", path.display()))?;
                let mut spec: JobSpec = toml::from_str(&text)
                    .with_context(|| format!("job file {} is not valid", path.display()))?;
                // Like Cargo: paths in a file are relative to the file.
                if let Some(dir) = path.parent() {
                    spec.relative_to(dir);
                }
                spec
            }
            None => JobSpec::new(
                self.input
                    .clone()
                    .context("--input IMAGE is required (or a --job file with `input`)")?,
                self.frames
                    .context("--frames N is required (or a --job file with `frames`)")?,
            ),
        };
        if let Some(v) = self.input {
            spec.input = v;
        }
        if let Some(v) = self.frames {
            spec.frames = v;
        }
        spec.seed = self.seed.unwrap_or(spec.seed);
        spec.size = self.size.or(spec.size);
        self.dream.apply(&mut spec.dream)?;
        if let Some(px) = self.zoom {
            let width = match spec.size {
                Some([w, _]) => w,
                None => {
                    image::image_dimensions(&spec.input)
                        .with_context(|| {
                            format!("cannot read input image {}", spec.input.display())
                        })?
                        .0
                }
            };
            if !(0.0..f64::from(width) / 4.0).contains(&px) {
                bail!("--zoom {px} must be between 0 and a quarter of the width ({width} px)");
            }
            spec.zoom.zoom = (f64::from(width) / (f64::from(width) - 2.0 * px)).into();
        }
        let z = &mut spec.zoom;
        set(&mut z.zoom, self.zoom_factor);
        set(&mut z.rotate, self.rotate);
        if let Some([x, y]) = self.pan {
            z.pan = [x.into(), y.into()];
        }
        if let Some([x, y]) = self.center {
            z.center = [x.into(), y.into()];
        }
        set(&mut z.pan[0], self.pan_x);
        set(&mut z.pan[1], self.pan_y);
        set(&mut z.center[0], self.center_x);
        set(&mut z.center[1], self.center_y);
        let c = &mut spec.color;
        if let Some(space) = &self.color_coherence {
            c.coherence = parse_coherence(space).map_err(anyhow::Error::msg)?;
        }
        if self.color_reference.is_some() {
            c.reference = self.color_reference;
        }
        set(&mut c.strength, self.color_strength);
        set(&mut c.contrast, self.contrast);
        set(&mut c.sharpen, self.sharpen);
        spec.video.fps = self.fps.unwrap_or(spec.video.fps);
        spec.video.crf = self.crf.unwrap_or(spec.video.crf);
        spec.validate()?;
        spec.check_paths_are_text()?;
        // A frames folder's own job file continues that folder and its
        // video (a fetched job's, say, whose video is named after the job).
        let output = self
            .output
            .or_else(|| self.job.as_deref().and_then(frames_folder_of));
        let from_output = || {
            let dir = output.as_deref()?;
            OutputDir::existing(dir)
                .video_name()
                .or_else(|| Some(default_name(&dir.file_name()?.to_string_lossy())))
        };
        let name = match self.name.or_else(from_output) {
            Some(n) => n,
            None => spec
                .input
                .file_stem()
                .map(|n| default_name(&n.to_string_lossy()))
                .unwrap_or_else(|| "dream".into()),
        };
        check_job_name(&name)?;
        let dir = output.unwrap_or_else(|| Path::new("dream").join(&name));
        Ok((spec, dir, name))
    }
}
