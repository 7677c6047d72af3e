//! The standard proxy variables: honoured for Graph on the network (a host's egress proxy),
//! never for a Graph on a loopback address (the emulator). Its own test binary, one test: the
//! variables are process-wide.

mod common;

use std::time::Duration;

use common::*;
use whatsapp_connector::ffi::options::*;
use whatsapp_connector::ffi::result::whatsapp_error_t::*;
use whatsapp_connector::ffi::wa_result;

#[test]
fn proxy_variables_apply_to_graph_on_the_network_and_never_to_loopback() {
    // A "proxy" that records what reaches it and answers 200 "ok" (not Graph's JSON).
    let proxy = Receiver::start(200);
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "all_proxy",
    ] {
        std::env::set_var(name, &proxy.url);
    }
    for name in ["NO_PROXY", "no_proxy"] {
        std::env::remove_var(name);
    }

    // Graph on loopback (the emulator): reached directly, the send goes through.
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    assert_eq!(host.text("direct", "16505551234", 1), wa_result::WA_OK);
    let results = host.wait_results(1, Duration::from_secs(10));
    assert_eq!(results[0].error, WHATSAPP_ERR_OK, "{results:?}");
    assert_eq!(emu.sends().len(), 1);
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());

    // Graph on the network: the request goes to the proxy, in absolute form.
    let opts = Opts::for_emulator(&emu);
    assert_eq!(
        wa_options_set_graph_base_url(opts.0, cstr("http://graph.example.test").as_ptr()),
        wa_result::WA_OK
    );
    assert_eq!(
        wa_options_set_retry(opts.0, 1, 5_000, 20, 200),
        wa_result::WA_OK
    );
    let remote = Host::new(&opts);
    remote.set_token(TOKEN);
    assert_eq!(remote.text("via proxy", "16505551234", 2), wa_result::WA_OK);
    let results = remote.wait_results(1, Duration::from_secs(10));
    // The stand-in proxy's "ok" is no Graph answer: not a success.
    assert_ne!(results[0].error, WHATSAPP_ERR_OK, "{results:?}");
    let seen = proxy.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        seen[0].target,
        format!("http://graph.example.test/v26.0/{PHONE_ID}/messages")
    );
    assert_eq!(emu.sends().len(), 1, "the emulator saw nothing more");
}
