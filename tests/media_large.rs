//! A large media forward (≥ 50 MB) passes through with bounded memory. In its own test binary
//! so that no other test's allocations blur the RSS measurement.

mod common;

use common::*;
use whatsapp_connector::ffi::media::wa_client_request_media;
use whatsapp_connector::ffi::result::whatsapp_error_t::*;
use whatsapp_connector::ffi::wa_result;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_60_mb_document_streams_through_with_bounded_memory() {
    const SIZE: u64 = 60 * 1024 * 1024;
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    let receiver = Receiver::start(200);
    let (id, sha) = emu.create_media("application/pdf", SIZE);
    let before = rss_kib();
    let r = wa_client_request_media(
        host.client,
        cstr(&receiver.url).as_ptr(),
        cstr(&id).as_ptr(),
        std::ptr::null(),
        ctx(1),
    );
    assert_eq!(r, wa_result::WA_OK);
    let result = host.wait_results(1, 120 * SECS).remove(0);
    let after = rss_kib();
    assert_eq!(
        (result.error, result.content.as_str()),
        (WHATSAPP_ERR_OK, "200"),
        "{result:?}"
    );
    let post = &receiver.requests()[0];
    assert_eq!(
        (post.body_len, post.body_sha256.as_str()),
        (SIZE, sha.as_str())
    );
    let growth_mib = after.saturating_sub(before) / 1024;
    println!("RSS growth while forwarding 60 MiB: {growth_mib} MiB");
    assert!(
        growth_mib < 24,
        "forwarding buffered the file: RSS grew by {growth_mib} MiB"
    );
}
