//! Sets the shared library's SONAME and generates the C header into OUT_DIR.
//!
//! The committed `include/whatsapp_connector.h` is compared with the generated one by
//! `tests/header.rs` (regenerate with `WA_UPDATE_HEADER=1 cargo test --test header`); the build
//! itself never writes into the source tree.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");

    // A SONAME lets programs linked against the library run from any directory (with the
    // library on the loader path) instead of recording the build path.
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libwhatsapp_connector.so");
    }

    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(out_dir.join("whatsapp_connector.h"));
        }
        // A syntax error in src/ is reported by rustc with better messages; do not fail here.
        Err(e) => println!("cargo:warning=cbindgen could not generate the header: {e}"),
    }
}
