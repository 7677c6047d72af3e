//! Media through the C API against the emulator: RequestMedia forwarding (small files, SHA-256
//! mismatch, foreign media host, expired URL, failing destination), download to a file, the
//! listener's getMedia endpoint, and uploads (then sent), with local validation.

mod common;

use std::ffi::c_void;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;
use whatsapp_connector::ffi::media::*;
use whatsapp_connector::ffi::options::*;
use whatsapp_connector::ffi::result::whatsapp_error_t::*;
use whatsapp_connector::ffi::wa_result;

const MEDIA_TOKEN: &str = "media-access-token";

fn media_host(emu: &Emulator, configure: impl FnOnce(&Opts)) -> Host {
    let opts = Opts::for_emulator(emu);
    configure(&opts);
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    host
}

fn request_media(
    host: &Host,
    destination: &str,
    media_id: &str,
    mime: Option<&str>,
    ctx: usize,
) -> wa_result {
    let mime = mime.map(cstr);
    wa_client_request_media(
        host.client,
        cstr(destination).as_ptr(),
        cstr(media_id).as_ptr(),
        mime.as_ref().map_or(std::ptr::null(), |m| m.as_ptr()),
        ctx as *mut c_void,
    )
}

#[test]
fn request_media_forwards_the_bytes_to_the_destination() {
    let emu = Emulator::start();
    let host = media_host(&emu, |_| {});
    let receiver = Receiver::start(200);
    let (id, sha) = emu.create_media("image/png", 300_000);
    assert_eq!(
        request_media(
            &host,
            &format!("{}/upload/here?x=1", receiver.url),
            &id,
            None,
            1
        ),
        wa_result::WA_OK
    );
    let r = host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(
        (r.error, r.content.as_str()),
        (WHATSAPP_ERR_OK, "200"),
        "{r:?}"
    );
    assert_eq!(r.callback_info.as_deref(), Some(id.as_str()));
    assert_eq!(r.ctx, 1);
    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    let post = &got[0];
    assert_eq!(
        (post.method.as_str(), post.target.as_str()),
        ("POST", "/upload/here?x=1")
    );
    assert_eq!(post.header("content-type"), Some("image/png"));
    assert_eq!(post.header("content-length"), Some("300000"));
    assert!(
        post.header("authorization").is_none(),
        "the token never goes to the destination"
    );
    assert_eq!(
        (post.body_len, post.body_sha256.as_str()),
        (300_000, sha.as_str())
    );
    // The download carried the token and a User-Agent.
    let download = emu
        .requests()
        .into_iter()
        .find(|r| r["path"].as_str().unwrap().starts_with("/media/download/"))
        .unwrap();
    assert_eq!(
        download["headers"]["authorization"],
        format!("Bearer {TOKEN}")
    );
    assert!(download["headers"]["user-agent"]
        .as_str()
        .unwrap()
        .starts_with("whatsapp-connector/"));

    // The caller's MIME type wins over Graph's.
    assert_eq!(
        request_media(&host, &receiver.url, &id, Some("application/x-custom"), 2),
        wa_result::WA_OK
    );
    host.wait_results(2, 10 * SECS);
    assert_eq!(
        receiver.requests()[1].header("content-type"),
        Some("application/x-custom")
    );
}

/// A destination that holds every POST for a while once its body arrived, and counts the most
/// requests in progress at once (from the request line to the answer).
struct SlowDestination {
    url: String,
    in_progress: Arc<Mutex<(usize, usize)>>,
}

impl SlowDestination {
    fn start(hold: Duration) -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/in", listener.local_addr().unwrap());
        let in_progress = Arc::new(Mutex::new((0, 0)));
        let counts = in_progress.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let counts = counts.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    {
                        let mut c = counts.lock().unwrap();
                        c.0 += 1;
                        c.1 = c.1.max(c.0);
                    }
                    let mut length = 0usize;
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = header.trim_end().split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0u8; length];
                    let _ = reader.read_exact(&mut body);
                    std::thread::sleep(hold);
                    counts.lock().unwrap().0 -= 1;
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                });
            }
        });
        SlowDestination { url, in_progress }
    }

    /// The most requests that were in progress at once.
    fn peak(&self) -> usize {
        self.in_progress.lock().unwrap().1
    }
}

#[test]
fn media_jobs_run_at_most_max_media_in_flight_at_once() {
    const JOBS: usize = 6;
    let emu = Emulator::start();
    let host = media_host(&emu, |o| {
        assert_eq!(wa_options_set_max_media_in_flight(o.0, 2), wa_result::WA_OK);
    });
    let destination = SlowDestination::start(Duration::from_millis(300));
    let (id, _) = emu.create_media("image/png", 10_000);
    for ctx in 0..JOBS {
        assert_eq!(
            request_media(&host, &destination.url, &id, None, ctx),
            wa_result::WA_OK
        );
    }
    // The others waited their turn, in acceptance order, and all completed.
    let results = host.wait_results(JOBS, 20 * SECS);
    for r in &results {
        assert_eq!(
            (r.error, r.content.as_str()),
            (WHATSAPP_ERR_OK, "200"),
            "{r:?}"
        );
    }
    // Two at a time, each held 300 ms: the results come in pairs of accepted order (0 and 1,
    // then 2 and 3, ...), either way round within a pair.
    let answered: Vec<usize> = results.iter().map(|r| r.ctx).collect();
    for (pair, ctxs) in answered.chunks(2).enumerate() {
        let mut ctxs = ctxs.to_vec();
        ctxs.sort_unstable();
        assert_eq!(ctxs, vec![2 * pair, 2 * pair + 1], "{answered:?}");
    }
    // Unbounded, all six were held by the destination at once.
    assert!(
        destination.peak() <= 2,
        "{} transfers in progress at once",
        destination.peak()
    );
}

#[test]
fn request_media_failures_map_to_the_failing_stage() {
    let emu = Emulator::start();
    let host = media_host(&emu, |_| {});
    let failing = Receiver::start(500);
    let (id, _) = emu.create_media("application/pdf", 1000);
    // The destination answers 500.
    assert_eq!(
        request_media(&host, &failing.url, &id, None, 1),
        wa_result::WA_OK
    );
    // Unknown media id.
    assert_eq!(
        request_media(&host, &failing.url, "999999999", None, 2),
        wa_result::WA_OK
    );
    let results = host.wait_results(2, 10 * SECS);
    let by = |ctx| results.iter().find(|r| r.ctx == ctx).unwrap();
    assert_eq!(by(1).error, WHATSAPP_ERR_OTHER_HTTP);
    assert!(by(1).content.contains("500"), "{}", by(1).content);
    assert_eq!(by(2).error, WHATSAPP_ERR_NOT_FOUND, "{:?}", by(2));
    // Bad arguments are refused at once.
    assert_eq!(
        request_media(&host, "ftp://x/y", &id, None, 3),
        wa_result::WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        request_media(&host, &failing.url, "../etc", None, 3),
        wa_result::WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        wa_client_request_media(
            host.client,
            std::ptr::null(),
            cstr(&id).as_ptr(),
            std::ptr::null(),
            std::ptr::null_mut()
        ),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
}

#[test]
fn a_sha256_mismatch_fails_the_forward() {
    let emu = Emulator::start();
    let host = media_host(&emu, |_| {});
    let receiver = Receiver::start(200);
    let (id, _) = emu.create_media("image/jpeg", 200_000);
    emu.post_json("/_emulator/media/config", json!({"corrupt_sha256": true}));
    assert_eq!(
        request_media(&host, &receiver.url, &id, None, 1),
        wa_result::WA_OK
    );
    let r = host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(r.error, WHATSAPP_ERR_OTHER_HTTP);
    assert!(r.content.contains("SHA-256"), "{}", r.content);
    // The last bytes are held back until verified: the destination never got a complete body.
    assert!(
        receiver.requests().iter().all(|p| !p.complete),
        "{:?}",
        receiver.requests()
    );
}

#[test]
fn the_token_is_not_sent_to_a_foreign_media_host() {
    let emu = Emulator::start();
    let host = media_host(&emu, |_| {});
    let port = emu.url.rsplit(':').next().unwrap().to_string();
    // A receiver posing as the foreign media host, on another loopback address.
    let foreign = Receiver::start_on(&format!("127.0.0.2:{port}"), 200);
    emu.post_json("/_emulator/media/config", json!({"url_host": "127.0.0.2"}));
    let destination = Receiver::start(200);
    let (id, _) = emu.create_media("image/png", 1000);
    assert_eq!(
        request_media(&host, &destination.url, &id, None, 1),
        wa_result::WA_OK
    );
    let r = host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(r.error, WHATSAPP_ERR_OTHER_HTTP);
    assert!(
        r.content.contains("not an allowed media host"),
        "{}",
        r.content
    );
    assert!(
        foreign
            .requests()
            .iter()
            .all(|q| q.header("authorization").is_none()),
        "token leaked"
    );
    assert!(foreign.requests().is_empty());
    assert!(destination.requests().is_empty());
}

#[test]
fn an_expired_url_is_resolved_again_once() {
    let emu = Emulator::start();
    let host = media_host(&emu, |_| {});
    let receiver = Receiver::start(200);
    let (id, sha) = emu.create_media("video/mp4", 50_000);
    emu.post_json("/_emulator/media/config", json!({"expire_next_urls": 1}));
    assert_eq!(
        request_media(&host, &receiver.url, &id, None, 1),
        wa_result::WA_OK
    );
    let r = host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(r.error, WHATSAPP_ERR_OK, "{r:?}");
    assert_eq!(receiver.requests()[0].body_sha256, sha);
    let lookups = emu
        .requests()
        .iter()
        .filter(|q| q["path"].as_str() == Some(&format!("/v26.0/{id}")))
        .count();
    assert_eq!(lookups, 2, "looked up again after the 404");
}

#[test]
fn download_media_writes_a_verified_file() {
    let emu = Emulator::start();
    let host = media_host(&emu, |_| {});
    let (id, sha) = emu.create_media("audio/ogg", 123_456);
    let dir = std::env::temp_dir().join(format!("wa-media-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("voice.ogg");
    assert_eq!(
        wa_client_download_media(
            host.client,
            cstr(&id).as_ptr(),
            cstr(path.to_str().unwrap()).as_ptr(),
            ctx(7)
        ),
        wa_result::WA_OK
    );
    let r = host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(
        (r.error, r.content.as_str()),
        (WHATSAPP_ERR_OK, "audio/ogg"),
        "{r:?}"
    );
    use sha2::Digest;
    let bytes = std::fs::read(&path).unwrap();
    let got: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!((bytes.len(), got), (123_456, sha));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn get_media_serves_only_with_the_access_token() {
    let emu = Emulator::start();
    let host = media_host(&emu, |o| {
        assert_eq!(
            wa_options_set_webhook_listen(o.0, cstr("127.0.0.1:0").as_ptr()),
            wa_result::WA_OK
        );
        assert_eq!(
            wa_options_set_media_access_token(o.0, cstr(MEDIA_TOKEN).as_ptr()),
            wa_result::WA_OK
        );
    });
    let (id, sha) = emu.create_media("image/png", 70_000);
    let base = format!("http://127.0.0.1:{}/client/getMedia", host.webhook_port());
    let http = direct_http();
    let ok = http
        .get(format!("{base}?id={id}"))
        .bearer_auth(MEDIA_TOKEN)
        .send()
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.headers()["content-type"], "image/png");
    assert_eq!(ok.headers()["content-length"], "70000");
    use sha2::Digest;
    let got: String = sha2::Sha256::digest(ok.bytes().unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(got, sha);
    let via_query = http
        .get(format!("{base}?id={id}&access_token={MEDIA_TOKEN}"))
        .send()
        .unwrap();
    assert_eq!(via_query.status().as_u16(), 200);
    assert_eq!(
        http.get(format!("{base}?id={id}"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        http.get(format!("{base}?id={id}"))
            .bearer_auth("wrong-token!")
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        http.get(format!("{base}?id=424242"))
            .bearer_auth(MEDIA_TOKEN)
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        http.get(base.clone())
            .bearer_auth(MEDIA_TOKEN)
            .send()
            .unwrap()
            .status()
            .as_u16(),
        400
    );

    // Without a configured access token the endpoint refuses everyone.
    let open = media_host(&emu, |o| {
        assert_eq!(
            wa_options_set_webhook_listen(o.0, cstr("127.0.0.1:0").as_ptr()),
            wa_result::WA_OK
        );
    });
    let r = http
        .get(format!(
            "http://127.0.0.1:{}/client/getMedia?id={id}",
            open.webhook_port()
        ))
        .bearer_auth(MEDIA_TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[test]
fn uploaded_media_can_be_sent() {
    let emu = Emulator::start();
    let host = media_host(&emu, |_| {});
    let png: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let r = wa_client_upload_media_buffer(
        host.client,
        cstr(PHONE_ID).as_ptr(),
        png.as_ptr(),
        png.len(),
        cstr("image/png").as_ptr(),
        cstr("chart.png").as_ptr(),
        ctx(1),
    );
    assert_eq!(r, wa_result::WA_OK, "{}", last_error());
    let uploaded = host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(uploaded.error, WHATSAPP_ERR_OK, "{uploaded:?}");
    assert_eq!(uploaded.callback_info.as_deref(), Some("chart.png"));
    let media_id = uploaded.content.clone();
    let stored = direct_http()
        .get(format!("{}/_emulator/media/{media_id}", emu.url))
        .send()
        .unwrap()
        .json::<serde_json::Value>()
        .unwrap();
    assert_eq!(stored["file_size"], 10_000);
    assert_eq!(stored["mime_type"], "image/png");

    // Then sent by id.
    assert_eq!(
        host.send(
            &json!({"id": media_id, "caption": "chart"}).to_string(),
            "+4915112345678",
            "image",
            2
        ),
        wa_result::WA_OK
    );
    let sent = host.wait_results(2, 10 * SECS);
    assert_eq!(sent[1].error, WHATSAPP_ERR_OK);
    let send = emu.sends().pop().unwrap();
    assert_eq!(send["body"]["image"]["id"], media_id);

    // From a file.
    let path = std::env::temp_dir().join(format!("wa-upload-{}.pdf", std::process::id()));
    std::fs::write(&path, b"%PDF-1.4 test").unwrap();
    let r = wa_client_upload_media_file(
        host.client,
        cstr(PHONE_ID).as_ptr(),
        cstr(path.to_str().unwrap()).as_ptr(),
        cstr("application/pdf").as_ptr(),
        ctx(3),
    );
    assert_eq!(r, wa_result::WA_OK, "{}", last_error());
    let results = host.wait_results(3, 10 * SECS);
    assert_eq!(results[2].error, WHATSAPP_ERR_OK, "{:?}", results[2]);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn uploads_are_validated_before_any_request() {
    let emu = Emulator::start();
    let host = media_host(&emu, |_| {});
    let big = vec![0u8; 5 * 1024 * 1024 + 1];
    let upload_raw = |data: *const u8, len: usize, mime: &str| {
        wa_client_upload_media_buffer(
            host.client,
            cstr(PHONE_ID).as_ptr(),
            data,
            len,
            cstr(mime).as_ptr(),
            cstr("f").as_ptr(),
            std::ptr::null_mut(),
        )
    };
    let upload = |data: &[u8], mime: &str| upload_raw(data.as_ptr(), data.len(), mime);
    assert_eq!(upload(&big, "image/png"), wa_result::WA_ERR_TOO_LARGE);
    assert_eq!(
        upload(b"GIF89a", "image/gif"),
        wa_result::WA_ERR_INVALID_ARGUMENT
    );
    assert!(last_error().contains("image/gif"), "{}", last_error());
    assert_eq!(upload(b"", "image/png"), wa_result::WA_ERR_INVALID_ARGUMENT);
    // NULL with zero bytes is an empty buffer (as elsewhere in the API), not a NULL argument.
    assert_eq!(
        upload_raw(std::ptr::null(), 0, "image/png"),
        wa_result::WA_ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        upload_raw(std::ptr::null(), 1, "image/png"),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    let missing = wa_client_upload_media_file(
        host.client,
        cstr(PHONE_ID).as_ptr(),
        cstr("/nonexistent/file.png").as_ptr(),
        cstr("image/png").as_ptr(),
        std::ptr::null_mut(),
    );
    assert_eq!(missing, wa_result::WA_ERR_INVALID_ARGUMENT);
    // Dispatch for a while: a result queued by any of the refused calls would show up.
    host.drain_inbound(Duration::from_millis(100));
    assert!(host.seen().results.is_empty());
    assert!(emu.requests().is_empty(), "nothing was sent");
}

/// A destination whose certificate does not verify: the result says so and names the CA store.
#[test]
fn a_destination_with_an_untrusted_certificate_is_named_as_such() {
    let emu = Emulator::start();
    let host = media_host(&emu, |_| {});
    let server = UntrustedTls::start();
    let (id, _) = emu.create_media("image/png", 1000);
    assert_eq!(
        request_media(&host, &format!("{}/upload", server.url), &id, None, 1),
        wa_result::WA_OK
    );
    let r = host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(r.error, WHATSAPP_ERR_OTHER_HTTP, "{r:?}");
    assert!(
        r.content.starts_with(
            "posting to the destination failed: TLS: the server's certificate was refused"
        ) && r.content.contains("CA certificates"),
        "{r:?}"
    );
}
