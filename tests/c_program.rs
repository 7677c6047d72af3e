//! The C example compiled as a real C program (warnings as errors) against the shared library
//! and run against the emulator, also under valgrind: no memory errors, no leaks.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{profile_dir, Emulator};

fn build_demo(compiler: &str, extra: &[&str], name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    build(compiler, extra, &manifest.join("examples/c/demo.c"), name)
}

fn build(compiler: &str, extra: &[&str], source: &Path, name: &str) -> PathBuf {
    common::build_native(compiler, extra, source, name)
}

fn run(program: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = Command::new(program[0])
        .args(&program[1..])
        .output()
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn c_demo_sends_and_shuts_down_cleanly() {
    let emu = Emulator::start();
    let demo = build_demo("cc", &["-std=c11", "-pedantic"], "c-demo");
    let (ok, text) = run(&[demo.as_os_str(), emu.url.as_ref()]);
    assert!(ok, "{text}");
    assert!(text.contains("PASS: 4 results"), "{text}");
    let sends = emu.sends();
    let types: Vec<_> = sends
        .iter()
        .map(|s| s["body"]["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(sends.len(), 4, "{types:?}");
    for t in ["text", "location", "image", "reaction"] {
        assert!(types.iter().any(|x| x == t), "{t} missing in {types:?}");
    }
    // The reaction refers to the wamid Graph gave the text.
    let text_wamid = sends.iter().find(|s| s["body"]["type"] == "text").unwrap()["wamid"].clone();
    let reaction = sends
        .iter()
        .find(|s| s["body"]["type"] == "reaction")
        .unwrap();
    assert_eq!(reaction["body"]["reaction"]["message_id"], text_wamid);
}

#[test]
fn header_compiles_and_links_as_cpp() {
    let source = profile_dir().join("header_as_cpp.cpp");
    std::fs::write(
        &source,
        "#include \"whatsapp_connector.h\"\n\
         #include <cstring>\n\
         int main() {\n\
           whatsapp_error_t e = WHATSAPP_ERR_CLOSING;\n\
           wa_result r = wa_client_close(nullptr);\n\
           return (e == 7 && r == WA_ERR_NULL_ARGUMENT &&\n\
                   std::strcmp(wa_whatsapp_error_name(e), \"WHATSAPP_ERR_CLOSING\") == 0) ? 0 : 1;\n\
         }\n",
    )
    .expect("write source");
    let program = build(
        "c++",
        &["-std=c++17", "-pedantic"],
        &source,
        "header-as-cpp",
    );
    let (ok, text) = run(&[program.as_os_str()]);
    assert!(ok, "{text}");
}

#[test]
fn c_demo_is_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("SKIPPED: valgrind is not installed");
        return;
    }
    let emu = Emulator::start();
    let demo = build_demo("cc", &["-std=c11", "-g"], "c-demo-valgrind");
    let (ok, text) = run(&[
        "valgrind".as_ref(),
        "--error-exitcode=99".as_ref(),
        "--leak-check=full".as_ref(),
        "--errors-for-leak-kinds=definite,indirect".as_ref(),
        "--show-leak-kinds=definite,indirect".as_ref(),
        demo.as_os_str(),
        emu.url.as_ref(),
    ]);
    assert!(ok, "valgrind reported errors or leaks:\n{text}");
    assert!(text.contains("PASS: 4 results"), "{text}");
}

/// Thread mode: freeing the client while its close_complete callback still runs (and calls
/// the API) is safe: free waits for the dispatch thread, and the handle lives until then.
/// Under valgrind when it is installed (an early free is an invalid read), natively otherwise.
#[test]
fn free_waits_for_a_callback_still_running_in_thread_mode() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let program = build(
        "cc",
        &["-std=c11", "-g", "-pthread"],
        &manifest.join("tests/c/free_while_callback_runs.c"),
        "free-while-callback-runs",
    );
    let under_valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    let (ok, text) = if under_valgrind {
        run(&[
            "valgrind".as_ref(),
            "--error-exitcode=99".as_ref(),
            program.as_os_str(),
        ])
    } else {
        println!("valgrind is not installed: run natively");
        run(&[program.as_os_str()])
    };
    assert!(ok, "{text}");
    assert!(text.contains("PASS"), "{text}");
}
