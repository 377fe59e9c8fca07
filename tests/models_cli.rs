//! The `dreamfarm` binary's model commands, run as a user would: listing,
//! fetching (offline once done, clear errors when it cannot be), layers of a
//! TorchScript file, and a still-image dream.

use std::path::{Path, PathBuf};
use std::process::Command;

use dreamfarm_tests::{
    default_store, dreamfarm, file_mode, one_step_still, plain_file_mode, repo, run,
};

/// A registry address where nothing listens: every download fails at once.
const DEAD_REGISTRY: &str = "http://127.0.0.1:9/";

/// `dreamfarm models fetch --store STORE MODEL` with every registry dead.
fn fetch_offline(store: &Path, model: &str) -> (std::process::Output, String) {
    let store = store.to_str().expect("utf-8 path");
    let (out, _, stderr) = run(offline(dreamfarm(&[
        "models", "fetch", "--store", store, model,
    ])));
    (out, stderr)
}

fn offline(mut c: Command) -> Command {
    c.env("npm_config_registry", DEAD_REGISTRY)
        .env("npm_config_fetch_retries", "0")
        .env("npm_config_fetch_timeout", "2000")
        .env("PIP_INDEX_URL", DEAD_REGISTRY)
        .env("PIP_RETRIES", "0")
        .env("PIP_TIMEOUT", "2");
    c
}

#[test]
fn models_and_layers_are_listed() {
    let (out, stdout, _) = run(dreamfarm(&["models"]));
    assert!(out.status.success());
    for name in ["inception-v3", "mobilenet-v2", "googlenet"] {
        assert!(stdout.contains(name), "{stdout}");
    }
    let (out, stdout, _) = run(dreamfarm(&["layers", "inception-v3"]));
    assert!(out.status.success());
    let layers: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        layers,
        [
            "mixed0   256 channels",
            "mixed1   288 channels",
            "mixed2   288 channels",
            "mixed3   768 channels",
            "mixed4   768 channels",
            "mixed5   768 channels",
        ]
    );
    let (out, _, stderr) = run(dreamfarm(&["layers", "vgg16"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown model \"vgg16\"")
            && stderr.contains("inception-v3, mobilenet-v2, googlenet"),
        "{stderr}"
    );
}

#[test]
fn fetching_again_is_offline() {
    let (out, stdout, stderr) = run(offline(dreamfarm(&["models", "fetch"])));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("inception-v3.safetensors") && stdout.contains("mobilenet-v2.safetensors"),
        "{stdout}"
    );
}

#[test]
fn unreachable_registry_is_one_clear_error_and_leaves_nothing_behind() {
    let store = tempfile::tempdir().expect("temp dir");
    let (out, stderr) = fetch_offline(store.path(), "inception-v3");
    assert!(!out.status.success());
    assert!(
        stderr.contains("could not download npm package nsfwjs@4.4.0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("npm registry") && stderr.contains("nsfwjs-4.4.0.tgz"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{stderr}"
    );
    let left: Vec<_> = walk(store.path());
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn truncated_download_names_the_file_and_the_fix_and_is_kept() {
    let store = tempfile::tempdir().expect("temp dir");
    let downloads = store.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("mkdir");
    let real = std::fs::read(default_store().join("downloads/nsfwjs-4.4.0.tgz"))
        .expect("setup fetched nsfwjs");
    let bad = downloads.join("nsfwjs-4.4.0.tgz");
    std::fs::write(&bad, &real[..real.len() / 2]).expect("write");
    let (out, stderr) = fetch_offline(store.path(), "inception-v3");
    assert!(!out.status.success());
    assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("expected 585cd178") && stderr.contains("delete it"),
        "{stderr}"
    );
    assert!(!store.path().join("inception-v3.safetensors").exists());
    assert_eq!(
        walk(store.path()),
        vec![bad],
        "only the bad download remains"
    );
}

#[test]
fn corrupt_converted_weights_are_refused_not_loaded() {
    let store = tempfile::tempdir().expect("temp dir");
    let real = std::fs::read(default_store().join("mobilenet-v2.safetensors"))
        .expect("setup fetched mobilenet");
    let bad = store.path().join("mobilenet-v2.safetensors");
    let mut flipped = real.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    std::fs::write(&bad, &flipped).expect("write");
    let (out, stderr) = fetch_offline(store.path(), "mobilenet-v2");
    assert!(!out.status.success());
    assert!(
        stderr.contains(&bad.display().to_string()) && stderr.contains("sha256"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&bad).expect("still there"),
        flipped,
        "the file is reported, not replaced"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            files.extend(walk(&p));
        } else {
            files.push(p);
        }
    }
    files
}

/// Runs `script` in the project's Python with `path` as its argument, to
/// save a TorchScript module there.
fn save_torchscript(script: &str, path: &Path) {
    let status = Command::new(repo().join(".venv/bin/python"))
        .args(["-c", script])
        .arg(path)
        .status()
        .expect("project Python");
    assert!(status.success(), "the script did not save {path:?}");
}

#[test]
fn torchscript_outputs_become_layers_and_dream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pt = dir.path().join("two_outputs.pt");
    let script = r#"
import sys, torch
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 4, 3, stride=2)
    def forward(self, x):
        h = torch.relu(self.a(x))
        return h, torch.relu(self.b(h))
torch.manual_seed(0)
torch.jit.trace(Net(), torch.zeros(1, 3, 32, 32)).save(sys.argv[1])
"#;
    save_torchscript(script, &pt);
    let p = pt.to_str().expect("utf-8");
    let (out, stdout, stderr) = run(dreamfarm(&["layers", p]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["out0     8 channels", "out1     4 channels"]
    );

    let png = dir.path().join("dream.png");
    let args = [
        "dream",
        "assets/chelsea.png",
        "-o",
        png.to_str().expect("utf-8"),
        "--model",
        p,
        "--layers",
        "out1",
        "--octaves",
        "2",
        "--iterations",
        "2",
        "--device",
        "cpu",
    ];
    let (out, _, stderr) = run(dreamfarm(&args));
    assert!(out.status.success(), "{stderr}");
    let dreamed = image_bytes(&png);
    let original = image_bytes(&repo().join("assets/chelsea.png"));
    assert_eq!(dreamed.len(), original.len(), "same size");
    assert_ne!(dreamed, original, "the dream changed the picture");

    // A channel the output does not have, checked against the channels
    // the model was loaded with.
    let beyond = args.map(|a| if a == "out1" { "out1:1:2-9" } else { a });
    std::fs::remove_file(&png).expect("remove");
    let (out, _, stderr) = run(dreamfarm(&beyond));
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("layer out1 has 4 channels; channel 9 does not exist"),
        "{stderr}"
    );
    assert!(!png.exists(), "a refused dream wrote its image");
}

/// A TorchScript file that is damaged, or whose network cannot take an RGB
/// image, is refused in one line saying what libtorch found: not its C++
/// stack (one line per frame) or the traceback of the module's code.
#[test]
fn a_bad_torchscript_model_gets_one_line_saying_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gray = dir.path().join("gray.pt");
    let script = r#"
import sys, torch
net = torch.nn.Conv2d(1, 8, 3, padding=1)
torch.jit.trace(net, torch.zeros(1, 1, 32, 32)).save(sys.argv[1])
"#;
    save_torchscript(script, &gray);
    let damaged = dir.path().join("damaged.pt");
    let bytes = std::fs::read(&gray).expect("gray.pt");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).expect("write");
    // A network that ends in one score per image: no channels to dream on
    // (its worker used to panic at the first tile).
    let scores = dir.path().join("scores.pt");
    let script = r#"
import sys, torch
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
    def forward(self, x):
        h = torch.relu(self.a(x))
        return h, h.mean(dim=(1, 2, 3))
torch.jit.trace(Net(), torch.zeros(1, 3, 32, 32)).save(sys.argv[1])
"#;
    save_torchscript(script, &scores);
    for (model, says) in [
        (&gray, "expected input[1, 3, 224, 224] to have 1 channels"),
        (&damaged, "failed reading zip archive"),
        (&scores, "output out1 has shape [1], without channels"),
    ] {
        let (out, _, stderr) = run(dreamfarm(&["layers", model.to_str().expect("utf-8")]));
        assert!(!out.status.success(), "{model:?} was listed");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: TorchScript model"), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

fn image_bytes(p: &Path) -> Vec<u8> {
    image::open(p).expect("PNG").to_rgb8().into_raw()
}

#[test]
fn dream_rejects_bad_input_with_one_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_png = dir.path().join("x.png");
    let o = out_png.to_str().expect("utf-8");
    let corrupt = dir.path().join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnot really").expect("write");
    let no_dir = dir.path().join("no/such/dir/x.png");
    let cases: [(&[&str], &str); 9] = [
        (
            &["dream", "no/such/image.png", "-o", o],
            "input image no/such/image.png: cannot open it",
        ),
        (
            &["dream", corrupt.to_str().expect("utf-8"), "-o", o],
            "not a readable image",
        ),
        (
            &["dream", "assets/chelsea.png", "-o", o, "--layers", "mixed9"],
            "has no layer \"mixed9\"",
        ),
        (
            &["dream", "assets/chelsea.png", "-o", o, "--device", "tpu"],
            "unknown device",
        ),
        (
            &[
                "dream",
                "assets/chelsea.png",
                "-o",
                no_dir.to_str().expect("utf-8"),
            ],
            // The folder and why, not the temporary file it tried.
            "no/such/dir: No such file or directory (os error 2)\n",
        ),
        (
            &["dream", "assets/chelsea.png", "-o", "x.gif"],
            "give -o a path ending in .png, .jpg or .jpeg",
        ),
        (
            &[
                "dream",
                "assets/chelsea.png",
                "-o",
                o,
                "--max-memory",
                "1MiB",
                "--device",
                "cpu",
            ],
            "dreaming a 451x300 image needs about 183 MiB of memory for its octaves (105 MiB) and the network's passes on the CPU (78 MiB), more than --max-memory (1 MiB). Fix: dream a smaller copy of the image or pass a smaller --tile-size, or a larger --max-memory",
        ),
        (
            &["dream", "assets/chelsea.png", "-o", o, "--cadence", "3"],
            "--cadence shapes a video across its frames and does nothing to one still",
        ),
        (
            &[
                "dream",
                "assets/chelsea.png",
                "-o",
                o,
                "--layer-every",
                "4",
                "--layer-fade",
                "2",
            ],
            "--layer-fade shapes a video",
        ),
    ];
    for (args, message) in cases {
        let (out, _, stderr) = run(dreamfarm(args));
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(stderr.matches("error:").count(), 1, "one error: {stderr}");
        // A bad output path is refused before the model loads, not after
        // the dream.
        assert!(!stderr.contains("model loaded"), "{args:?}: {stderr}");
        assert!(!out_png.exists(), "{args:?} wrote output");
    }
    assert!(!repo().join("x.gif").exists());
}

#[test]
fn dream_writes_the_format_its_output_path_names() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, magic) in [("x.jpg", &b"\xff\xd8\xff"[..]), ("x.png", &b"\x89PNG"[..])] {
        let path = dir.path().join(name);
        let args = one_step_still("assets/chelsea.png", path.to_str().expect("utf-8"));
        let (out, stdout, stderr) = run(dreamfarm(&args));
        assert!(out.status.success(), "{stderr}");
        assert_eq!(stdout.trim(), path.to_str().expect("utf-8"));
        let bytes = std::fs::read(&path).expect("output");
        assert!(bytes.starts_with(magic), "{name} starts {:?}", &bytes[..4]);
        assert_eq!(
            file_mode(&path),
            plain_file_mode(dir.path()),
            "{name}: not the permissions any other file gets"
        );
    }
    // Only the two images: no temporary file left beside them.
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 2);
}
