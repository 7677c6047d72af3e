#!/usr/bin/env bash
# Runs the throughput benchmark (benches/throughput.rs) against the Cloud API emulator on
# loopback and writes BENCHMARKS.md with its tables and a description of the machine.
#
# Environment: WA_BENCH_MESSAGES (messages per run, default 20000), WA_EMULATOR_BIN (another
# emulator binary), CARGO_BUILD_JOBS (default 1: the build shares small machines).
set -euo pipefail
cd "$(dirname "$0")/.."

table=$(mktemp)
webhook_table=$(mktemp)
trap 'rm -f "$table" "$webhook_table"' EXIT

# The bench prints its Markdown result on stdout; its progress and cargo's own messages go to
# stderr, which stays on the terminal. BENCHMARKS.md is only rewritten after a successful run.
cargo bench -j "${CARGO_BUILD_JOBS:-1}" --bench throughput >"$table"
cargo bench -j "${CARGO_BUILD_JOBS:-1}" --bench webhook >"$webhook_table"

cpu_model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
emulator=${WA_EMULATOR_BIN:-"the crate's own wa-emulator (bench profile)"}

{
    cat <<'EOF'
# Benchmarks

`benches/throughput.rs` drives the library through its exported C functions, exactly as a C host
would, against the Cloud API emulator (`wa-emulator`) on 127.0.0.1. **Throughput**: text messages
spread over 2000 recipients (messages to one recipient are sent one after another by design) with
64 requests in flight and pacing off (`wa_options_set_channel_rate(o, 0)`), timed from the first
`wa_client_send_message` to the last `send_result` callback, once with callbacks on the library's
dispatch thread and once with the calling thread looping on `wa_client_wait`. The baseline is a raw
reqwest loop on a one-worker tokio runtime (like the library's) posting byte-identical bodies,
built by the library's own message builder, with the same headers, timeouts, pool settings and
concurrency, counting only HTTP 200 answers; it keeps reqwest's default retry layer, which the
library turns off because its outbox retries by itself. The variants run alternately in eleven
rounds after a warm-up round;
the tables give medians, and the ratios are taken within each round. Every library result must be
`WHATSAPP_ERR_OK`. **Durable outbox**: in the same rounds, a fourth variant runs the thread-mode
client with `wa_options_set_outbox_path` pointing at a fresh SQLite store on the project's disk
(under `target/tmp`, WAL mode, `synchronous=NORMAL`): every message is committed to the store
before `wa_client_send_message` returns WA_OK and deleted (in batches) once its result is queued,
so the send loop pays one commit per message (group commit only merges the commits of senders
calling concurrently; the bench sends from one thread). Its ratio is taken against the in-memory
thread-mode run of the same round (target: at least half its rate). **Call cost**: 3 batches of
100 000 `wa_client_send_message` calls on a client without a token (messages are validated, built
and queued but held, so no network is involved); nanoseconds per call, median batch. **Memory**:
growth of the process's VmRSS (/proc/self/status) from before creating a client to after it holds
100 000 queued messages. The CPU columns are the scheduler run time of the bench process and of the
emulator during the measured window, per message: the emulator shares the machine, so on few cores
the run is CPU-bound and the client's CPU per message decides the ratio.

## Results

EOF
    cat "$table"
    cat <<'EOF'

## Webhook ingest

`benches/webhook.rs`: distinct signed ~1 KB message webhooks (Meta-shaped, `\/`-escaped)
POSTed with 32 keep-alive connections to the library's built-in listener, timed until every
`recv_message` callback ran (thread mode), against a bare hyper server on a one-worker runtime
that reads each body and answers 200, with the same load generator in the same run (11 rounds,
median). The progress lines (stderr) give the process's CPU per webhook of each run, and the
handler's own CPU cost (signature, parse, mapping, dedupe, queueing; no HTTP).

EOF
    cat "$webhook_table"
    cat <<'EOF'

## Where the time goes

**Sends.** The machine has 2 cores and the emulator needs about one of them, so the variants
are mostly CPU-bound and the ratio is decided by CPU per message, the client's and, through it,
the emulator's. Not always: when the machine is in a fast phase the raw loop leaves CPU idle
(CPU busy about 1.6 of 2) because it waits on the emulator with its 64 requests in flight; the
library, with more CPU per message, then keeps up and the ratio is about 1.0. In CPU-bound full
runs after this round's changes it was 0.88-0.95 (thread and poll mode): the library now sits
at the 0.9 target, within this machine's noise of it. `WA_BENCH_ONLY=graph` runs the library's own `GraphClient::send` in the raw loop's
place: it costs the same as the raw loop (within ±1 µs), so the difference is what the library
does around the request: the host's `wa_client_send_message` (validation and building, about
0.7 µs), the outbox (per-recipient FIFO, pacing and retry bookkeeping, one boxed attempt per
request; with 20 000 messages queued each message's state is cold in the cache by the time it
is sent, about 2-3 µs in frame-pointer profiles) and result delivery (about 0.4 µs). When the
client needs more CPU per message the emulator does too (fewer requests per wake-up), so each
µs the library adds costs somewhat more than a µs of machine time. Changes in this round: the
send body is written directly (1.3 -> 0.7 µs per call), recipient queues live in a slab reached
by index (one hash per accepted message instead of about six SipHash lookups), one persistent
timer instead of a new `Sleep` per loop iteration, no reqwest retry layer (it copied every
request), zero-copy response bodies, one shared `Arc` for the channel. Context switches are
not the issue (about 0.05 per message, `getrusage`); earlier notes that blamed them misread
perf samples of a VM.

**Webhooks.** The handler alone (`WA_BENCH_HANDLER_ONLY=1`) costs about 2.7 µs per 1 KB
webhook: the HMAC-SHA256 over the exact body (about 1 µs, already SHA-NI; ring is no faster),
the typed JSON parse (about 1.1-1.4 µs; serde_json, sonic-rs measured slower on these bodies)
and dedupe, mapping and queueing. With the handler replaced by a bare 200 (an experiment, not
shipped) the listener matches the bare server (0.9-1.1x), so the listener itself adds nothing
measurable. The load generator needs about 1.4 cores, so the library's one runtime thread
becomes the serial bottleneck: the generator then sleeps between answers, every answer wakes
it (an inter-processor interrupt on this VM, paid inside the library's `writev`), and each µs
of handler work costs about 2 µs of machine CPU. A second runtime worker and yielding before
answering were measured and made it worse. Changes in this round: one typed pass over common
bodies instead of three parses (4.3 -> 2.7 µs per webhook), raw values copied only when the
raw-change callback is registered, dedupe by 128-bit fingerprints (no allocation per key), a
busy dispatcher that pauses after any batch under 256 events (no futex wake per webhook).
EOF
    cat <<EOF

## Machine

- CPU: ${cpu_model:-unknown} (nproc: $(nproc))
- Toolchain: $(rustc --version)
- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- Emulator: ${emulator}

Rerun with \`scripts/bench.sh\`.
EOF
} >BENCHMARKS.md

echo "wrote BENCHMARKS.md" >&2
