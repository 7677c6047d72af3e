//! Media transfers against small loopback servers. With a short request timeout: an upload or a
//! forward that takes longer than the timeout while bytes keep moving succeeds, one whose peer
//! stops reading fails within a bound, and a getMedia client may pause longer than the timeout.
//! Downloads to a file: each has a temporary file of its own, which never outlives a failure.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;
use whatsapp_connector::ffi::media::*;
use whatsapp_connector::ffi::options::*;
use whatsapp_connector::ffi::result::whatsapp_error_t::*;
use whatsapp_connector::ffi::wa_result;

/// The request timeout of these tests; every transfer that must succeed takes longer.
const TIMEOUT_MS: u32 = 600;
const TIMEOUT: Duration = Duration::from_millis(TIMEOUT_MS as u64);

/// A slow but steady reader: at most 64 KiB every 8 ms (8 MB/s). A sender sees its bytes leave
/// only in steps of what its socket buffers hold (hundreds of KiB even with
/// `small_socket_buffers`), so the pace must move those within a fraction of the timeout.
const STEP: usize = 64 * 1024;
const PAUSE: Duration = Duration::from_millis(8);

/// The head of a request a test server received.
type Head = RequestHead;

fn content_length(head: &Head) -> u64 {
    head.header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("the request has a Content-Length")
}

type Handler = dyn Fn(Head, BufReader<TcpStream>) + Send + Sync;

/// A loopback HTTP/1.1 server, one thread per connection, one request per connection: `handle`
/// reads the body as it likes and answers (with `answer`, which closes the connection).
struct Server {
    url: String,
}

impl Server {
    fn start(handle: impl Fn(Head, BufReader<TcpStream>) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        small_socket_buffers(&listener);
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle: Arc<Handler> = Arc::new(handle);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let handle = handle.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    if let Some(head) = read_request_head(&mut reader) {
                        handle(head, reader);
                    }
                });
            }
        });
        Server { url }
    }
}

/// Keeps the kernel from taking megabytes of a request body that the reader has not read yet:
/// on loopback (MTU 64 KiB) a sender's buffer grows to 4 MiB at once, and a blocked writer is
/// woken only once a third of it drained. A small receive buffer and a 1400-byte segment size
/// (as on Ethernet) keep both in the hundreds of KiB. Accepted connections inherit both.
fn small_socket_buffers(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    let set = |level, name, value: libc::c_int| {
        // SAFETY: a valid socket and an int-sized option value.
        let r = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    };
    set(libc::SOL_SOCKET, libc::SO_RCVBUF, 64 * 1024);
    set(libc::IPPROTO_TCP, libc::TCP_MAXSEG, 1400);
}

fn answer(reader: &mut BufReader<TcpStream>, status: u16, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let stream = reader.get_mut();
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// What a slow server saw of one request body.
#[derive(Debug, Clone)]
struct BodyRead {
    /// "<method> <target>"
    request: String,
    expected: u64,
    /// Bytes read during the slow phase; fewer than `expected`, or the test proves nothing.
    slowly: u64,
    got: u64,
}

/// Reads a body of `len` bytes slowly but steadily (`STEP` every `PAUSE`) for one and a half
/// times the timeout, then the rest at full speed. The sender cannot see the bytes its socket buffers
/// hold leave, so the slow phase ends before the body does: otherwise the sender would wait,
/// idle, for those buffers to drain at the slow pace.
fn read_slowly(reader: &mut BufReader<TcpStream>, head: &Head) -> BodyRead {
    let len = content_length(head);
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let started = Instant::now();
    let mut slowly = None;
    while got < len {
        let slow = started.elapsed() < TIMEOUT * 3 / 2;
        let step = if slow { STEP } else { buf.len() };
        if !slow && slowly.is_none() {
            slowly = Some(got);
        }
        let take = (len - got).min(step as u64) as usize;
        match reader.read(&mut buf[..take]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n as u64,
        }
        if slow {
            std::thread::sleep(PAUSE);
        }
    }
    BodyRead {
        request: format!("{} {}", head.method, head.target),
        expected: len,
        slowly: slowly.unwrap_or(got),
        got,
    }
}

/// A server that reads request bodies with `read_slowly`, then answers 200 with `reply`.
fn slow_reader(reply: &'static str) -> (Server, Arc<Mutex<Vec<BodyRead>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = Server::start(move |head, mut reader| {
        let read = read_slowly(&mut reader, &head);
        let complete = read.got == read.expected;
        log.lock().unwrap().push(read);
        if complete {
            answer(&mut reader, 200, "application/json", reply.as_bytes());
        }
    });
    (server, seen)
}

/// A server that reads request heads but never a body byte; it keeps the connections open.
fn stalled_reader() -> Server {
    let held = Arc::new(Mutex::new(Vec::new()));
    Server::start(move |_head, reader| held.lock().unwrap().push(reader))
}

fn short_timeout(options: *mut wa_options) {
    assert_eq!(
        wa_options_set_request_timeout_ms(options, TIMEOUT_MS),
        wa_result::WA_OK
    );
    assert_eq!(
        wa_options_set_media_idle_timeout_ms(options, TIMEOUT_MS),
        wa_result::WA_OK
    );
}

fn host_with(graph_base_url: &str, configure: impl FnOnce(*mut wa_options)) -> Host {
    let mut raw = std::ptr::null_mut();
    assert_eq!(wa_options_new(&mut raw), wa_result::WA_OK);
    let opts = Opts(raw);
    assert_eq!(
        wa_options_set_graph_base_url(raw, cstr(graph_base_url).as_ptr()),
        wa_result::WA_OK
    );
    configure(raw);
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    host
}

fn upload(host: &Host, data: &[u8]) -> wa_result {
    wa_client_upload_media_buffer(
        host.client,
        cstr(PHONE_ID).as_ptr(),
        data.as_ptr(),
        data.len(),
        cstr("application/pdf").as_ptr(),
        cstr("report.pdf").as_ptr(),
        ctx(1),
    )
}

fn forward(host: &Host, destination: &str, media_id: &str) -> wa_result {
    wa_client_request_media(
        host.client,
        cstr(destination).as_ptr(),
        cstr(media_id).as_ptr(),
        std::ptr::null(),
        ctx(1),
    )
}

/// More than the slow reader reads slowly (at most 7.2 MB) plus what the buffers on the way hold.
const SLOW_SIZE: usize = 12 * 1024 * 1024;

#[test]
fn an_upload_slower_than_the_timeout_succeeds_while_bytes_keep_moving() {
    let (graph, reads) = slow_reader(r#"{"id":"4242"}"#);
    let host = host_with(&graph.url, short_timeout);
    let data: Vec<u8> = (0..SLOW_SIZE).map(|i| (i % 251) as u8).collect();
    assert_eq!(upload(&host, &data), wa_result::WA_OK, "{}", last_error());
    let r = host.wait_results(1, 60 * SECS).remove(0);
    assert_eq!(
        (r.error, r.content.as_str()),
        (WHATSAPP_ERR_OK, "4242"),
        "{r:?}"
    );
    let read = reads.lock().unwrap()[0].clone();
    assert_eq!(read.request, format!("POST /v26.0/{PHONE_ID}/media"));
    assert!(read.expected > SLOW_SIZE as u64, "{read:?}");
    assert_eq!(read.got, read.expected);
    assert!(
        read.slowly < read.expected,
        "the upload was still going when the slow phase ended: {read:?}"
    );
}

#[test]
fn an_upload_to_a_server_that_stops_reading_times_out() {
    let graph = stalled_reader();
    let host = host_with(&graph.url, short_timeout);
    let data = vec![7u8; SLOW_SIZE];
    assert_eq!(upload(&host, &data), wa_result::WA_OK, "{}", last_error());
    let r = host.wait_results(1, 30 * SECS).remove(0);
    assert_eq!(r.error, WHATSAPP_ERR_OTHER_HTTP, "{r:?}");
    assert!(
        r.content.starts_with("media upload failed") && r.content.contains("timed out"),
        "{}",
        r.content
    );
}

fn emulator_host(emu: &Emulator) -> Host {
    let opts = Opts::for_emulator(emu);
    short_timeout(opts.0);
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    host
}

#[test]
fn a_forward_to_a_destination_slower_than_the_timeout_succeeds() {
    let emu = Emulator::start();
    let host = emulator_host(&emu);
    let (destination, reads) = slow_reader("ok");
    let (id, _) = emu.create_media("application/pdf", SLOW_SIZE as u64);
    assert_eq!(forward(&host, &destination.url, &id), wa_result::WA_OK);
    let r = host.wait_results(1, 60 * SECS).remove(0);
    assert_eq!(
        (r.error, r.content.as_str()),
        (WHATSAPP_ERR_OK, "200"),
        "{r:?}"
    );
    let read = reads.lock().unwrap()[0].clone();
    assert_eq!(read.request, "POST /");
    assert_eq!(
        (read.expected, read.got),
        (SLOW_SIZE as u64, SLOW_SIZE as u64)
    );
    assert!(
        read.slowly < read.expected,
        "the forward was still going when the slow phase ended: {read:?}"
    );
}

#[test]
fn a_forward_to_a_destination_that_stops_reading_times_out() {
    let emu = Emulator::start();
    let host = emulator_host(&emu);
    let destination = stalled_reader();
    let (id, _) = emu.create_media("application/pdf", SLOW_SIZE as u64);
    assert_eq!(forward(&host, &destination.url, &id), wa_result::WA_OK);
    let r = host.wait_results(1, 30 * SECS).remove(0);
    assert_eq!(r.error, WHATSAPP_ERR_OTHER_HTTP, "{r:?}");
    assert!(
        r.content.starts_with("posting to the destination failed")
            && r.content.contains("timed out"),
        "{}",
        r.content
    );
}

#[test]
fn a_get_media_client_may_pause_longer_than_the_timeout() {
    // More than the listener's side of the connection buffers (megabytes on loopback).
    const SIZE: u64 = SLOW_SIZE as u64;
    let emu = Emulator::start();
    let opts = Opts::for_emulator(&emu);
    short_timeout(opts.0);
    assert_eq!(
        wa_options_set_webhook_listen(opts.0, cstr("127.0.0.1:0").as_ptr()),
        wa_result::WA_OK
    );
    assert_eq!(
        wa_options_set_media_access_token(opts.0, cstr("media-access-token").as_ptr()),
        wa_result::WA_OK
    );
    let host = Host::new(&opts);
    host.set_token(TOKEN);
    let (id, sha) = emu.create_media("application/pdf", SIZE);

    let mut client = TcpStream::connect(("127.0.0.1", host.webhook_port())).unwrap();
    write!(
        client,
        "GET /client/getMedia?id={id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer media-access-token\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(client);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        assert!(reader.read_line(&mut head).unwrap() > 0, "{head}");
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Take a little, then stop reading for longer than the timeout: the library's side of the
    // connection fills up and the download from the media host waits meanwhile.
    let mut body = vec![0u8; 64 * 1024];
    reader.read_exact(&mut body).unwrap();
    std::thread::sleep(TIMEOUT * 2);
    reader.read_to_end(&mut body).unwrap();
    use sha2::Digest;
    let got: String = sha2::Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!((body.len() as u64, got), (SIZE, sha));
}

// ---------------------------------------------------------------------------------------------
// Downloads to a file and their temporary files.

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An empty directory of this test's own.
fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wa-transfer-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Polls `condition` until it holds or `limit` passed; returns whether it held.
fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !condition() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn download(host: &Host, media_id: &str, path: &Path, request_ctx: usize) -> wa_result {
    wa_client_download_media(
        host.client,
        cstr(media_id).as_ptr(),
        cstr(path.to_str().unwrap()).as_ptr(),
        ctx(request_ctx),
    )
}

/// Holds the second half of every file `media_server` serves until opened.
#[derive(Default)]
struct Gate {
    /// (open, first halves sent)
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl Gate {
    fn open(&self) {
        self.state.lock().unwrap().0 = true;
        self.changed.notify_all();
    }

    fn halves_sent(&self) -> usize {
        self.state.lock().unwrap().1
    }
}

/// A Graph stand-in for downloads: `GET /{version}/{id}` describes media `id` of `files` (id,
/// MIME type, bytes) with a URL on this server; `GET /file/{id}` sends the first half of the
/// bytes, then the rest once `gate` opens (or after 10 s).
fn media_server(files: Vec<(&'static str, &'static str, Vec<u8>)>, gate: Arc<Gate>) -> Server {
    Server::start(move |head, mut reader| {
        let path = head.target.split('?').next().unwrap_or("");
        if let Some(id) = path.strip_prefix("/file/") {
            let Some((_, mime, bytes)) = files.iter().find(|(i, ..)| *i == id) else {
                return answer(&mut reader, 404, "text/plain", b"no such file");
            };
            let (first, rest) = bytes.split_at(bytes.len() / 2);
            let stream = reader.get_mut();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(first);
            let _ = stream.flush();
            let mut state = gate.state.lock().unwrap();
            state.1 += 1;
            gate.changed.notify_all();
            let (state, _) = gate
                .changed
                .wait_timeout_while(state, 10 * SECS, |s| !s.0)
                .unwrap();
            drop(state);
            let _ = stream.write_all(rest);
        } else {
            let id = path.rsplit('/').next().unwrap_or("");
            let Some((_, mime, bytes)) = files.iter().find(|(i, ..)| *i == id) else {
                return answer(&mut reader, 404, "application/json", b"{}");
            };
            let lookup = serde_json::json!({
                "url": format!("http://{}/file/{id}", head.header("host").unwrap_or("")),
                "mime_type": mime,
                "sha256": sha256_hex(bytes),
                "file_size": bytes.len(),
                "id": id,
                "messaging_product": "whatsapp",
            });
            answer(
                &mut reader,
                200,
                "application/json",
                lookup.to_string().as_bytes(),
            );
        }
    })
}

#[test]
fn concurrent_downloads_to_names_differing_in_extension_each_get_their_bytes() {
    const SIZE: usize = 1024 * 1024;
    let jpeg: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let png: Vec<u8> = (0..SIZE).map(|i| (i % 241) as u8 ^ 0x5a).collect();
    let gate = Arc::new(Gate::default());
    let server = media_server(
        vec![
            ("1001", "image/jpeg", jpeg.clone()),
            ("1002", "image/png", png.clone()),
        ],
        gate.clone(),
    );
    let host = host_with(&server.url, |_| {});
    let dir = fresh_dir("same-stem");
    assert_eq!(
        download(&host, "1001", &dir.join("a.jpg"), 1),
        wa_result::WA_OK
    );
    assert_eq!(
        download(&host, "1002", &dir.join("a.png"), 2),
        wa_result::WA_OK
    );
    // Both downloads are half done, each in its temporary file, before either may finish. (Were
    // the two to share one, only one would show: then they go on after the limit, interleaved.)
    assert!(
        eventually(10 * SECS, || {
            gate.halves_sent() == 2 && entries(&dir).len() == 2
        }),
        "{:?}",
        entries(&dir)
    );
    gate.open();
    let results = host.wait_results(2, 20 * SECS);
    for (request_ctx, mime, path, bytes) in [
        (1, "image/jpeg", "a.jpg", &jpeg),
        (2, "image/png", "a.png", &png),
    ] {
        let r = results.iter().find(|r| r.ctx == request_ctx).unwrap();
        assert_eq!(
            (r.error, r.content.as_str()),
            (WHATSAPP_ERR_OK, mime),
            "{r:?}"
        );
        let got = std::fs::read(dir.join(path)).unwrap();
        assert!(got == *bytes, "{path} does not hold its media");
    }
    assert_eq!(entries(&dir), ["a.jpg", "a.png"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_download_leaves_the_hosts_own_part_file_alone() {
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    let dir = fresh_dir("own-part");
    std::fs::write(dir.join("voice.part"), b"the host's own file").unwrap();
    let (id, sha) = emu.create_media("audio/ogg", 100_000);
    assert_eq!(
        download(&host, &id, &dir.join("voice.ogg"), 1),
        wa_result::WA_OK
    );
    let r = host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(
        (r.error, r.content.as_str()),
        (WHATSAPP_ERR_OK, "audio/ogg"),
        "{r:?}"
    );
    assert_eq!(
        sha256_hex(&std::fs::read(dir.join("voice.ogg")).unwrap()),
        sha
    );
    assert_eq!(
        std::fs::read(dir.join("voice.part")).unwrap(),
        b"the host's own file"
    );
    assert_eq!(entries(&dir), ["voice.ogg", "voice.part"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_download_leaves_no_temporary_file() {
    let emu = Emulator::start();
    let host = Host::with_token(&emu);
    let dir = fresh_dir("failed");
    let (id, _) = emu.create_media("image/jpeg", 100_000);
    // The destination is a directory that is not empty: the final rename fails.
    std::fs::create_dir(dir.join("taken.jpg")).unwrap();
    std::fs::write(dir.join("taken.jpg").join("inside"), b"kept").unwrap();
    assert_eq!(
        download(&host, &id, &dir.join("taken.jpg"), 1),
        wa_result::WA_OK
    );
    let r = host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(r.error, WHATSAPP_ERR_OTHER_HTTP, "{r:?}");
    assert!(r.content.contains("taken.jpg"), "{r:?}");
    // The bytes do not match the SHA-256 Graph announced.
    emu.post_json(
        "/_emulator/media/config",
        serde_json::json!({"corrupt_sha256": true}),
    );
    let (bad, _) = emu.create_media("image/jpeg", 100_000);
    assert_eq!(
        download(&host, &bad, &dir.join("bad.jpg"), 2),
        wa_result::WA_OK
    );
    let r = host.wait_results(2, 10 * SECS).remove(1);
    assert_eq!(r.error, WHATSAPP_ERR_OTHER_HTTP, "{r:?}");
    assert!(r.content.contains("SHA-256"), "{r:?}");
    assert_eq!(entries(&dir), ["taken.jpg"]);
    assert_eq!(entries(&dir.join("taken.jpg")), ["inside"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_download_cut_short_by_closing_leaves_no_temporary_file() {
    let gate = Arc::new(Gate::default());
    let server = media_server(
        vec![("1003", "video/mp4", vec![3u8; 512 * 1024])],
        gate.clone(),
    );
    let mut host = host_with(&server.url, |o| {
        assert_eq!(wa_options_set_drain_timeout_ms(o, 50), wa_result::WA_OK);
    });
    let dir = fresh_dir("closed");
    assert_eq!(
        download(&host, "1003", &dir.join("clip.mp4"), 1),
        wa_result::WA_OK
    );
    assert!(
        eventually(10 * SECS, || gate.halves_sent() == 1
            && entries(&dir).len() == 1),
        "the download did not start: {:?}",
        entries(&dir)
    );
    host.close_and_wait(10 * SECS);
    let r = host.wait_results(1, 10 * SECS).remove(0);
    assert_eq!(r.error, WHATSAPP_ERR_CLOSING, "{r:?}");
    host.free();
    assert_eq!(entries(&dir), Vec::<String>::new());
    gate.open();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Media transfers have their own idle bound, apart from the request timeout of Graph calls:
/// a short request timeout does not cut a transfer short.
#[test]
fn the_media_idle_bound_is_its_own_option() {
    let graph = stalled_reader();
    let idle_ms = 4 * TIMEOUT_MS;
    let host = host_with(&graph.url, |options| {
        assert_eq!(
            wa_options_set_request_timeout_ms(options, TIMEOUT_MS),
            wa_result::WA_OK
        );
        assert_eq!(
            wa_options_set_media_idle_timeout_ms(options, idle_ms),
            wa_result::WA_OK
        );
    });
    assert_eq!(
        wa_options_set_media_idle_timeout_ms(std::ptr::null_mut(), 1),
        wa_result::WA_ERR_NULL_ARGUMENT
    );
    let data = vec![7u8; SLOW_SIZE];
    assert_eq!(upload(&host, &data), wa_result::WA_OK, "{}", last_error());
    let r = host.wait_results(1, 30 * SECS).remove(0);
    assert_eq!(r.error, WHATSAPP_ERR_OTHER_HTTP, "{r:?}");
    assert!(
        r.content
            .contains(&format!("timed out, nothing moved for {idle_ms} ms")),
        "{}",
        r.content
    );
}
