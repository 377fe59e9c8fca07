//! `dreamfarm models` and `dreamfarm layers`.

#[cfg(feature = "embedded-worker")]
use std::path::PathBuf;

#[cfg(feature = "embedded-worker")]
use anyhow::Context;
use clap::{Args, Subcommand};
use dreamfarm_common::model_catalog::{BuiltinModel, ModelSpec};

/// Arguments of `dreamfarm models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    action: Option<ModelsAction>,
}

#[derive(Debug, Subcommand)]
enum ModelsAction {
    /// List the built-in models (the default).
    List,
    /// Download, verify and convert the weights of downloadable models, so
    /// that later runs are offline.
    #[cfg(feature = "embedded-worker")]
    Fetch {
        /// Models to fetch (default: every downloadable one).
        models: Vec<String>,
        /// Weight store folder.
        #[arg(long, env = "DREAMFARM_MODELS")]
        store: Option<PathBuf>,
    },
}

/// Arguments of `dreamfarm layers`.
#[derive(Debug, Args)]
pub struct LayersArgs {
    /// A built-in model name, or a TorchScript `.pt` file.
    model: String,
}

/// Runs `dreamfarm models`.
pub fn models(args: ModelsArgs) -> anyhow::Result<()> {
    match args.action.unwrap_or(ModelsAction::List) {
        ModelsAction::List => {
            for m in BuiltinModel::ALL {
                let info = m.info();
                println!("{:<14} {}", info.name, info.summary);
            }
            println!("(or the path of a TorchScript .pt file: see `dreamfarm layers FILE.pt`)");
            Ok(())
        }
        #[cfg(feature = "embedded-worker")]
        ModelsAction::Fetch { models, store } => fetch(models, store),
    }
}

#[cfg(feature = "embedded-worker")]
fn fetch(models: Vec<String>, store: Option<PathBuf>) -> anyhow::Result<()> {
    use dreamfarm_worker::weights::WeightStore;
    let store = WeightStore::new(store.unwrap_or_else(WeightStore::default_dir));
    let wanted: Vec<BuiltinModel> = if models.is_empty() {
        vec![BuiltinModel::InceptionV3, BuiltinModel::MobilenetV2]
    } else {
        models
            .iter()
            .map(|m| match m.parse::<ModelSpec>()? {
                ModelSpec::Builtin(b) => Ok(b),
                ModelSpec::TorchScript(p) => anyhow::bail!(
                    "{} is a TorchScript file: it carries its own weights",
                    p.display()
                ),
            })
            .collect::<anyhow::Result<_>>()?
    };
    for model in wanted {
        let path = store
            .ensure(model)
            .with_context(|| format!("fetching the weights of {}", model.info().name))?;
        println!("{:<14} {}", model.info().name, path.display());
    }
    Ok(())
}

/// Runs `dreamfarm layers MODEL`: each layer with its channel count, the
/// range a `NAME:WEIGHT:FIRST-LAST` pick can take.
pub fn layers(args: LayersArgs) -> anyhow::Result<()> {
    let layers: Vec<(String, u32)> = match args.model.parse::<ModelSpec>()? {
        ModelSpec::Builtin(m) => {
            let info = m.info();
            println!(
                "# {} (default: {})",
                info.name,
                info.default_layers.join(" + ")
            );
            info.layers
                .iter()
                .map(|l| l.to_string())
                .zip(info.channels.iter().copied())
                .collect()
        }
        ModelSpec::TorchScript(path) => torchscript_layers(&path)?,
    };
    let width = layers.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, channels) in layers {
        println!("{name:<width$} {channels:>5} channels");
    }
    Ok(())
}

#[cfg(feature = "embedded-worker")]
fn torchscript_layers(path: &std::path::Path) -> anyhow::Result<Vec<(String, u32)>> {
    let model = dreamfarm_worker::models::Model::load_torchscript(path, tch::Device::Cpu)?;
    Ok(model
        .layers()
        .iter()
        .cloned()
        .zip(model.channels().iter().copied())
        .collect())
}

#[cfg(not(feature = "embedded-worker"))]
fn torchscript_layers(path: &std::path::Path) -> anyhow::Result<Vec<(String, u32)>> {
    anyhow::bail!(
        "listing the layers of {} needs libtorch: use a dreamfarm build with the embedded-worker feature",
        path.display()
    )
}
