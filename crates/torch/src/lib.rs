//! Loading TorchScript models and running them: the ground that every stage which runs a
//! network stands on (extract, explain, and the generator stages to come).
//!
//! Main types: [`Model`] (a loaded TorchScript file: [`Model::forward`] names what it
//! returns, [`Model::forward_from`] runs it on from a layer's activations, the
//! intervention interface), [`Preprocess`] (how images become its input) and
//! [`input::decode_batch`] (a dataset's rows as one normalised batch).
//!
//! The model contract, as `python/export_torchvision.py` and `python/train_demo.py` write it:
//! - `forward(images)` returns a dict from layer name to activations `(N, C, h, w)`, and
//!   may return the class scores `(N, classes)` under a name of its own (`logits`);
//! - the archive's extra file `netdissect-fields.json` gives the layers' receptive fields
//!   ([`model_fields`]);
//! - the method `forward_from(layer: str, activations: Tensor) -> Tensor` continues the
//!   forward pass from a layer's (possibly modified) activations to the output that the
//!   extra file `netdissect-intervention.json` names ([`Intervention`]): the class scores of
//!   a classifier, the image of a generator.
//!
//! A generator's `forward(z)` takes latent vectors instead of images and returns its image
//! beside the layers; the extra file `netdissect-generator.json` says so
//! ([`GeneratorRecord`]). [`Generator`] draws its samples as 8-bit images from the latent
//! vectors of [`latent`] and renders them again from modified activations; [`Segmenter`]
//! labels images with a semantic segmenter's label maps (GAN dissection's ruler).

/// The libtorch this build links (tch 0.26 accepts exactly this version).
pub const LIBTORCH_VERSION: &str = "2.13.0";

mod error;
mod generator;
pub mod input;
pub mod latent;
mod model;
mod preprocess;
pub mod segmenter;

pub use error::{Error, Result, shape};
pub use generator::Generator;
pub use model::{
    DeviceChoice, GENERATOR_EXTRA_FILE, GeneratorRecord, INTERVENTION_EXTRA_FILE, Intervention,
    Model, extra_file, model_fields, model_generator, model_intervention, resolve_device,
};
pub use preprocess::{ChannelOrder, Preprocess, PreprocessArgs, size_pair};
pub use segmenter::{Labels, Segmenter};

/// Lets glibc's allocator keep large freed blocks instead of returning them to the kernel.
///
/// A forward pass allocates tensors of tens to hundreds of megabytes (ResNet-18's first
/// feature maps are 100 MiB a batch of 32) and frees them before the next batch. Above its
/// mmap threshold (at most 32 MiB by default) glibc maps each one afresh and unmaps it on
/// free, so every batch faulted in and zeroed every page again: a fifth of ResNet-18's
/// forward time went to the kernel (perf; floor 47.0 -> 31.7 s, extract 48.4 -> 37.0 s on
/// 2,000 images). Blocks up to 1 GiB now come from the heap and are reused; the peak
/// memory is the same, it is only not handed back between batches.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before the model runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Sets torch's and rayon's worker counts (0 means one per core) and keeps freed memory in
/// the process for the next batch ([`retain_freed_memory`]). Call once, early.
pub fn set_threads(threads: usize) -> Result<()> {
    retain_freed_memory();
    let n = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    tch::set_num_threads(n as i32);
    // The global pool may already exist (a library user built it); that is fine.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    Ok(())
}
