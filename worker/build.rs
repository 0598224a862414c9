//! Embeds libtorch's directory as an rpath, so that binaries and tests built from this crate
//! find libtorch at run time without LD_LIBRARY_PATH, and tells the crate that directory
//! (`LAMINA_LIBTORCH_LIB`): libtorch's CUDA library is not linked (nothing references its
//! symbols, and loading it costs every process 0.4 s), `runtime::load_cuda` loads it when a
//! CUDA device is named, from there when the rpath and LD_LIBRARY_PATH do not find it.
fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-env=LAMINA_LIBTORCH_LIB={dir}");
    }
}
