//! Embeds libtorch's directory as an rpath, so that binaries and tests built from this crate
//! find libtorch at run time without LD_LIBRARY_PATH. libtorch's CUDA library is loaded when
//! a CUDA device is named (`lamina_worker::runtime::load_cuda`), not linked.
fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
