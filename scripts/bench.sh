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
before `wa_client_send_message` returns WA_OK and deleted (in batches) once its `send_result` callback ran,
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
POSTed with 32 keep-alive connections (open from run to run) to the library's built-in
listener, timed until every `recv_message` callback ran (thread mode), against a bare hyper
server on a one-worker runtime that reads each body and answers 200, with the same load
generator in the same process. Three sets of eleven rounds, each alternating which side goes
first; medians. **The target's figure: whole runs of 20 000 webhooks with every thread of the
process pinned to one CPU**, where the load generator and the server share the CPU as they
share a small machine, so a variant's rate is the inverse of the CPU it spends per webhook
(load generator included, as in any same-machine run): it moves by about a percent from round
to round. Then, as information, whole runs on both CPUs, and the same in four parts of 5 000,
each sent to both sides in turn (the library's last part timed to its last callback, the
earlier ones to their last answer, so that each round pays the dispatch thread's final
gathering pause once, as a whole run does). On this 2-core VM the two-CPU figures measure
where the scheduler places the four busy threads more than the library: the placement lasts
seconds (successive rounds are not independent), the bare server alone runs at about 60k or
90k/s, and with identical code single rounds gave 0.55-1.23 and a set's median 0.68-0.96.
Until 2026-11 the two-CPU median was the verdict; it was moved to the one-CPU rate because a
figure whose spread is wider than the margin it judges cannot tell a regression from a
placement (notes on issue 3). Counted on the server's threads alone, the library needs
about 6.3 µs per webhook where the bare server needs 3.5 (0.56×): it authenticates, parses,
maps and deduplicates each body, which the bare server does not; the target's ratio, like
any comparison on one machine, also counts the load generator's 12.5 µs. CPU per thread is
the scheduler's own run time per thread (/proc/self/task/*/schedstat), also printed for every
round on stderr; `load-main` and `load-worker` are the load generator. The run waits for the
last callbacks asleep (the last callback wakes it): an earlier version yielded in a loop, and
on one CPU that busy wait, up to the dispatch thread's 4 ms pause per run, was charged to the
library (the load generator seemed 0.5-0.9 µs slower against it).

EOF
    cat "$webhook_table"
    cat <<'EOF'

## Where the time goes

**Sends.** The machine has 2 cores and the emulator needs about one of them, so the variants
are mostly CPU-bound and the ratio is decided by CPU per message, the client's and, through it,
the emulator's. Not always: when the machine is in a fast phase the raw loop leaves CPU idle
(CPU busy about 1.6 of 2) because it waits on the emulator with its 64 requests in flight; the
library, with more CPU per message, then keeps up and the ratio is about 1.0. In CPU-bound full
runs after the previous round's changes it was 0.88-0.95 (thread and poll mode): the library
sits at the 0.9 target, within this machine's noise of it. In this round (webhook work) the
thread-mode dispatcher's batching cut thread mode's client CPU by about 1 µs per message;
eight runs in a fast phase of the machine gave thread mode 0.85-0.95 and poll mode 0.88-0.92.
Poll mode's client CPU per message is unchanged against the previous commit (16.4-16.6 µs in
alternating runs of both builds); the raw loop, same source, ran 0.3-0.5 µs faster in this
build, which is where its ratio went. After the latest round (fixes from a review; the
per-message path gained a per-second count of accepted sends for the 130429 throttle) runs
gave thread/poll mode 0.87/0.88, 0.90/0.90, then 0.93/0.95 on the round's final commit, with the
library's client CPU per message at 15.7-16.4 µs (16.3-16.6 before): the raw loop is what moved
(62-67k/s). The committed run (2026-11-26, send path unchanged) gave 0.89/0.85 with the library
at 16.4 µs per message and the raw loop at 69k/s. `WA_BENCH_ONLY=graph` runs the library's own `GraphClient::send` in the raw loop's
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

**Webhooks.** On one CPU the bare server's whole run costs about 16 µs of CPU per webhook, of
which the server thread is 3.6 and the load generator (reqwest, two threads) about 12.5. The
library's runtime thread needs about 6.1 µs and its dispatch thread 0.2; the same load
generator runs about 0.3-0.5 µs slower against it (a spinning stand-in server with the runtime
thread's CPU cost slows it about as much: fewer answers per wake-up). What the runtime thread
spends beyond the bare server's 3.6 µs, from a perf profile of the bench (frame pointers;
shares of the runtime thread's samples): the HMAC-SHA256 over the exact body about 0.65 µs
(SHA-NI at the hardware's speed; ring measured 13% slower), parsing and mapping about 0.5-0.75,
dedupe about 0.35-0.4 (a random slot in a window far larger than the cache for the new key,
another for the forgotten one; with dedupe off the one-CPU ratio is about 0.03 higher), the
handler's glue (signature decoding, constant-time compare, UTF-8 check, answer headers) about
0.25, extra allocations about 0.15 and waking the dispatch thread once per 32 events about
0.1. The rest of the gap is that a webhook must be authenticated, parsed and deduplicated while
the bare server does nothing with it: a listener that answers before the handler runs costs
the same as the bare server (ratio 0.99-1.00).

Changes in the latest round: the bench's harness (the sleeping wait above: one-CPU ratio 0.80
-> 0.83 with the same library; connections kept from run to run; the interleaved set). Measured
and not kept: a gathering pause that follows the stream's rate (twice the time the last 32
events took) ends a burst sooner but on one CPU, where events arrive in scheduler-sized bursts,
it tripled the dispatch thread's wake-ups (0.2 -> 0.7 µs per webhook); forgetting dedupe keys
64 at a time with their slots loaded together (no faster in a cache-polluted micro-benchmark);
prefetching the next forgotten key's slot before the HMAC (no measurable change); a
current-thread runtime (the bare server measured 3.6 against 3.7 µs). Earlier rounds (one-CPU
ratio 0.72 -> 0.80 -> 0.82 in the old harness): the fast path walks the body once with a small
validating scanner that hands out raw strings with an "escaped" flag instead of parsing into
serde's typed structs (parse and map alone 1.21 -> about 0.75 µs); long strings searched with
`memchr2`; the dispatch thread gathers a batch until 32 events or 4 ms, woken by the producer;
the webhook HMAC keyed once per `SetConfig`; a body's UTF-8 checked once; the dedupe index at
8 bytes per slot over a ring of exact fingerprints; one-piece bodies taken without a chunk
list; answers sent with one write(2); C strings handed over without a NUL scan. Measured and
not kept then: sonic-rs, keeping the first element of each JSON array inline, recycling event
buffers, omitting the Content-Type header, a second runtime worker (for the library alone, or
for both sides), yielding before answering, mimalloc (it sped up the bare server and the load
generator as much as the library), gather counts from 16 to 256 events.

On two CPUs the ratio is decided by where the scheduler puts four busy threads on two cores,
and it is bimodal. In a "fast" placement the load generator's worker and the server thread
share a core (their wake-ups stay on one CPU) and the load generator's main thread has the
other: the bare server does about 88-95k/s and the library about 68-74k/s (0.77-0.80), because
the shared core carries the worker plus the server (bare about 10.7 µs per webhook, library
about 14) while the other core idles a third of the time. In a "slow" placement they sit on
different cores and every request and answer costs a cross-CPU wake-up: both threads' CPU per
webhook grows by about 2-3 µs, in both variants (bare server 4.0 -> 7.0 µs, library runtime
6.8 -> 9.0), and the ratio is about 0.9. Placements last seconds, and the library's less
balanced pairing is moved by the load balancer more often, so medians over eleven rounds land
anywhere between about 0.7 and 1.0. The one-CPU rate is what the target and changes to the
library are judged by.
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
