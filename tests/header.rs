//! The committed C header must be exactly what cbindgen generates from the sources, and the
//! shared library must export only the C API.

use std::path::Path;
use std::process::Command;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/include/whatsapp_connector.h");
const GENERATED: &str = concat!(env!("OUT_DIR"), "/whatsapp_connector.h");

#[test]
fn committed_header_is_fresh() {
    let generated = std::fs::read_to_string(GENERATED).expect("build.rs generated the header");
    if std::env::var_os("WA_UPDATE_HEADER").is_some() {
        std::fs::write(COMMITTED, &generated).expect("include/ is writable");
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "include/whatsapp_connector.h is stale: regenerate it with `WA_UPDATE_HEADER=1 cargo test --test header` and commit it"
    );
}

#[test]
fn header_documents_the_contract() {
    // The generated one: the freshness test ties it to the committed one.
    let header = std::fs::read_to_string(GENERATED).expect("header generated");
    for section in ["OWNERSHIP", "THREADS", "CALLBACKS", "SHUTDOWN ORDER"] {
        assert!(header.contains(section), "preamble lacks {section}");
    }
    for item in [
        "WHATSAPP_ERR_OK = 0",
        "WHATSAPP_ERR_MISSING_TOKEN = 1",
        "WHATSAPP_ERR_MISSING_VERSION = 2",
        "WHATSAPP_ERR_NOT_FOUND = 3",
        "WHATSAPP_ERR_BAD_REQUEST = 4",
        "WHATSAPP_ERR_AUTHENTICATION_FAILED = 5",
        "WHATSAPP_ERR_OTHER_HTTP = 6",
        "WHATSAPP_ERR_CLOSING = 7",
        "wa_result wa_client_send_message(",
    ] {
        assert!(header.contains(item), "header lacks {item}");
    }
    // Nothing but the C API's own names: no Rust constants or helper types leak in.
    for line in header.lines() {
        if let Some(name) = line.strip_prefix("#define ") {
            assert!(
                name.starts_with("WHATSAPP_CONNECTOR_H"),
                "unexpected macro: {line}"
            );
        }
        if let Some(rest) = line.strip_prefix("typedef struct ") {
            assert!(
                rest.starts_with("wa_") || rest.starts_with('{'),
                "unexpected type: {line}"
            );
        }
    }
}

/// The cdylib sits next to the test binaries' parent directory (target/<profile>/).
fn shared_library() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    profile_dir.join("libwhatsapp_connector.so")
}

#[test]
fn shared_library_exports_only_the_c_api_and_has_a_soname() {
    let lib = shared_library();
    assert!(
        lib.exists(),
        "{} missing: build it first with cargo build --lib (scripts/test.sh does)",
        lib.display()
    );
    let nm = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output();
    let Ok(nm) = nm else {
        panic!("nm (binutils) is needed for this test");
    };
    let symbols = String::from_utf8_lossy(&nm.stdout);
    let exported: Vec<&str> = symbols
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let kind = parts.nth(1)?;
            let name = parts.next()?;
            matches!(kind, "T" | "D" | "B" | "R" | "W" | "V" | "i").then_some(name)
        })
        .collect();
    assert!(exported.contains(&"wa_client_send_message"), "{exported:?}");
    let foreign: Vec<_> = exported.iter().filter(|s| !s.starts_with("wa_")).collect();
    assert!(foreign.is_empty(), "symbols outside wa_*: {foreign:?}");

    let readelf = Command::new("readelf")
        .arg("-d")
        .arg(&lib)
        .output()
        .expect("readelf");
    let dynamic = String::from_utf8_lossy(&readelf.stdout);
    assert!(
        dynamic.contains("Library soname: [libwhatsapp_connector.so]"),
        "no SONAME:\n{dynamic}"
    );
}
