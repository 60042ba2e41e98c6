//! The train stage: a variant of the demo network, trained by `python/train_variants.py`
//! on a synthetic training set, written into the cache as `model.pt` (TorchScript, as
//! `nd-extract` reads it) with its training log.
//!
//! The paper's comparisons need several training seeds of each variant; the repository
//! commits one (`models/variants`), and a pipeline asks for the others by recipe and seed
//! (`train = { recipe = "bn", seed = 2 }`). The key holds the recipe's name and settings,
//! the seed, the epochs, the thread count (float sums may follow it), the torch version and
//! the training scripts' bytes, and the training set's artifact key: the same request is
//! trained once per cache, and a changed script or torch trains again.
//!
//! With `snapshots`, the artifact also holds the network before training and after each
//! epoch (`snapshots/epoch-<k>.pt`; the last epoch's is `model.pt`), for the paper's
//! comparison over training iterations: [`snapshot`] finds one.
//!
//! The scripts are compiled into the stage (the key's digests are of what runs), written
//! beside the pending artifact for the run, and run by the Python of the project's
//! virtualenv (see [`python`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

pub const STAGE: &str = "train";
pub const SCHEMA: u32 = 1;
/// The trained network in the artifact.
pub const MODEL_FILE: &str = "model.pt";
/// The recipe, the command, and the losses and validation scores per epoch.
pub const LOG_FILE: &str = "training.json";
/// The folder of the snapshots in the artifact (with [`Config::snapshots`]).
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// The threads the committed variants were trained with.
pub const DEFAULT_THREADS: usize = 2;

/// The training scripts, as compiled in: the entry point first.
const SCRIPTS: [(&str, &str); 4] = [
    (
        "train_variants.py",
        include_str!("../../../python/train_variants.py"),
    ),
    (
        "train_demo.py",
        include_str!("../../../python/train_demo.py"),
    ),
    ("fieldmap.py", include_str!("../../../python/fieldmap.py")),
    (
        "export_torchvision.py",
        include_str!("../../../python/export_torchvision.py"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Python(String),
    #[error(
        "training `{recipe}` (seed {seed}) failed ({status}); its output is above, and nothing was written to the cache"
    )]
    Training {
        recipe: String,
        seed: u64,
        status: std::process::ExitStatus,
    },
    #[error(transparent)]
    Store(#[from] nd_store::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// A recipe of `python/train_variants.py` (`--names` lists them).
    pub recipe: String,
    pub seed: u64,
    /// Epochs (default: the script's).
    pub epochs: Option<u32>,
    /// Torch's threads; in the key, since float sums may follow them.
    pub threads: usize,
    /// The Python to run (default: [`python`]'s choice).
    pub python: Option<PathBuf>,
    /// Also keep the network before training and after each epoch (in the key: another
    /// artifact, whose `model.pt` has the same bytes).
    pub snapshots: bool,
}

impl Config {
    pub fn new(recipe: impl Into<String>, seed: u64) -> Config {
        Config {
            recipe: recipe.into(),
            seed,
            epochs: None,
            threads: DEFAULT_THREADS,
            python: None,
            snapshots: false,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.recipe.is_empty() {
            return Err(Error::Config("recipe: no recipe given".into()));
        }
        if self.epochs == Some(0) {
            return Err(Error::Config("epochs must be at least 1".into()));
        }
        if self.threads == 0 {
            return Err(Error::Config(
                "threads must be at least 1 (it is in the key: give it)".into(),
            ));
        }
        Ok(())
    }
}

/// The Python that trains: `NETDISSECT_PYTHON` when set, else the `.venv/bin/python`
/// nearest above this program (the project's virtualenv, with the torch the stages link).
pub fn python() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("NETDISSECT_PYTHON") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        what: "cannot find this program's path",
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    exe.ancestors()
        .map(|dir| dir.join(".venv/bin/python"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Python(format!(
                "no Python to train with: none at .venv/bin/python above {} (scripts/setup \
                 makes it); set NETDISSECT_PYTHON to a Python with torch 2.13.0",
                exe.display()
            ))
        })
}

/// Writes the compiled-in scripts into `dir`; returns the entry point.
fn write_scripts(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        what: "cannot create",
        path: dir.to_owned(),
        source,
    })?;
    for (name, text) in SCRIPTS {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| Error::Io {
            what: "cannot write",
            path,
            source,
        })?;
    }
    Ok(dir.join(SCRIPTS[0].0))
}

/// The recipes and the default training the scripts define, and the torch version of the
/// Python that runs them (`train_variants.py --list`).
pub fn recipes(python: &Path) -> Result<Value> {
    // Per call: threads of one process may ask at once.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("nd-train-list-{}-{call}", std::process::id()));
    let script = write_scripts(&dir)?;
    let output = Command::new(python).arg(&script).arg("--list").output();
    let _ = std::fs::remove_dir_all(&dir);
    let output = output.map_err(|e| {
        Error::Python(format!(
            "cannot run {} ({e}); set NETDISSECT_PYTHON to a Python with torch 2.13.0",
            python.display()
        ))
    })?;
    if !output.status.success() {
        return Err(Error::Python(format!(
            "{} {} --list failed ({}): {}",
            python.display(),
            SCRIPTS[0].0,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| Error::Python(format!("train_variants.py --list printed no JSON: {e}")))
}

/// The store spec of a training: checks the recipe against the scripts' list.
pub fn spec(data: &nd_store::Artifact, config: &Config) -> Result<nd_store::Spec> {
    config.validate()?;
    data.expect_stage("synth")?;
    let python = match &config.python {
        Some(p) => p.clone(),
        None => python()?,
    };
    let list = recipes(&python)?;
    let Some(recipe) = list["recipes"].get(&config.recipe) else {
        let names: Vec<&str> = list["recipes"]
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        return Err(Error::Config(format!(
            "recipe `{}` is not one of python/train_variants.py's: {}",
            config.recipe,
            names.join(", ")
        )));
    };
    let epochs = match config.epochs {
        Some(e) => json!(e),
        None => list["training"]["epochs"].clone(),
    };
    let params = json!({
        "recipe": config.recipe,
        // The settings, so that a recipe changed under its name is another artifact (the
        // script's digest says so too; this says how).
        "settings": recipe,
        "training": list["training"],
        "seed": config.seed,
        "epochs": epochs,
        "threads": config.threads,
        "torch": list["torch"],
        "snapshots": config.snapshots,
    });
    let mut spec = nd_store::Spec::new(STAGE, SCHEMA, params).input("data", data.key());
    for (name, text) in SCRIPTS {
        spec = spec.digest(name, blake3::hash(text.as_bytes()).to_hex().to_string());
    }
    Ok(spec)
}

/// Trains through the store: the cached network when the cache holds this training.
pub fn run(
    store: &nd_store::Store,
    data: &nd_store::Artifact,
    config: &Config,
) -> Result<nd_store::Outcome> {
    let spec = spec(data, config)?;
    if let Some(artifact) = store.get(&spec)? {
        return Ok(nd_store::Outcome {
            artifact,
            computed: false,
        });
    }
    let python = match &config.python {
        Some(p) => p.clone(),
        None => python()?,
    };
    let pending = store.begin(&spec)?;
    let scripts = pending.dir().with_extension("scripts");
    let script = write_scripts(&scripts)?;
    let epochs = spec.params["epochs"].to_string();
    let mut command = Command::new(&python);
    command.arg(&script);
    if config.snapshots {
        command
            .arg("--snapshots")
            .arg(pending.dir().join(SNAPSHOTS_DIR));
    }
    let status = command
        .args(["--recipe", &config.recipe])
        .args(["--seed", &config.seed.to_string()])
        .arg("--data")
        .arg(data.dir.join("dataset"))
        .arg("--out")
        .arg(pending.dir().join(MODEL_FILE))
        .arg("--log")
        .arg(pending.dir().join(LOG_FILE))
        .args(["--epochs", &epochs])
        .args(["--threads", &config.threads.to_string()])
        .stdout(std::process::Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(&scripts);
    let status =
        status.map_err(|e| Error::Python(format!("cannot run {} ({e})", python.display())))?;
    if !status.success() {
        return Err(Error::Training {
            recipe: config.recipe.clone(),
            seed: config.seed,
            status,
        });
    }
    let log: Value = std::fs::read(pending.dir().join(LOG_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    // Epoch → file, the last epoch's being the model itself.
    let snapshots = log["snapshots"].as_object().map(|taken| {
        let mut files: serde_json::Map<String, Value> = taken
            .iter()
            .map(|(epoch, name)| {
                let name = name.as_str().unwrap_or_default();
                (epoch.clone(), json!(format!("{SNAPSHOTS_DIR}/{name}")))
            })
            .collect();
        files.insert(spec.params["epochs"].to_string(), json!(MODEL_FILE));
        files
    });
    let outputs = json!({
        "model": MODEL_FILE,
        "snapshots": snapshots,
        "log": LOG_FILE,
        "layers": log["layers"],
        "parameters": log["parameters"],
        "val": log["history"].as_array().and_then(|h| h.last()).map(|e| e["val"].clone()),
    });
    let artifact = pending.commit(nd_store::versions(), outputs)?;
    Ok(nd_store::Outcome {
        artifact,
        computed: true,
    })
}

/// The network of a training artifact after `epoch` epochs (0: as initialised); the last
/// epoch's is the model. Other epochs need a training with [`Config::snapshots`].
pub fn snapshot(artifact: &nd_store::Artifact, epoch: u32) -> Result<PathBuf> {
    artifact.expect_stage(STAGE)?;
    let outputs = &artifact.manifest.outputs;
    let epochs = artifact.manifest.params["epochs"].as_u64().unwrap_or(0);
    if u64::from(epoch) == epochs {
        return Ok(artifact.dir.join(MODEL_FILE));
    }
    if u64::from(epoch) > epochs {
        return Err(Error::Config(format!(
            "epoch {epoch}: the training has {epochs} epochs (0 is the initialisation)"
        )));
    }
    match outputs["snapshots"][epoch.to_string()].as_str() {
        Some(file) => Ok(artifact.dir.join(file)),
        None => Err(Error::Config(format!(
            "epoch {epoch}: the training {} kept no snapshots (train it with snapshots)",
            artifact.key().short()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configs_are_named() {
        let mut c = Config::new("bn", 1);
        assert!(c.validate().is_ok());
        c.epochs = Some(0);
        assert!(c.validate().unwrap_err().to_string().contains("epochs"));
        let mut c = Config::new("", 1);
        assert!(c.validate().unwrap_err().to_string().contains("recipe"));
        c = Config::new("bn", 1);
        c.threads = 0;
        assert!(c.validate().unwrap_err().to_string().contains("threads"));
    }

    #[test]
    fn the_scripts_are_compiled_in_with_their_entry_point_first() {
        let dir = tempfile::tempdir().unwrap();
        let entry = write_scripts(dir.path()).unwrap();
        assert!(entry.ends_with("train_variants.py"));
        for (name, text) in SCRIPTS {
            assert_eq!(
                std::fs::read_to_string(dir.path().join(name)).unwrap(),
                text
            );
        }
    }
}
