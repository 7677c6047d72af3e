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
that reads each body and answers 200, with the same load generator in the same process. Eleven
rounds on both CPUs (the target's figure), then eleven with every thread of the process pinned
to one CPU; rounds alternate which variant goes first; medians. On this 2-core VM the two-CPU
rounds swing with where the scheduler places the four busy threads (the bare server alone runs
at two distinct speeds, about 60k and 90k/s, from round to round), so a whole run's median
moved between 0.61 and 0.94 minutes apart before the one-CPU set existed; on one CPU the
ratio is the CPU each variant spends per webhook and stays within a few percent, which is what
changes to the library are judged by. The progress lines (stderr) give each round's CPU per
webhook.

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

**Webhooks.** Where the library's extra CPU goes, measured on one CPU by ending the handler
early at each stage (experiment builds, not shipped; two alternating runs each, ratio of the
bare server's CPU per webhook to the library's): listener answering 200 without the handler
0.97-0.98x; plus the HMAC-SHA256 over the exact body 0.92-0.93x; plus a full JSON scan of the
body (serde's `IgnoredAny`) 0.89-0.90x; plus the typed mapping into events 0.80-0.83x; plus
dedupe and queueing, without delivery 0.77-0.78x; everything, callbacks delivered by the
dispatch thread, 0.72-0.73x. So the listener itself costs next to nothing; the gap to 0.8 is
the work a webhook needs (authenticate, parse, map, dedupe, hand over), each step a few
percent of a request that otherwise costs the bare server almost nothing beyond the HTTP
exchange. The HMAC is already SHA-NI (ring measured no faster), serde_json beat sonic-rs on
these bodies. Changes in this round: one allocation per event with strings decoded straight
into it (22 allocations per text webhook before, 8 now; serde_json's scratch buffer no longer
grows for every escaped text), an open-addressing dedupe window (about two cache misses per new
key instead of four), and a 1 ms batching pause for the thread-mode dispatcher instead of 200 µs
(every wake-up costs tens of µs of machine time on this VM; on one CPU 0.65x with 200 µs, 0.72x
with 1 ms, 0.73x with 2 ms). Earlier rounds: one typed pass over common bodies instead of three
parses, raw values copied only when the raw-change callback is registered, dedupe by 128-bit
fingerprints, fixed answers without allocations. Measured and not kept: a second runtime
worker, yielding before answering, mimalloc as the process allocator (it sped up the bare
server and the load generator as much as the library: 0.69x to 0.71x).
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
