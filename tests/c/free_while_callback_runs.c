/* Thread mode: the host frees the client as soon as close_complete has started (the header's
 * step 4), while that callback is still running on the library's dispatch thread and calls the
 * API. The handle must stay valid until the dispatch thread is joined; run under valgrind, an
 * early free shows as an invalid read. */
#include "whatsapp_connector.h"

#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

static wa_client *client;
static atomic_int close_started;
static atomic_int pending_after_free = -1;
static atomic_int destroyed;

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void on_close_complete(void *user_data) {
    (void)user_data;
    atomic_store(&close_started, 1);
    sleep_ms(200); /* the host's free call is waiting meanwhile */
    atomic_store(&pending_after_free, (int)wa_client_pending(client));
}

static void on_destroy(void *user_data) {
    (void)user_data;
    atomic_fetch_add(&destroyed, 1);
}

int main(void) {
    wa_options *options = NULL;
    if (wa_options_new(&options) != WA_OK ||
        wa_options_set_graph_base_url(options, "http://127.0.0.1:9") != WA_OK ||
        wa_options_set_dispatch_mode(options, WA_DISPATCH_THREAD) != WA_OK) {
        return 1;
    }
    wa_client_callbacks callbacks = {0};
    callbacks.close_complete = on_close_complete;
    callbacks.destroy = on_destroy;
    if (wa_client_new(options, &callbacks, &client) != WA_OK) {
        return 1;
    }
    wa_options_free(options);
    if (wa_client_close(client) != WA_OK) {
        return 1;
    }
    while (!atomic_load(&close_started)) {
        sleep_ms(1);
    }
    wa_client_free(client);
    /* Free returned after the callback: it ran to its end with a valid handle. */
    if (atomic_load(&pending_after_free) != 0 || atomic_load(&destroyed) != 1) {
        printf("FAIL: pending %d, destroyed %d\n", atomic_load(&pending_after_free),
               atomic_load(&destroyed));
        return 1;
    }
    puts("PASS");
    return 0;
}
