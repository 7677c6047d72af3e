/*
 * demo.c: a small C host of whatsapp-connector.
 *
 * Sends a text, then (once its message id is known) a reaction to it, a location and an image
 * by link, prints every result, closes, and exits 0 only if every message was accepted by Graph
 * and the shutdown contract held (close-complete last, destroy exactly once).
 *
 *   demo <graph-base-url> [token] [phone-number-id] [recipient]
 *
 * Run it against the emulator: scripts/demo.sh does all of it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "whatsapp_connector.h"

struct demo {
    wa_client *client;
    const char *channel;
    const char *recipient;
    int results;
    int failures;
    int close_completes;
    int destroys;
    int after_close;
};

static void on_send_result(void *user_data, void *request_ctx, whatsapp_error_t error,
                           const char *callback_info, const char *content)
{
    struct demo *d = user_data;
    const char *what = request_ctx;
    if (d->close_completes > 0)
        d->after_close++;
    d->results++;
    printf("result  %-9s %-28s info=%s content=%s\n", what, wa_whatsapp_error_name(error),
           callback_info ? callback_info : "(none)", content);
    if (error != WHATSAPP_ERR_OK) {
        d->failures++;
        return;
    }
    if (strcmp(what, "text") == 0) {
        /* React to the text we just sent: its wamid is the content. Calling the API from inside a
         * callback is allowed. */
        char reaction[512];
        snprintf(reaction, sizeof reaction, "{\"message_id\":\"%s\",\"emoji\":\"\\ud83d\\udc4d\"}", content);
        wa_result r = wa_client_send_message(d->client, reaction, d->recipient, "reaction", d->channel,
                                             "demo-reaction", NULL, "reaction");
        if (r != WA_OK)
            d->failures++;
    }
}

static void on_log(void *user_data, wa_log_level level, const char *text)
{
    (void)user_data;
    if (level <= WA_LOG_WARN)
        printf("log     %u %s\n", (unsigned)level, text);
}

static void on_close_complete(void *user_data)
{
    struct demo *d = user_data;
    if (d->close_completes > 0)
        d->after_close++;
    d->close_completes++;
    printf("closed\n");
}

static void on_destroy(void *user_data)
{
    struct demo *d = user_data;
    d->destroys++;
}

static int check(wa_result r, const char *what)
{
    if (r == WA_OK)
        return 0;
    char detail[256];
    wa_last_error_message(detail, sizeof detail, NULL);
    fprintf(stderr, "%s failed: %s (%s)\n", what, wa_result_text(r), detail);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <graph-base-url> [token] [phone-number-id] [recipient]\n", argv[0]);
        return 2;
    }
    const char *token = argc > 2 ? argv[2] : "test-token";
    struct demo d = {0};
    d.channel = argc > 3 ? argv[3] : "106540352242922";
    d.recipient = argc > 4 ? argv[4] : "+16505551234";

    wa_options *options = NULL;
    if (check(wa_options_new(&options), "wa_options_new"))
        return 1;
    if (check(wa_options_set_graph_base_url(options, argv[1]), "set_graph_base_url"))
        return 1;
    wa_client_callbacks callbacks = {
        .user_data = &d,
        .close_complete = on_close_complete,
        .send_result = on_send_result,
        .log = on_log,
        .destroy = on_destroy,
    };
    wa_result r = wa_client_new(options, &callbacks, &d.client);
    wa_options_free(options);
    if (check(r, "wa_client_new"))
        return 1;
    printf("library %s, Graph API %s\n", wa_library_version(), wa_client_version(d.client));

    /* Sent before the token is known: held, then sent once SetConfig provides it. */
    if (check(wa_client_send_message(d.client, "{\"body\":\"Hello from C\",\"preview_url\":false}",
                                     d.recipient, "text", d.channel, "demo-text", NULL, "text"),
              "send text"))
        return 1;
    if (check(wa_client_set_config(d.client, token, "demo-app-secret"), "set_config"))
        return 1;
    if (check(wa_client_send_message(d.client, "{\"latitude\":52.52,\"longitude\":13.405,\"name\":\"Berlin\"}",
                                     d.recipient, "location", d.channel, "demo-location", NULL, "location"),
              "send location"))
        return 1;
    if (check(wa_client_send_message(d.client, "{\"type\":\"image\",\"link\":\"https://example.com/cat.png\"}",
                                     d.recipient, "media", d.channel, "demo-image", NULL, "image"),
              "send image"))
        return 1;
    /* Refused at once: no callback follows. */
    if (wa_client_send_message(d.client, "{not json", d.recipient, "text", d.channel, NULL, NULL, "bad") !=
        WA_ERR_INVALID_JSON) {
        fprintf(stderr, "malformed JSON was not refused\n");
        return 1;
    }

    /* A plain loop instead of an epoll host: wait for events and dispatch them here. */
    for (int i = 0; i < 200 && d.results < 4; i++) {
        if (check(wa_client_wait(d.client, 100, NULL), "wait"))
            return 1;
    }
    if (check(wa_client_close(d.client), "close"))
        return 1;
    for (int i = 0; i < 100 && d.close_completes == 0; i++) {
        if (check(wa_client_wait(d.client, 100, NULL), "wait"))
            return 1;
    }
    wa_client_free(d.client);

    int ok = d.results == 4 && d.failures == 0 && d.close_completes == 1 && d.destroys == 1 &&
             d.after_close == 0;
    printf("%s: %d results, %d failures, close-complete %d, destroy %d\n", ok ? "PASS" : "FAIL",
           d.results, d.failures, d.close_completes, d.destroys);
    return ok ? 0 : 1;
}
