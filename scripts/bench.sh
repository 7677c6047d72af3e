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
built by the library's own message builder, with the same headers, client settings and concurrency,
counting only HTTP 200 answers. The variants run alternately in three rounds after a warm-up round;
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
that reads each body and answers 200, with the same load generator in the same run (3 rounds,
median). The bench also prints the handler's own CPU cost (signature, parse, mapping, dedupe,
queueing; no HTTP).

EOF
    cat "$webhook_table"
    cat <<'EOF'

## Where the time goes

The machine has 2 cores and the emulator needs about one of them, so every variant is CPU-bound
and the ratio is decided by client CPU per message. The raw loop spends about 17 µs per message;
the library more. perf on the library's runtime thread showed about 30% of its time in the
kernel's context-switch paths (the runtime, the host's dispatching thread and the emulator
compete for 2 cores, and deliveries of results wake the dispatching thread), the rest spread
thinly over hyper/reqwest (as in the raw loop), the outbox scheduler (hash maps, queues, a few
percent) and event delivery. Changes made: attempts are polled inside the scheduler (no task
spawn per request), results are handed over in batches gathered for up to 1 ms while more
answers are due (0.72x -> 0.80x), wake-ups are only sent to a sleeping dispatcher, a busy
thread-mode dispatcher lets small batches gather for 200 us, Graph's answer is parsed into a
typed struct, endpoint URLs and the Authorization header are built once. Rounds vary by about
±0.1 on this shared machine. Still to try: fewer allocations per message, a second runtime
worker. Webhook ingest: the handler itself costs about 4.5 µs per
1 KB webhook (signature, parse, mapping, dedupe, queueing); the bare server does none of that,
and each delivery wakes the dispatching thread.
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
