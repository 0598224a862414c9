//! Embeds libtorch's directory as an rpath, so that binaries and tests built from this crate
//! find libtorch at run time without LD_LIBRARY_PATH, and links libtorch's CUDA library
//! whenever the libtorch built against has one: nothing references its symbols (it registers
//! the CUDA backend when loaded), so a linker that drops unreferenced libraries (Debian's
//! and Ubuntu's default, `--as-needed`) would leave a binary that never sees a GPU.
fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        if std::path::Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
