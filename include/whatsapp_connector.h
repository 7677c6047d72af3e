/*
 * whatsapp_connector.h: C API of whatsapp-connector, which connects an application to a WhatsApp
 * Business Account over Meta's WhatsApp Business Cloud API (Graph API).
 *
 * NAMING: every symbol starts with wa_ (types wa_*, constants WA_*), except the seed's
 * whatsapp_error_t (WHATSAPP_ERR_*). Constructors end in _new, destructors in _free.
 *
 * RESULTS: every fallible function returns a wa_result (WA_OK = 0). Outputs are written only on
 * success. wa_result_text() gives a static text for a code; wa_last_error_message() gives the
 * detail of the last failed call on the calling thread (kept until the next failed call on that
 * thread; successful calls leave it). Nothing passed in can crash the library:
 * NULL pointers, invalid UTF-8 and malformed JSON are reported as result codes, and internal
 * panics are caught (WA_ERR_PANIC).
 *
 * NETWORK: Graph is reached over HTTPS with rustls; certificates are checked against the
 *   operating system's CA certificates (the ca-certificates package; SSL_CERT_FILE and
 *   SSL_CERT_DIR override). Without any, wa_client_new refuses an https Graph (WA_ERR_SYSTEM,
 *   the detail says why); a plain-http one (the emulator) still works. A certificate that fails
 *   verification ends the message at once (OTHER_HTTP, the text names the problem). The
 *   standard proxy variables (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY, also in lower case)
 *   apply as they do for curl, except that a Graph base URL on a loopback address (the
 *   emulator) is always reached directly.
 *
 * OWNERSHIP
 *   1. wa_options_new() gives the caller an options object; the caller frees it with
 *      wa_options_free(). wa_client_new() copies it, so it may be freed right after.
 *   2. wa_client_new() gives the caller a client; the caller frees it with wa_client_free().
 *   3. String arguments are borrowed for the duration of the call only; the library copies what
 *      it keeps. The callback table is copied by wa_client_new().
 *   4. Strings handed to callbacks are owned by the library and valid only during the callback.
 *   5. Static strings (wa_result_text, wa_whatsapp_error_name, wa_library_version) are never
 *      freed; wa_client_version() stays valid until wa_client_free().
 *   6. user_data stays the host's; destroy(user_data) tells it when the library is done with it.
 *
 * THREADS
 *   - The library owns its threads: a runtime (network I/O, timers) and, in thread mode, one
 *     dispatch thread. No host code ever runs on a runtime thread.
 *   - Functions taking a client may be called from any thread and concurrently, except
 *     wa_client_free(). None of them waits for the network.
 *   - Poll mode (default): callbacks run only inside wa_client_dispatch()/wa_client_wait(), on
 *     the thread calling it. Register wa_client_event_fd() for reading in the host's epoll/poll
 *     loop and call wa_client_dispatch() when it is readable: every callback then runs on the
 *     event-loop thread.
 *   - Thread mode: callbacks run on the client's dispatch thread.
 *   - In both modes callbacks of one client never run concurrently and never run inside the
 *     call that caused them (a result is never delivered from inside wa_client_send_message).
 *
 * CALLBACKS
 *   - user_data is the first argument of every callback; a NULL function pointer means "not
 *     interested".
 *   - Every message accepted by wa_client_send_message() (WA_OK) gets exactly one send_result;
 *     a refused one (any other code) gets none.
 *   - Calling the API from inside a callback is allowed (send, close, set_config, free), except
 *     wa_client_dispatch()/wa_client_wait() on the same client (WA_ERR_INVALID_STATE).
 *   - close_complete is the last callback; destroy(user_data) is called exactly once, after the
 *     last callback, from wa_client_free(). Callbacks must not let exceptions or longjmp cross
 *     into the library.
 *
 * INBOUND MAPPING (recv_message: msg / type / refers_to_id)
 *   text                      body                          "text"         context.id
 *   image audio video         caption or ""                 the kind       context.id
 *     document sticker        (recv_media(sender, channel, wamid, media id, mime) comes first)
 *   reaction                  emoji ("" = removed)          "reaction"     reacted-to message id
 *   location                  JSON of the location object   "location"     context.id
 *   contacts                  JSON of the contacts array    "contact"      context.id
 *   interactive button/list   the reply's title             "interactive"  context.id
 *   interactive nfm_reply     the Flow's response_json      "interactive"  context.id
 *   interactive, other type   JSON of the interactive object "interactive" context.id
 *   button (template reply)   the button text               "button"       context.id
 *   anything else             JSON of the whole message     as Meta names it
 *     (also an interactive message without its object)   refers_to_id: context.id, or the
 *                                                        original message id (edit, revoke)
 *   status                    sent|delivered|read|played, or "failed (#code) title: details";
 *                             type "status", id = the sent message's wamid, tel = recipient
 *                             (for a message sent to a group: the participant whose receipt
 *                             it is), refers_to_id = biz_opaque_callback_data (the send's
 *                             callback_info)
 *   tel = the sender's phone number, else its business-scoped user id; channel = the phone
 *   number id. raw_change receives every change as received, before its mapped callbacks.
 *   Errors of a whole change (value-level "errors": account or app problems such as a rate
 *   limit, tied to no message) are logged as warnings and reach raw_change only.
 *   Repeats (Meta delivers at least once) are dropped: messages by id, statuses by id, status
 *   and participant, other changes by their account, time and content; a message without an
 *   id is always delivered. After wa_client_close() POSTs are answered 503 without callbacks
 *   (Meta delivers them again later).
 *
 * ONBOARDING: a wa_onboarding belongs to a client; its callbacks come through the client's
 *   event fd / dispatch thread like the client's own. Free onboardings before their client
 *   (freeing the client ends them: their destroy is called).
 *
 * SHUTDOWN ORDER
 *   1. Call wa_client_close(client). New sends return WA_ERR_CLOSED.
 *   2. Keep dispatching (poll mode). Requests on the wire get up to the drain time to finish;
 *      every other pending message gets a WHATSAPP_ERR_CLOSING result.
 *   3. close_complete(user_data) arrives as the last callback.
 *   4. Call wa_client_free(client), from inside close_complete or after it. It joins the
 *      client's threads and then calls destroy(user_data).
 *   5. Remove the event fd from the host's loop before or at step 4; it is closed by the free.
 *   Calling wa_client_free() without steps 1-3 closes at once and discards undelivered results
 *   (only destroy is called).
 */


#ifndef WHATSAPP_CONNECTOR_H
#define WHATSAPP_CONNECTOR_H

/* Generated by cbindgen from the Rust sources. Do not edit: run
   `WA_UPDATE_HEADER=1 cargo test --test header` after changing the C surface. */

#include <stddef.h>
#include <stdint.h>

// Result of every fallible C API call. Numbers are stable and never reused.
enum wa_result
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  WA_OK = 0,
  // A required pointer argument was NULL.
  WA_ERR_NULL_ARGUMENT = 1,
  // A string argument was not valid UTF-8.
  WA_ERR_INVALID_UTF8 = 2,
  // The message JSON did not parse.
  WA_ERR_INVALID_JSON = 3,
  // An argument or a field of the message is missing or malformed.
  WA_ERR_INVALID_ARGUMENT = 4,
  // The message type is not a Cloud API type nor a known alias.
  WA_ERR_UNKNOWN_TYPE = 5,
  // The message (or a field of it) is over a size limit.
  WA_ERR_TOO_LARGE = 6,
  // The client is closed (or closing).
  WA_ERR_CLOSED = 7,
  // The outbox is full (see `wa_options_set_outbox_capacity`).
  WA_ERR_QUEUE_FULL = 8,
  // An internal error was caught at the boundary; the call had no effect.
  WA_ERR_PANIC = 9,
  // The call is not allowed in this state (e.g. dispatch from inside a callback, or the
  // event fd in thread mode).
  WA_ERR_INVALID_STATE = 10,
  // The operating system refused a resource (thread, eventfd, ...).
  WA_ERR_SYSTEM = 11,
  // The output buffer was too small: the text was truncated, or nothing was written (see the
  // function).
  WA_ERR_BUFFER_TOO_SMALL = 12,
  // The durable outbox could not be opened or written (missing directory, read-only,
  // corrupt, locked by another client, newer schema).
  WA_ERR_STORAGE = 13,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum wa_result wa_result;
#else
typedef uint32_t wa_result;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// The seed's error code of a send result. Values 0..7 are fixed by the seed interface.
enum whatsapp_error_t
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  WHATSAPP_ERR_OK = 0,
  // No token was set (SetConfig) within the token hold time.
  WHATSAPP_ERR_MISSING_TOKEN = 1,
  // No Graph API version is configured.
  WHATSAPP_ERR_MISSING_VERSION = 2,
  // Graph does not know the object (HTTP 404, or code 100 with an unknown object / code 33).
  WHATSAPP_ERR_NOT_FOUND = 3,
  // Graph refused the request (other 4xx request errors).
  WHATSAPP_ERR_BAD_REQUEST = 4,
  // HTTP 401/403 or Graph codes 0, 10, 190, 200-299: the token is invalid or lacks permission.
  WHATSAPP_ERR_AUTHENTICATION_FAILED = 5,
  // Anything else, including network failure after the last retry.
  WHATSAPP_ERR_OTHER_HTTP = 6,
  // The client was closed before the message reached a final result.
  WHATSAPP_ERR_CLOSING = 7,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum whatsapp_error_t whatsapp_error_t;
#else
typedef uint32_t whatsapp_error_t;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// Severity of log lines delivered to the log callback (`wa_options_set_log_level`).
enum wa_log_level
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  WA_LOG_OFF = 0,
  WA_LOG_ERROR = 1,
  WA_LOG_WARN = 2,
  // Default.
  WA_LOG_INFO = 3,
  WA_LOG_DEBUG = 4,
  WA_LOG_TRACE = 5,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum wa_log_level wa_log_level;
#else
typedef uint32_t wa_log_level;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// How callbacks reach the host (`wa_options_set_dispatch_mode`).
enum wa_dispatch_mode
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  // Default. Callbacks run only inside `wa_client_dispatch`/`wa_client_wait`, on the thread
  // that calls them; `wa_client_event_fd` is readable while events are pending.
  WA_DISPATCH_POLL = 0,
  // Callbacks run on a thread owned by the client. An event that arrives alone is delivered
  // at once; while events stream in the thread lets them gather between batches, up to 4 ms
  // or until 32 are pending (`wa_options_set_dispatch_batching_us`), so a callback may run
  // up to that much later in exchange for far fewer wake-ups.
  WA_DISPATCH_THREAD = 1,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum wa_dispatch_mode wa_dispatch_mode;
#else
typedef uint32_t wa_dispatch_mode;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// The stage an onboarding reached (the seed's `onboardingStatus`).
enum wa_onboarding_status
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  WA_ONBOARDING_UNSTARTED = 0,
  // Exchanging the Embedded Signup code for a business token.
  WA_ONBOARDING_FETCH_TOKEN = 1,
  // Subscribing the app to the WABA with the webhook override (Meta verifies the callback
  // URI against the client's listener).
  WA_ONBOARDING_REGISTER_WEBHOOKS = 2,
  // Registering the phone number with its two-step PIN.
  WA_ONBOARDING_REGISTER_PHONE = 3,
  WA_ONBOARDING_FINISHED = 4,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum wa_onboarding_status wa_onboarding_status;
#else
typedef uint32_t wa_onboarding_status;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// A client. Create with `wa_client_new`, end with `wa_client_close`, wait for close-complete,
// then `wa_client_free`. All functions taking a `wa_client*` may be called from any thread,
// concurrently, except `wa_client_free` (once, when no other call on it is running).
typedef struct wa_client wa_client;

// An onboarding object. Create with `wa_onboarding_new`, free with `wa_onboarding_free`
// (after its close-complete, or any time: freeing drops runs still going without a result).
typedef struct wa_onboarding wa_onboarding;

// Settings for a client. Owned by the caller; free with `wa_options_free`. Not thread-safe:
// use one options object from one thread at a time. `wa_client_new` copies it.
typedef struct wa_options wa_options;

// The host's callbacks. Every callback receives `user_data` first; a NULL function pointer means
// "not interested". Strings passed to callbacks are valid only during the call.
typedef struct {
  void *user_data;
  // The client finished closing. Always the last callback; the client may be freed from
  // inside it.
  void (*close_complete)(void *user_data);
  // The final result of one accepted message (exactly one per message). `request_ctx` is
  // the pointer given to `wa_client_send_message`; `callback_info` is the caller's text
  // (NULL if none was given); `content` is the message id ("wamid...") on success and the
  // error text otherwise.
  void (*send_result)(void *user_data,
                      void *request_ctx,
                      whatsapp_error_t error,
                      const char *callback_info,
                      const char *content);
  // An inbound message or status (the seed's `WhatsAppClientRecvMessage`). `type` is the
  // message kind ("text", "image", "reaction", "location", "contact", "interactive",
  // "button", "status", or a type as Meta named it); `msg`, `id` and `refers_to_id` per the
  // INBOUND MAPPING table at the top of this header. `refers_to_id` may be NULL.
  void (*recv_message)(void *user_data,
                       const char *msg,
                       const char *tel,
                       const char *channel,
                       const char *type,
                       const char *id,
                       const char *refers_to_id);
  // An inbound image, audio, video, document or sticker (the seed's
  // `WhatsAppClientRecvMedia`), delivered just before the `recv_message` of the same message.
  void (*recv_media)(void *user_data,
                     const char *sender,
                     const char *channel,
                     const char *wamid,
                     const char *media_id,
                     const char *mime_type);
  // Every webhook change as received: `field` (e.g. "messages", "account_update") and its
  // `value` object as compact JSON, for what the seed's callbacks cannot carry (edits,
  // deletes, system messages, account and template updates). Before the change's mapped
  // callbacks.
  void (*raw_change)(void *user_data,
                     const char *field,
                     const char *value_json);
  // A log line of this client (never containing a token or secret).
  void (*log)(void *user_data,
              wa_log_level level,
              const char *text);
  // Called exactly once, after the last callback, when the client is freed. Not called when
  // `wa_client_new` fails.
  void (*destroy)(void *user_data);
} wa_client_callbacks;

// The host's onboarding callbacks; `user_data` first, NULL = not interested. They run on the
// client's dispatching thread (poll mode: inside `wa_client_dispatch`; thread mode: the
// client's thread).
typedef struct {
  void *user_data;
  // The onboarding finished closing; its last callback.
  void (*close_complete)(void *user_data);
  // One per `wa_onboarding_onboard`: `callback_info` is its `src`; `status` is
  // `WA_ONBOARDING_FINISHED` on success, else the stage that failed (or was running when
  // the onboarding was closed); `token` is the business token whenever the code exchange
  // succeeded (or the token a resumed run used), else NULL; `error` says what failed (NULL on
  // success).
  void (*onboard_result)(void *user_data,
                         void *request_ctx,
                         const char *callback_info,
                         uint32_t status,
                         const char *token,
                         const char *error);
  // Exactly once, after the last callback: when the onboarding (or its client) is freed.
  void (*destroy)(void *user_data);
} wa_onboarding_callbacks;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// Copies the detail of the last failed call on the calling thread (kept until the next failed
// call: successful calls leave it) into `buf` (NUL-terminated, truncated to fit) and stores the full length, without the NUL, in `*out_len`. Returns
// `WA_ERR_BUFFER_TOO_SMALL` when the text was truncated. An empty text means no detail.
// `buf` NULL with `len` 0 asks for the length only (`*out_len`, `WA_ERR_BUFFER_TOO_SMALL`).
wa_result wa_last_error_message(char *buf,
                                size_t len,
                                size_t *out_len);

// The library's version, e.g. "0.1.0" (static; never freed).
const char *wa_library_version(void);

// Creates a client and starts its runtime thread. `options` may be NULL (defaults and
// environment). `callbacks` is copied; it may be NULL (no callbacks). On success `*out` owns
// the client (free with `wa_client_free`); on failure nothing is written and `destroy` is not
// called.
wa_result wa_client_new(const wa_options *options,
                        const wa_client_callbacks *callbacks,
                        wa_client **out);

// Sets the access token (Bearer for Graph) and the app secret (verifies webhooks). Either may
// be "" (no token: sends are held for the token hold time; no secret: webhook POSTs are
// refused with 503). The token travels in an HTTP header: visible ASCII only (a trailing
// newline read from a file is refused with `WA_ERR_INVALID_ARGUMENT`). Messages held for lack of a token go out once one is set. `app_secret`
// NULL keeps the current app secret (to renew only the token).
wa_result wa_client_set_config(wa_client *client,
                               const char *token,
                               const char *app_secret);

// Sets the verify token that Meta's webhook verification request must present.
wa_result wa_client_set_webhook_token(wa_client *client,
                                      const char *token);

// The configured Graph API version, e.g. "v26.0" ("" when none is configured, or for NULL).
// The string belongs to the client and stays valid until `wa_client_free`.
const char *wa_client_version(const wa_client *client);

// Queues a message for `remote_num` (phone number with country code, or a business-scoped
// user id) from `channel` (the sending phone number id). A leading `00` (the international
// call prefix) is sent as `+`; a number without either is taken by Graph as local to the
// business number's country.
//
// `type` is a Cloud API type (text, image, audio, video, document, sticker, location,
// contacts, interactive, template, reaction) or an alias: "contact" (one contact object or an
// array, sent as contacts) or "media" (the object's "type" names the media kind). `message_json`
// is the content object for the type, e.g. `{"body":"hi","preview_url":false}` for text (for
// text a bare JSON string is also taken as the body). `callback_info` (may be NULL) comes back
// with the result and, up to 512 bytes, as `biz_opaque_callback_data` in status webhooks.
// `refers_to_id` (may be NULL) makes the message a reply to that message id. `request_ctx` is
// returned with the result.
//
// Returns WA_OK when the message was accepted: exactly one `send_result` callback follows.
// Invalid input returns an error at once (`wa_last_error_message` says why); no request is
// made and no callback follows. `WA_ERR_CLOSED` after `wa_client_close`; `WA_ERR_QUEUE_FULL`
// when the outbox is full; `WA_ERR_STORAGE` when the durable outbox could not store it.
wa_result wa_client_send_message(wa_client *client,
                                 const char *message_json,
                                 const char *remote_num,
                                 const char *type,
                                 const char *channel,
                                 const char *callback_info,
                                 const char *refers_to_id,
                                 void *request_ctx);

// Starts closing: new sends return `WA_ERR_CLOSED`, requests on the wire get up to the drain
// time to finish, every other accepted message gets a `WHATSAPP_ERR_CLOSING` result, then
// `close_complete` is called as the last callback. Returns at once; calling it again is a
// no-op returning WA_OK. May be called from inside a callback.
wa_result wa_client_close(wa_client *client);

// Frees the client: stops and joins every thread it started, then calls `destroy`. Call it
// after `close_complete` (it may be called from inside `close_complete`). Called earlier, it
// closes at once and discards the results not yet dispatched (no further callbacks except
// `destroy`). Called from inside one of the client's callbacks it returns at once, and the
// stopping and `destroy` follow when that callback returns (thread mode: on the dispatch
// thread, which then ends; it is not joined, so a host that unloads the library or exits
// right away should wait for `destroy`). NULL is ignored. Must not run concurrently with
// another call on the same client.
void wa_client_free(wa_client *client);

// Poll mode: a file descriptor that is readable while events are pending. Register it with
// the host's poll/epoll loop for reading and call `wa_client_dispatch` when it is readable. Do
// not read, write or close it; it stays valid until `wa_client_free`.
// `WA_ERR_INVALID_STATE` in thread mode.
wa_result wa_client_event_fd(const wa_client *client,
                             int *out_fd);

// Poll mode: runs the callbacks of every pending event on the calling thread and returns
// without waiting. `out_count` (may be NULL) receives how many callbacks-worth of events ran.
// Not allowed from inside a callback of the same client, nor in thread mode
// (`WA_ERR_INVALID_STATE`).
wa_result wa_client_dispatch(wa_client *client,
                             size_t *out_count);

// Poll mode: waits up to `timeout_ms` (negative: no limit) for events, then dispatches them
// like `wa_client_dispatch` (the same refusals). For simple programs without an event loop.
wa_result wa_client_wait(wa_client *client,
                         int32_t timeout_ms,
                         size_t *out_count);

// Queues `task(arg)` to run where this client's callbacks run (its dispatch thread, or inside
// `wa_client_dispatch`), after the callbacks already queued and never concurrently with them or
// inside this call. For host code that must run in sequence with the callbacks, such as
// reporting a refused call through the same callback a result would use. Accepted until
// `close_complete` is queued (the task then runs before it); `WA_ERR_CLOSED` after that (the
// task will not run). A task not yet run when the client is freed is dropped without running.
// Any thread.
wa_result wa_client_post(wa_client *client,
                         void (*task)(void *arg),
                         void *arg);

// Requests (messages, media requests) accepted by this client whose `send_result` callback has
// not run yet: a result waiting to be dispatched counts (0 for NULL).
size_t wa_client_pending(const wa_client *client);

// Events waiting to be dispatched: results, inbound messages, log lines and other callbacks
// not yet run (0 for NULL). Read without a lock: events may arrive at any moment. A poll-mode
// host with `wa_options_set_dispatch_max_events` learns from it whether a dispatch left some.
size_t wa_client_events_pending(const wa_client *client);

// The port the built-in webhook listener is bound to (useful after listening on port 0).
// `WA_ERR_INVALID_STATE` when no listen address was configured.
wa_result wa_client_webhook_port(const wa_client *client,
                                 uint16_t *out_port);

// Host-fed webhook entry, for hosts that run their own web server: pass each request to the
// webhook URL in and answer with what comes out. Same validation and callbacks as the built-in
// listener.
//
// `method` is "GET" or "POST"; `path_and_query` is the request target (only the part after
// `?` is used: the host routes the path); `signature` is the `X-Hub-Signature-256` header value
// (NULL when absent); `body`/`body_len` are the raw body bytes exactly as received (`body` may
// be NULL when `body_len` is 0). On WA_OK, `*out_status` is the HTTP status to answer,
// `*out_content_type` (may be NULL) a static content type, and the body is copied into
// `out_body` (`out_body_cap` bytes, NUL-terminated) with its length in `*out_body_len` (may be
// NULL). `WA_ERR_BUFFER_TOO_SMALL` when the body does not fit (`*out_body_len` then holds the
// body's length, so `out_body_cap` must be at least that plus one for the NUL; nothing else is
// written, but a POST was processed: calling again answers it as a redelivery). 256 bytes always suffice except for the echo of a verification challenge,
// which is as long as the challenge Meta sent.
wa_result wa_client_webhook_request(wa_client *client,
                                    const char *method,
                                    const char *path_and_query,
                                    const char *signature,
                                    const uint8_t *body,
                                    size_t body_len,
                                    uint16_t *out_status,
                                    const char **out_content_type,
                                    char *out_body,
                                    size_t out_body_cap,
                                    size_t *out_body_len);

// The seed's `RequestMedia`: fetches media `media_id` from WhatsApp (`GET /{media-id}`, then
// the download URL with the token) and POSTs the bytes to `destination_url` with
// `Content-Type` = `mime_type` (or Graph's type when NULL or "") and `Content-Length`. Streamed
// end to end; the SHA-256 Graph announces is verified on the way (a mismatch fails the request
// and aborts the upload). The token is only sent to the Graph host and allowed media hosts.
//
// Result: one `send_result` with `callback_info` = the media id and `content` = the
// destination's HTTP status (e.g. "200"), or on failure the error text with the error of the
// failing stage (unknown media: NOT_FOUND; token: AUTHENTICATION_FAILED; the destination's
// non-2xx answer, a hash mismatch, a transfer failure: OTHER_HTTP).
wa_result wa_client_request_media(wa_client *client,
                                  const char *destination_url,
                                  const char *media_id,
                                  const char *mime_type,
                                  void *request_ctx);

// Downloads media `media_id` into the file `path`: written to a new temporary file
// `.<file name>.<pid>.<n>.part` in the same directory, renamed over `path` when complete and
// verified, removed on failure. For hosts that serve inbound media from their own web server.
// Result: one `send_result` with `callback_info` = the media id and `content` = the media's
// MIME type, or the error text.
wa_result wa_client_download_media(wa_client *client,
                                   const char *media_id,
                                   const char *path,
                                   void *request_ctx);

// Uploads the file at `path` as media of `mime_type` for phone number `channel`
// (`POST /{channel}/media`, multipart), to be sent with `wa_client_send_message` type "image"
// etc. and `{"id":"<media id>"}`. The type and size are checked against WhatsApp's limits
// first (`WA_ERR_INVALID_ARGUMENT` for a type WhatsApp does not take, `WA_ERR_TOO_LARGE` over
// its limit; nothing is sent then). Result: one `send_result` with `callback_info` = `path` and
// `content` = the new media id, or the error text.
wa_result wa_client_upload_media_file(wa_client *client,
                                      const char *channel,
                                      const char *path,
                                      const char *mime_type,
                                      void *request_ctx);

// Like `wa_client_upload_media_file` for `len` bytes at `data` (copied before returning),
// sent with file name `filename`. `callback_info` of the result is `filename`.
wa_result wa_client_upload_media_buffer(wa_client *client,
                                        const char *channel,
                                        const uint8_t *data,
                                        size_t len,
                                        const char *mime_type,
                                        const char *filename,
                                        void *request_ctx);

// Creates an onboarding object for `client`: its runs use the client's Graph settings, app id
// (`wa_options_set_app_id` / `WA_APP_ID`) and app secret (`wa_client_set_config`), set the new
// token and the webhook verify token on the client, and rely on the client's webhook listener
// to answer Meta's verification of the callback URI. `callbacks` is copied (NULL = none).
wa_result wa_onboarding_new(wa_client *client,
                            const wa_onboarding_callbacks *callbacks,
                            wa_onboarding **out);

// The seed's `Onboard(context, src, version, code, webhookToken, wabaID, callbackUri, phoneID,
// phonePin)`, with where to start: `start_status` is `WA_ONBOARDING_FETCH_TOKEN` for a full
// run (`code` required), or `WA_ONBOARDING_REGISTER_WEBHOOKS` / `WA_ONBOARDING_REGISTER_PHONE`
// to resume a run that failed there, with the token the client already has (`code` may then be
// NULL). `version` may be NULL or "" (the client's). `callback_uri` may be NULL or ""
// (subscribe without override; `webhook_token` is needed with one). `webhook_token`, `waba_id`
// and `callback_uri` may be NULL (= "") when starting at REGISTER_PHONE, which does not use
// them. Stages: FETCH_TOKEN (`GET /oauth/access_token`; the token is then set on the client),
// REGISTER_WEBHOOKS (the client's webhook token is set to `webhook_token` unless that is
// empty, then `POST /{waba}/subscribed_apps`), REGISTER_PHONE (`POST /{phone}/register` with
// the PIN).
// Exactly one `onboard_result` follows an accepted call, before the onboarding's and the
// client's `close_complete`; bad arguments are refused at once, and `WA_ERR_CLOSED` once the
// onboarding or its client was closed.
wa_result wa_onboarding_onboard(wa_onboarding *onboarding,
                                void *request_ctx,
                                const char *src,
                                const char *version,
                                const char *code,
                                const char *webhook_token,
                                const char *waba_id,
                                const char *callback_uri,
                                const char *phone_id,
                                const char *phone_pin,
                                uint32_t start_status);

// Closes the onboarding: runs still going end with their `onboard_result` (the stage reached),
// then `close_complete`. Calling it again is a no-op (`WA_OK`, no second `close_complete`).
// `WA_ERR_CLOSED` (and no callbacks) once the client is closed.
wa_result wa_onboarding_close(wa_onboarding *onboarding);

// Frees the onboarding and calls its `destroy` (after its current callback, when called from
// inside one). Runs still going are dropped without a result. NULL is ignored.
void wa_onboarding_free(wa_onboarding *onboarding);

// Creates an options object with every setting unset (defaults apply). Free it with
// `wa_options_free`.
wa_result wa_options_new(wa_options **out);

// Frees an options object. NULL is ignored.
void wa_options_free(wa_options *options);

// Whether the `WA_GRAPH_BASE_URL`, `WA_API_VERSION`, `WA_APP_ID` and `WA_WEBHOOK_LISTEN`
// environment variables fill the settings not set here (default 1: they do, below the
// setters and above the defaults). 0: this client's settings come from these options alone,
// whatever the process environment holds.
wa_result wa_options_set_use_environment(wa_options *options,
                                         uint32_t use_environment);

// Graph base URL, scheme://host[:port] (default `https://graph.facebook.com`; the emulator's
// address in tests). `WA_ERR_INVALID_ARGUMENT` when it has a path, query or credentials.
// Environment: `WA_GRAPH_BASE_URL`.
wa_result wa_options_set_graph_base_url(wa_options *options,
                                        const char *url);

// Graph API version such as "v26.0" (default "v26.0"). The empty string means "no version":
// every send then ends with `WHATSAPP_ERR_MISSING_VERSION`. Environment: `WA_API_VERSION`.
wa_result wa_options_set_api_version(wa_options *options,
                                     const char *version);

// Meta app id (used by onboarding). Environment: `WA_APP_ID`.
wa_result wa_options_set_app_id(wa_options *options,
                                const char *app_id);

// Address for the built-in webhook listener, e.g. "127.0.0.1:8080"; port 0 picks a free port
// (read it with `wa_client_webhook_port`). Without one, no listener runs (use
// `wa_client_webhook_request` from the host's own web server). Environment: `WA_WEBHOOK_LISTEN`;
// "" means no listener even when that variable is set.
wa_result wa_options_set_webhook_listen(wa_options *options,
                                        const char *address);

// Timeout of one HTTP request in milliseconds (default 30000; must be > 0). Media transfers have
// their own idle bound (`wa_options_set_media_idle_timeout_ms`).
wa_result wa_options_set_request_timeout_ms(wa_options *options,
                                            uint32_t timeout_ms);

// A media transfer (upload, download, forward) may take as long as it needs while it makes
// progress: it fails once nothing moved for `timeout_ms` (default 120000; must be > 0).
// Progress is seen when the connection takes data, and the kernel's send buffer may take a few
// MB at once: on a slow link the time between two takes is that buffer's drain time, so lower
// this only for fast links (the default allows a 4 MB buffer down to about 270 kbit/s).
wa_result wa_options_set_media_idle_timeout_ms(wa_options *options,
                                               uint32_t timeout_ms);

// Retry limits for transient failures: at most `max_attempts` attempts per message (first
// included; default 5; 1 = no retry of other failures), no retry later than `max_age_ms` after
// the message was accepted (default 300000), exponential backoff from `backoff_initial_ms`
// (default 500) up to `backoff_max_ms` (default 30000) with jitter. A `Retry-After` from Graph
// is honoured. Refusals for Graph's rate limits (130429 throughput, 131056 pair rate) do not
// count as attempts, also with `max_attempts` 1: only `max_age_ms` bounds them. A 130429
// pauses the whole phone number for its Retry-After, at most 10 s, then sends slower.
wa_result wa_options_set_retry(wa_options *options,
                               uint32_t max_attempts,
                               uint32_t max_age_ms,
                               uint32_t backoff_initial_ms,
                               uint32_t backoff_max_ms);

// Most requests (messages, media requests) accepted whose `send_result` callback has not run
// yet (default 100000); beyond it `send_message` returns `WA_ERR_QUEUE_FULL`. A result
// waiting to be dispatched still holds its place, so a host that stops dispatching is
// refused rather than results piling up in memory. 0 is refused (`WA_ERR_INVALID_ARGUMENT`).
wa_result wa_options_set_outbox_capacity(wa_options *options,
                                         size_t capacity);

// Sends per second per channel (phone number id), default 80 (Meta's default throughput);
// 0 = unlimited. When Graph answers 130429 (the number's throughput is lower), the channel
// pauses (for the `Retry-After`, else a second), then sends a little below what Graph accepted
// in the last second, recovering gradually towards this rate.
wa_result wa_options_set_channel_rate(wa_options *options,
                                      uint32_t messages_per_second);

// Pause before retrying a recipient after Graph's pair-rate error 131056, and the spacing of
// that recipient's next messages for a while after it (default 6000 ms, Meta's pair rate).
wa_result wa_options_set_pair_rate_backoff_ms(wa_options *options,
                                              uint32_t backoff_ms);

// How long messages sent before a token is set wait for one (default 300000 ms); after it
// they end with `WHATSAPP_ERR_MISSING_TOKEN`.
wa_result wa_options_set_token_hold_ms(wa_options *options,
                                       uint32_t hold_ms);

// How long `wa_client_close` lets requests already on the wire finish (default 5000 ms).
wa_result wa_options_set_drain_timeout_ms(wa_options *options,
                                          uint32_t drain_ms);

// Requests on the wire at once over all recipients (default 256; must be > 0).
wa_result wa_options_set_max_in_flight(wa_options *options,
                                       uint32_t max_in_flight);

// Media requests (`wa_client_request_media`, `wa_client_download_media`, uploads) transferring
// at once (default 16; must be > 0); further ones wait their turn in acceptance order.
wa_result wa_options_set_max_media_in_flight(wa_options *options,
                                             uint32_t max_media_in_flight);

// Runtime worker threads of the client (default 1, at most 64).
wa_result wa_options_set_worker_threads(wa_options *options,
                                        uint32_t threads);

// `mode` is a `wa_dispatch_mode` value; default `WA_DISPATCH_POLL`.
wa_result wa_options_set_dispatch_mode(wa_options *options,
                                       uint32_t mode);

// Thread mode: while events stream in (one arrives within this time of the previous batch),
// the dispatch thread waits up to `batching_us` microseconds, or until 32 events are pending,
// before running the next batch of callbacks; an event after a quiet period runs at once.
// Fewer wake-ups of the dispatch thread mean less CPU per event under load. 0 runs every
// event as soon as it arrives. Default 4000 (4 ms); at most 1 000 000. Poll mode ignores it.
wa_result wa_options_set_dispatch_batching_us(wa_options *options,
                                              uint32_t batching_us);

// Poll mode: the most events one `wa_client_dispatch` (or `wa_client_wait`) runs; the rest
// wait, in order, for the next call, with the event fd still readable. A host whose loop
// serves other sockets too bounds the time one dispatch may take under a burst (a backlog of
// webhooks can hold tens of thousands of events). 0 (the default): every pending event, and
// those arriving meanwhile for a few rounds. Thread mode ignores it.
wa_result wa_options_set_dispatch_max_events(wa_options *options,
                                             size_t max_events);

// `level` is a `wa_log_level` value: lines up to that severity reach the log callback
// (default `WA_LOG_INFO`).
wa_result wa_options_set_log_level(wa_options *options,
                                   uint32_t level);

// Path served by the built-in webhook listener (default "/webhook"); must start with '/'.
wa_result wa_options_set_webhook_path(wa_options *options,
                                      const char *path);

// Largest webhook body accepted, in bytes (default 1 MiB); larger ones are answered 413. 0 is
// refused (`WA_ERR_INVALID_ARGUMENT`).
wa_result wa_options_set_webhook_max_body(wa_options *options,
                                          size_t max_bytes);

// The built-in listener closes a connection that moved no byte either way for `timeout_ms`
// (checked every 10 s at most, so a little later): peers that vanished, idle kept-alive
// connections, stalled requests, answers nobody reads. Default 75000 (longer than the 60 s
// idle timeouts of common reverse proxies, which should close first); 0 never closes an idle
// connection and sets no head deadline; at most 86400000 (a day). A request head must arrive
// within 30 s of its first bytes (or this time, if shorter), else the connection is closed: a
// head trickled a byte at a time would hold its slot forever. A webhook's body must arrive
// within 30 s of its head (or this time, if shorter; also with 0), else 408.
wa_result wa_options_set_webhook_idle_timeout_ms(wa_options *options,
                                                 uint32_t timeout_ms);

// The most connections the built-in listener holds at once (default 256; 0 = no limit; at
// most 1000000). Further connections wait in the kernel's accept queue until one closes; a
// warning says the limit was reached (at most one a minute). The listener shares the
// process's file descriptors: the limit keeps a flood of connections from exhausting the
// host's.
wa_result wa_options_set_webhook_max_connections(wa_options *options,
                                                 uint32_t max_connections);

// How many inbound message and status ids are remembered to drop Meta's redeliveries
// (default 100000, at most 16777215; 0 disables dedupe). Memory: up to about 40 bytes per id.
wa_result wa_options_set_dedupe_capacity(wa_options *options,
                                         size_t capacity);

// Callbacks waiting for the host (queued and not yet dispatched) beyond which webhook POSTs are
// answered 503 without callbacks, so that a host that stopped dispatching does not make memory
// grow without bound; Meta delivers them again later (default 50000, 0 = no limit, at most
// 10000000). A warning says so at most once a minute.
wa_result wa_options_set_webhook_max_backlog(wa_options *options,
                                             uint32_t max_backlog);

// Adds a phone number id to the webhook allow-list. With a non-empty list, changes for other
// phone numbers, and message changes naming none, are answered 200 and dropped with a log line;
// changes of the whole account (no phone number id) still reach raw_change. Default: every
// number.
wa_result wa_options_add_allowed_channel(wa_options *options,
                                         const char *channel);

// Adds a host that may receive the access token with a media download (besides the Graph
// host and the default `lookaside.fbsbx.com`). Downloads from any other host fail without
// sending the token. A bare host name (no scheme, port, path or credentials), else
// `WA_ERR_INVALID_ARGUMENT`.
wa_result wa_options_add_media_host(wa_options *options,
                                    const char *host);

// Largest media transferred by RequestMedia, downloads and getMedia, in bytes (default
// 128 MiB, above WhatsApp's 100 MB document limit). 0 is refused (`WA_ERR_INVALID_ARGUMENT`).
wa_result wa_options_set_media_max_bytes(wa_options *options,
                                         uint64_t max_bytes);

// The access token callers of the listener's `GET /client/getMedia?id=<media id>` must present
// (`Authorization: Bearer <token>` or `&access_token=<token>`). Without one the endpoint
// answers 401 to everyone (it must not be an open proxy to the business's media). At least 8
// characters, else `WA_ERR_INVALID_ARGUMENT`.
wa_result wa_options_set_media_access_token(wa_options *options,
                                            const char *token);

// Makes the outbox durable: every accepted message is written to the SQLite file at `path`
// (created if missing; its directory must exist) before `wa_client_send_message` returns
// WA_OK, and removed once its `send_result` callback has run. A client created on an
// existing store first resends the messages left in it, in their original order; their
// results carry a NULL request context and the stored callback_info. The store also keeps the
// webhook dedupe window, so Meta's redeliveries after a restart are recognised. One client at a
// time may use a store. `wa_client_new` fails with WA_ERR_STORAGE when the store cannot be
// used (also when the file is another application's SQLite database, which is left
// unchanged); it never falls back to memory. Default: in memory.
wa_result wa_options_set_outbox_path(wa_options *options,
                                     const char *path);

// A static, human-readable text for a `wa_result` value (never NULL, never freed).
const char *wa_result_text(uint32_t result);

// A static name for a `whatsapp_error_t` value, e.g. "WHATSAPP_ERR_NOT_FOUND".
const char *wa_whatsapp_error_name(uint32_t error);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* WHATSAPP_CONNECTOR_H */
