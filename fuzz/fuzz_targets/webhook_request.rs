//! Any request through the host-fed C entry `wa_client_webhook_request` of a real client, its
//! POST bodies signed with the client's app secret so that they reach the parser: never a
//! crash, only the documented statuses, and every callback string NUL-terminated UTF-8.
#![no_main]

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::OnceLock;

use hmac::{Mac, SimpleHmac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use whatsapp_connector::ffi::client::*;
use whatsapp_connector::ffi::options::*;
use whatsapp_connector::ffi::wa_result;

const APP_SECRET: &str = "fuzz-app-secret";
const VERIFY_TOKEN: &str = "fuzz-verify";

struct Client(*mut wa_client);
// SAFETY: the client handle may be used from any thread (header contract); libFuzzer calls
// the target from one thread.
unsafe impl Send for Client {}
// SAFETY: as above.
unsafe impl Sync for Client {}

/// A callback string as the header promises it: NULL only where allowed, else UTF-8.
///
/// # Safety
/// `text` is NULL or a NUL-terminated string valid for the callback.
unsafe fn utf8(text: *const c_char, may_be_null: bool) {
    if text.is_null() {
        assert!(may_be_null, "a NULL string where the header promises one");
        return;
    }
    // SAFETY: per this function's contract.
    let bytes = unsafe { CStr::from_ptr(text) }.to_bytes();
    assert!(std::str::from_utf8(bytes).is_ok(), "not UTF-8: {bytes:?}");
}

unsafe extern "C" fn on_message(
    _: *mut c_void,
    msg: *const c_char,
    tel: *const c_char,
    channel: *const c_char,
    kind: *const c_char,
    id: *const c_char,
    refers_to: *const c_char,
) {
    // SAFETY: strings valid for the callback (header contract).
    unsafe {
        for text in [msg, tel, channel, kind, id] {
            utf8(text, false);
        }
        utf8(refers_to, true);
    }
}

unsafe extern "C" fn on_media(
    _: *mut c_void,
    sender: *const c_char,
    channel: *const c_char,
    wamid: *const c_char,
    media_id: *const c_char,
    mime_type: *const c_char,
) {
    // SAFETY: strings valid for the callback (header contract).
    unsafe {
        for text in [sender, channel, wamid, media_id, mime_type] {
            utf8(text, false);
        }
    }
}

unsafe extern "C" fn on_raw_change(_: *mut c_void, field: *const c_char, value: *const c_char) {
    // SAFETY: strings valid for the callback (header contract).
    unsafe {
        utf8(field, false);
        utf8(value, false);
    }
}

fn client() -> *mut wa_client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let mut options = std::ptr::null_mut();
            assert_eq!(wa_options_new(&mut options), wa_result::WA_OK);
            assert_eq!(
                wa_options_set_dedupe_capacity(options, 1000),
                wa_result::WA_OK
            );
            let callbacks = wa_client_callbacks {
                user_data: std::ptr::null_mut(),
                close_complete: None,
                send_result: None,
                recv_message: Some(on_message),
                recv_media: Some(on_media),
                raw_change: Some(on_raw_change),
                log: None,
                destroy: None,
            };
            let mut client = std::ptr::null_mut();
            assert_eq!(
                wa_client_new(options, &callbacks, &mut client),
                wa_result::WA_OK
            );
            wa_options_free(options);
            let secret = CString::new(APP_SECRET).unwrap();
            let token = CString::new("fuzz-token").unwrap();
            assert_eq!(
                wa_client_set_config(client, token.as_ptr(), secret.as_ptr()),
                wa_result::WA_OK
            );
            let verify = CString::new(VERIFY_TOKEN).unwrap();
            assert_eq!(
                wa_client_set_webhook_token(client, verify.as_ptr()),
                wa_result::WA_OK
            );
            Client(client)
        })
        .0
}

fn sign(body: &[u8]) -> String {
    let mut mac = SimpleHmac::<Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = |bytes: &[u8]| CString::new(bytes.iter().map(|&b| b.max(1)).collect::<Vec<_>>());
    let (method, target, signature, body, allowed): (&str, CString, Option<String>, &[u8], &[u16]) =
        match selector % 4 {
            0 => (
                "POST",
                text(b"/webhook").unwrap(),
                Some(sign(rest)),
                rest,
                &[200, 400],
            ),
            1 => {
                // Whatever the host got as a header: never a valid signature of this body.
                let split = rest.iter().position(|&b| b == b'\n').unwrap_or(0);
                let header = String::from_utf8_lossy(&rest[..split]).replace('\0', "");
                let signature = (selector & 4 != 0).then_some(header);
                (
                    "POST",
                    text(b"/webhook").unwrap(),
                    signature,
                    &rest[split..],
                    &[401, 403],
                )
            }
            2 => {
                let mut query = b"/webhook?".to_vec();
                query.extend_from_slice(rest);
                ("GET", text(&query).unwrap(), None, &[], &[200, 403])
            }
            _ => ("PUT", text(b"/webhook").unwrap(), None, rest, &[405]),
        };
    let method = CString::new(method).unwrap();
    let signature = signature.map(|s| CString::new(s).unwrap());
    let mut status = 0u16;
    let mut content_type: *const c_char = std::ptr::null();
    let mut out = vec![0 as c_char; 256];
    let mut out_len = 0usize;
    let r = wa_client_webhook_request(
        client(),
        method.as_ptr(),
        target.as_ptr(),
        signature.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        body.as_ptr(),
        body.len(),
        &mut status,
        &mut content_type,
        out.as_mut_ptr(),
        out.len(),
        &mut out_len,
    );
    match r {
        wa_result::WA_OK => {
            assert!(allowed.contains(&status), "{method:?}: status {status}");
            assert!(out_len < out.len());
        }
        // Only the echo of a verification challenge can outgrow 256 bytes.
        wa_result::WA_ERR_BUFFER_TOO_SMALL => assert!(selector % 4 == 2 && out_len >= 255),
        // Strings passed in are UTF-8 (header contract); the request target is checked.
        wa_result::WA_ERR_INVALID_UTF8 => assert!(target.to_str().is_err()),
        other => panic!("{other:?}"),
    }
    let mut ran = 0;
    assert_eq!(wa_client_dispatch(client(), &mut ran), wa_result::WA_OK);
});
