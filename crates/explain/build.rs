//! Makes the binaries and tests of this package find libtorch on their own.
//!
//! torch-sys (`links = "tch"`) publishes the directory it linked libtorch from; we bake it
//! into the executables as their run path, so nobody needs `LD_LIBRARY_PATH`, and pass it
//! to the code so that the CUDA half of libtorch can be loaded on demand.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-env=ND_LIBTORCH_LIB={dir}");
    }
}
