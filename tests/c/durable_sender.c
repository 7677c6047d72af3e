/*
 * durable_sender.c: a C host of whatsapp-connector with the durable outbox, for the SIGKILL
 * crash test (tests/crash.rs).
 *
 *   durable_sender <graph-base-url> <store-path> send <count> <recipients> [nodispatch]
 *   durable_sender <graph-base-url> <store-path> resume
 *
 * send:   sends text messages "m0".."m<count-1>" (message i to recipient i % recipients,
 *         callback_info = the body, request_ctx non-NULL), dispatching results as it goes;
 *         prints "accepted N" only after N calls returned WA_OK. Then dispatches until nothing
 *         is pending, closes and prints "done". With "nodispatch" it never dispatches: after
 *         sending it sleeps until it is killed (its results wait undispatched).
 * resume: sends nothing; prints "resumed N" (the messages taken over from the store),
 *         dispatches until nothing is pending, closes and prints "done".
 *
 * Every result is printed as one line "r <callback_info> <error> <ctx>" (ctx 1 when the
 * request context is non-NULL), written with one write(2) so that a SIGKILL never leaves half
 * a line and no result the host saw stays in a stdio buffer.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "whatsapp_connector.h"

static const char *CHANNEL = "106540352242922";

struct host {
    unsigned long results;
    unsigned long failures;
    int closed;
};

static void say(const char *line)
{
    size_t len = strlen(line);
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, line, len);
        if (n <= 0)
            exit(3);
        line += n;
        len -= (size_t)n;
    }
}

static void on_send_result(void *user_data, void *request_ctx, whatsapp_error_t error,
                           const char *callback_info, const char *content)
{
    struct host *h = user_data;
    char line[256];
    (void)content;
    h->results++;
    if (error != WHATSAPP_ERR_OK)
        h->failures++;
    snprintf(line, sizeof line, "r %s %u %d\n", callback_info ? callback_info : "-",
             (unsigned)error, request_ctx != NULL);
    say(line);
}

static void on_close_complete(void *user_data)
{
    struct host *h = user_data;
    h->closed = 1;
}

static void on_log(void *user_data, wa_log_level level, const char *text)
{
    (void)user_data;
    fprintf(stderr, "durable_sender log %u: %s\n", (unsigned)level, text);
}

static void check(wa_result r, const char *what)
{
    if (r == WA_OK)
        return;
    char detail[512];
    size_t len = 0;
    wa_last_error_message(detail, sizeof detail, &len);
    fprintf(stderr, "durable_sender: %s: %s (%s)\n", what, wa_result_text(r), detail);
    exit(2);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Dispatches until nothing is pending, then closes and dispatches until close-complete. */
static void drain_and_close(wa_client *client, struct host *h)
{
    while (wa_client_pending(client) > 0)
        check(wa_client_wait(client, 100, NULL), "wa_client_wait");
    check(wa_client_close(client), "wa_client_close");
    while (!h->closed)
        check(wa_client_wait(client, 100, NULL), "wa_client_wait");
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[3], "send") == 0 && argc < 6)) {
        fprintf(stderr, "usage: %s <graph-url> <store> send <count> <recipients> [nodispatch]\n"
                        "       %s <graph-url> <store> resume\n",
                argv[0], argv[0]);
        return 2;
    }
    const char *url = argv[1];
    const char *store = argv[2];
    int sending = strcmp(argv[3], "send") == 0;
    long count = sending ? strtol(argv[4], NULL, 10) : 0;
    long recipients = sending ? strtol(argv[5], NULL, 10) : 1;
    int dispatching = !(sending && argc > 6 && strcmp(argv[6], "nodispatch") == 0);

    wa_options *options = NULL;
    check(wa_options_new(&options), "wa_options_new");
    check(wa_options_set_graph_base_url(options, url), "graph base url");
    check(wa_options_set_outbox_path(options, store), "outbox path");
    check(wa_options_set_channel_rate(options, 0), "channel rate");
    check(wa_options_set_max_in_flight(options, 64), "max in flight");
    check(wa_options_set_retry(options, 10, 600000, 20, 200), "retry");
    check(wa_options_set_log_level(options, WA_LOG_ERROR), "log level");

    struct host h = {0, 0, 0};
    wa_client_callbacks callbacks;
    memset(&callbacks, 0, sizeof callbacks);
    callbacks.user_data = &h;
    callbacks.send_result = on_send_result;
    callbacks.close_complete = on_close_complete;
    callbacks.log = on_log;
    wa_client *client = NULL;
    check(wa_client_new(options, &callbacks, &client), "wa_client_new");
    wa_options_free(options);

    char line[128];
    snprintf(line, sizeof line, "resumed %lu\n", (unsigned long)wa_client_pending(client));
    say(line);
    check(wa_client_set_config(client, "test-token", "app-secret"), "set config");

    if (sending) {
        for (long i = 0; i < count; i++) {
            char body[64], to[32], json[96];
            snprintf(body, sizeof body, "m%ld", i);
            snprintf(to, sizeof to, "+1555020%04ld", i % recipients);
            snprintf(json, sizeof json, "{\"body\":\"%s\"}", body);
            /* Any non-NULL pointer: it must come back (only) with results of this run. */
            check(wa_client_send_message(client, json, to, "text", CHANNEL, body, NULL, &h),
                  "wa_client_send_message");
            if ((i + 1) % 100 == 0 || i + 1 == count) {
                snprintf(line, sizeof line, "accepted %ld\n", i + 1);
                say(line);
                if (dispatching)
                    check(wa_client_dispatch(client, NULL), "wa_client_dispatch");
            }
        }
        if (!dispatching) {
            /* Results not dispatched keep their messages pending: the test watches Graph's side
             * and kills this host once every result is queued. */
            for (;;)
                sleep_ms(1000);
        }
    }
    drain_and_close(client, &h);
    snprintf(line, sizeof line, "done results=%lu failures=%lu\n", h.results, h.failures);
    say(line);
    wa_client_free(client);
    return 0;
}
