/*
 * whatsapp_connector.hpp: header-only C++17 layer of whatsapp-connector.
 *
 * It recreates, on top of the C API (whatsapp_connector.h, whose preamble is the contract), the
 * classes the C++ hosts know from the innovaphone SDK's IWhatsAppClient interface:
 *
 *   IWhatsAppClient * client = IWhatsAppClient::Create(iomux, user, tcp, tls, log, dns);
 *   client->SetConfig(token, appSecret);
 *   client->SendMessage(context, "{\"body\":\"hi\"}", "+4915112345678", "text", phoneNumberId);
 *   ...  context->WhatsAppClientSendMessageResult(client, error, callback_info, content)
 *   client->Close();  ... user->WhatsAppClientCloseComplete(client) ...  delete client;
 *
 * and IWhatsAppOnboarding / UWhatsAppOnboarding (Embedded Signup onboarding through a client of
 * the process; documented at their declarations, after the client's classes).
 *
 * SDK TYPES. IIoMux, ISocketProvider, IInstanceLog, IDns, ISocketContext, IWebserverPlugin and
 * UIoContext are only forward-declared, so this header compiles inside an SDK host and in a plain
 * C++17 program alike. The socket providers, the DNS and the socket context are accepted and
 * unused: the library owns its networking (HTTPS through rustls, its own resolver).
 *
 * EVENT LOOP. Create() makes a poll-mode client: no callback ever runs on a library thread.
 * EventFd() is readable while something is to be delivered; call Dispatch() then, on the loop
 * thread: every U-callback runs inside Dispatch(), on the thread calling it, never inside the
 * call that caused it. Hosts with an SDK IIoMux include whatsapp_connector_iomux.hpp (after the
 * SDK headers), which registers the fd with IIoMux::FDAdd automatically and sends the library's
 * log lines to the IInstanceLog given to Create(). Programs without an SDK use wa::PollLoop.
 *
 * RESULTS. Every SendMessage() / RequestMedia() gets exactly one result callback, on the
 * `context` given to that call (on the Create() `user` when `context` is NULL). A call the
 * library refuses at once (malformed JSON, unknown type, closed client, ...) also gets one: it
 * is delivered by the next Dispatch() (poll mode; the event fd is woken for it; with
 * Options().DispatchMode(WA_DISPATCH_THREAD), on the library's dispatch thread like every
 * other callback, never inside the call; after CloseComplete a refused call gets none) with
 * WHATSAPP_ERR_CLOSING when the client is closed, WHATSAPP_ERR_OTHER_HTTP when a later call may
 * pass (outbox full, storage or system error) and WHATSAPP_ERR_BAD_REQUEST for bad arguments,
 * and the reason as `content`. TrySendMessage() returns the refusal code instead (no callback then).
 * Inbound messages (RecvMessage, RecvMedia, RawChange) and CloseComplete go to the `user` given
 * to Create(). One UWhatsAppClient may serve several clients: each callback names its client.
 *
 * LIFETIME. Close(), keep dispatching, WhatsAppClientCloseComplete() arrives as the last
 * callback, then `delete client` (inside CloseComplete or later). Deleting earlier is safe too:
 * the client closes at once and results not yet delivered are discarded (no further callbacks).
 * Deleting a client from inside any of its callbacks is allowed; in thread mode its stopping then
 * finishes on the library's dispatch thread after the callback returns, unjoined: before exiting
 * or unloading the library, delete the last client from another thread (that delete waits).
 *
 * EXCEPTIONS. A C++ exception must never unwind into the library (undefined behaviour). Every
 * callback trampoline is noexcept and catches everything a U-method throws; the exception is
 * reported through UWhatsAppClient::WhatsAppClientLog (level WA_LOG_ERROR) and, when the user
 * does not override that method and no IInstanceLog adapter is attached, on stderr.
 *
 * Seed fixes (evident typos in the SDK documentation page): Create's last parameter is
 * `ISocketContext * const socketContext` (the page drops the `*`); the json_io overload of
 * SendMessage takes the writer by reference (the page passes json_io, a 3072-entry table, by
 * value; call sites compile unchanged); IWhatsAppOnboarding::Create returns IWhatsAppOnboarding*
 * (the page says IWhatsAppClient*).
 */
#ifndef WHATSAPP_CONNECTOR_HPP
#define WHATSAPP_CONNECTOR_HPP

#include "whatsapp_connector.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

// The host SDK's types: forward declarations only (see SDK TYPES above).
class IIoMux;
class ISocketProvider;
class IInstanceLog;
class IDns;
class ISocketContext;
class IWebserverPlugin;
class UIoContext;

class IWhatsAppClient;
class UWhatsAppClient;
class IWhatsAppOnboarding;
class UWhatsAppOnboarding;

namespace wa {
class Options;
class PollLoop;

namespace detail {
// Set by the default body of UWhatsAppClient::WhatsAppClientLog: tells the exception reporter
// that the user has no log sink of its own (then the report also goes to stderr).
inline bool& default_log_called() noexcept
{
    thread_local bool called = false;
    return called;
}

// What a host adapter (whatsapp_connector_iomux.hpp) attaches to a client: it owns the event
// fd registration and receives the library's log lines.
class HostBinding {
public:
    virtual ~HostBinding() = default;
    virtual void Log(int level, const char* text) noexcept = 0;
};

using BindFn = HostBinding* (*)(IWhatsAppClient* client, IIoMux* iomux, IInstanceLog* log);

// Installed by whatsapp_connector_iomux.hpp when a host includes it; nullptr otherwise.
inline BindFn& bind_hook() noexcept
{
    static BindFn hook = nullptr;
    return hook;
}

// Writes one line to a host's IInstanceLog; installed by whatsapp_connector_iomux.hpp (used by
// IWhatsAppOnboarding, whose seed-shaped Create also receives an IInstanceLog).
using LogFn = void (*)(IInstanceLog* log, int level, const char* text);
inline LogFn& log_hook() noexcept
{
    static LogFn hook = nullptr;
    return hook;
}

// What an onboarding object needs from the implementation of its client (wa::ClientImpl).
class ClientServices {
public:
    // Runs `task` on the client's dispatching thread: in the next Dispatch() (poll mode; the
    // event fd is woken for it), before the library's pending callbacks, or after them when
    // `afterLibrary` (then after every callback the library had queued when Post was called),
    // unless `owner` expired by then. In thread mode on the library's dispatch thread, in
    // sequence with the callbacks (wa_client_post), never inside this call. False when nothing
    // was queued: in thread mode after the client's CloseComplete (its dispatch thread runs
    // nothing more). When true, the task may already have run (and deleted its owner).
    virtual bool Post(std::weak_ptr<void> owner, std::function<void()> task, bool afterLibrary) = 0;
    // Returns once no posted task runs on another thread (so an owner may be destroyed).
    virtual void Quiesce() noexcept = 0;
    // A line to the host's log of the client (IInstanceLog adapter); false when it has none.
    virtual bool HostLog(int level, const char* text) noexcept = 0;

protected:
    ~ClientServices() = default;
};

// The clients alive in this process, oldest first (IWhatsAppOnboarding's seed-shaped Create
// takes the newest). Inline variables: one registry per process, whatever the number of
// translation units including this header.
inline std::mutex client_registry_mutex;
inline std::vector<IWhatsAppClient*> client_registry;

inline void RegisterClient(IWhatsAppClient* client)
{
    std::lock_guard<std::mutex> lock(client_registry_mutex);
    client_registry.push_back(client);
}

inline void UnregisterClient(IWhatsAppClient* client) noexcept
{
    std::lock_guard<std::mutex> lock(client_registry_mutex);
    for (auto it = client_registry.begin(); it != client_registry.end(); ++it) {
        if (*it == client) {
            client_registry.erase(it);
            return;
        }
    }
}
} // namespace detail

// `text` as a JSON string, quotes included, for building message JSON around text the host
// did not write itself (an inbound message, a user's input): a quote or backslash in it would
// otherwise end the string early and could add fields to the message. For example:
//   client->SendMessage(ctx, ("{\"body\":" + wa::JsonString(text) + "}").c_str(), to, "text", channel);
// UTF-8 passes through unchanged; control characters are escaped.
inline std::string JsonString(const std::string& text)
{
    std::string out;
    out.reserve(text.size() + 2);
    out += '"';
    for (char ch : text) {
        const unsigned char c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
            if (c < 0x20) {
                char escaped[8];
                std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
                out += escaped;
            } else {
                out += ch;
            }
        }
    }
    out += '"';
    return out;
}

// The detail text of the last failed C call on this thread ("" when none).
inline std::string LastErrorMessage()
{
    char buffer[512];
    size_t length = 0;
    wa_result r = wa_last_error_message(buffer, sizeof buffer, &length);
    if (r == WA_ERR_BUFFER_TOO_SMALL) {
        std::string text(length + 1, '\0');
        wa_last_error_message(&text[0], text.size(), &length);
        text.resize(length);
        return text;
    }
    return r == WA_OK ? std::string(buffer) : std::string();
}

// The text of a wa_result code.
inline const char* ResultText(wa_result r) noexcept { return wa_result_text(static_cast<uint32_t>(r)); }

// The name of a whatsapp_error_t value, e.g. "WHATSAPP_ERR_NOT_FOUND".
inline const char* ErrorName(whatsapp_error_t e) noexcept { return wa_whatsapp_error_name(static_cast<uint32_t>(e)); }

// The library version, e.g. "0.1.0".
inline const char* LibraryVersion() noexcept { return wa_library_version(); }

// Explicit client settings for the second IWhatsAppClient::Create overload. Each setter maps to
// one wa_options_* function; unset settings fall back to the environment, then to defaults.
class Options {
public:
    Options& GraphBaseUrl(std::string url) { return Str(&wa_options_set_graph_base_url, std::move(url)); }
    Options& ApiVersion(std::string version) { return Str(&wa_options_set_api_version, std::move(version)); }
    Options& AppId(std::string id) { return Str(&wa_options_set_app_id, std::move(id)); }
    Options& WebhookListen(std::string address) { return Str(&wa_options_set_webhook_listen, std::move(address)); }
    // Poll mode: at most n events per Dispatch() (the rest wait, the fd stays readable); 0: all.
    Options& DispatchMaxEvents(size_t n) { return Size(&wa_options_set_dispatch_max_events, n); }
    // false: the WA_* environment variables are not read for this client.
    Options& UseEnvironment(bool use) { return U32(&wa_options_set_use_environment, use ? 1u : 0u); }
    Options& WebhookPath(std::string path) { return Str(&wa_options_set_webhook_path, std::move(path)); }
    Options& AllowChannel(std::string channel) { return Str(&wa_options_add_allowed_channel, std::move(channel)); }
    Options& WebhookMaxBacklog(uint32_t n) { return U32(&wa_options_set_webhook_max_backlog, n); }
    Options& RequestTimeoutMs(uint32_t ms) { return U32(&wa_options_set_request_timeout_ms, ms); }
    Options& MediaIdleTimeoutMs(uint32_t ms) { return U32(&wa_options_set_media_idle_timeout_ms, ms); }
    Options& ChannelRate(uint32_t perSecond) { return U32(&wa_options_set_channel_rate, perSecond); }
    Options& PairRateBackoffMs(uint32_t ms) { return U32(&wa_options_set_pair_rate_backoff_ms, ms); }
    Options& TokenHoldMs(uint32_t ms) { return U32(&wa_options_set_token_hold_ms, ms); }
    Options& DrainTimeoutMs(uint32_t ms) { return U32(&wa_options_set_drain_timeout_ms, ms); }
    Options& MaxInFlight(uint32_t n) { return U32(&wa_options_set_max_in_flight, n); }
    Options& MaxMediaInFlight(uint32_t n) { return U32(&wa_options_set_max_media_in_flight, n); }
    Options& WorkerThreads(uint32_t n) { return U32(&wa_options_set_worker_threads, n); }
    Options& DispatchMode(wa_dispatch_mode mode) { return U32(&wa_options_set_dispatch_mode, static_cast<uint32_t>(mode)); }
    Options& DispatchBatchingUs(uint32_t us) { return U32(&wa_options_set_dispatch_batching_us, us); }
    Options& LogLevel(wa_log_level level) { return U32(&wa_options_set_log_level, static_cast<uint32_t>(level)); }
    Options& OutboxCapacity(size_t n) { return Size(&wa_options_set_outbox_capacity, n); }
    Options& WebhookMaxBody(size_t bytes) { return Size(&wa_options_set_webhook_max_body, bytes); }
    Options& WebhookIdleTimeoutMs(uint32_t ms) { return U32(&wa_options_set_webhook_idle_timeout_ms, ms); }
    Options& WebhookMaxConnections(uint32_t max) { return U32(&wa_options_set_webhook_max_connections, max); }
    Options& DedupeCapacity(size_t n) { return Size(&wa_options_set_dedupe_capacity, n); }
    // Media: another host allowed to receive the token with a download, the largest transfer,
    // and the token `GET /client/getMedia` callers must present (at least 8 characters).
    Options& AllowMediaHost(std::string host) { return Str(&wa_options_add_media_host, std::move(host)); }
    Options& MediaMaxBytes(uint64_t bytes)
    {
        setters_.push_back([bytes](wa_options* o) { return wa_options_set_media_max_bytes(o, bytes); });
        return *this;
    }
    Options& MediaAccessToken(std::string token) { return Str(&wa_options_set_media_access_token, std::move(token)); }
    // A durable outbox in the SQLite file at `path` (see wa_options_set_outbox_path).
    Options& OutboxPath(std::string path) { return Str(&wa_options_set_outbox_path, std::move(path)); }
    Options& Retry(uint32_t maxAttempts, uint32_t maxAgeMs, uint32_t backoffInitialMs, uint32_t backoffMaxMs)
    {
        setters_.push_back([=](wa_options* o) {
            return wa_options_set_retry(o, maxAttempts, maxAgeMs, backoffInitialMs, backoffMaxMs);
        });
        return *this;
    }

    bool ThreadMode() const noexcept { return threadMode_; }

    // Builds a wa_options object (caller frees it with wa_options_free). On failure returns the
    // code of the first setter that refused its value and writes nothing.
    wa_result Build(wa_options** out) const
    {
        wa_options* o = nullptr;
        wa_result r = wa_options_new(&o);
        if (r != WA_OK)
            return r;
        for (const auto& setter : setters_) {
            r = setter(o);
            if (r != WA_OK) {
                wa_options_free(o);
                return r;
            }
        }
        *out = o;
        return WA_OK;
    }

private:
    Options& Str(wa_result (*fn)(wa_options*, const char*), std::string value)
    {
        setters_.push_back([fn, value](wa_options* o) { return fn(o, value.c_str()); });
        return *this;
    }
    Options& U32(wa_result (*fn)(wa_options*, uint32_t), uint32_t value)
    {
        if (fn == &wa_options_set_dispatch_mode)
            threadMode_ = value == WA_DISPATCH_THREAD;
        setters_.push_back([fn, value](wa_options* o) { return fn(o, value); });
        return *this;
    }
    Options& Size(wa_result (*fn)(wa_options*, size_t), size_t value)
    {
        setters_.push_back([fn, value](wa_options* o) { return fn(o, value); });
        return *this;
    }

    std::vector<std::function<wa_result(wa_options*)>> setters_;
    bool threadMode_ = false;
};

// The answer to one host-fed webhook request (IWhatsAppClient::WebhookRequest).
struct WebhookReply {
    uint16_t status = 0;
    std::string contentType;
    std::string body;
};

class ClientImpl;
} // namespace wa

// The host's side: receives the callbacks of one or more clients. Every method has an empty
// default body; override what you need. Strings are valid only during the call.
class UWhatsAppClient {
public:
    virtual ~UWhatsAppClient() {}

    // The client finished closing; the last callback of that client. `delete client` is allowed
    // here.
    virtual void WhatsAppClientCloseComplete(IWhatsAppClient* client) { (void)client; }

    // The final result of one SendMessage (content = "wamid..." on success, the error text
    // otherwise) or RequestMedia (callback_info = the media id, content = the destination's
    // HTTP status such as "200", or an error text).
    virtual void WhatsAppClientSendMessageResult(IWhatsAppClient* client, whatsapp_error_t error,
                                                 const char* callback_info = nullptr, const char* content = nullptr)
    {
        (void)client, (void)error, (void)callback_info, (void)content;
    }

    // An inbound message or status (see the README's mapping table).
    virtual void WhatsAppClientRecvMessage(IWhatsAppClient* client, const char* msg, const char* tel,
                                           const char* channel, const char* type, const char* id,
                                           const char* refersToID = nullptr)
    {
        (void)client, (void)msg, (void)tel, (void)channel, (void)type, (void)id, (void)refersToID;
    }

    // An inbound image, audio, video, document or sticker; just before its RecvMessage.
    virtual void WhatsAppClientRecvMedia(IWhatsAppClient* client, const char* sender, const char* channel,
                                         const char* wamid, const char* mediaid, const char* mimeType)
    {
        (void)client, (void)sender, (void)channel, (void)wamid, (void)mediaid, (void)mimeType;
    }

    // Extra (not in the seed): every webhook change as received, before its mapped callbacks.
    virtual void WhatsAppClientRawChange(IWhatsAppClient* client, const char* field, const char* valueJson)
    {
        (void)client, (void)field, (void)valueJson;
    }

    // Extra (not in the seed): the library's log lines (level: wa_log_level) and reports of
    // exceptions thrown by the other methods (WA_LOG_ERROR).
    virtual void WhatsAppClientLog(IWhatsAppClient* client, int level, const char* text)
    {
        (void)client, (void)level, (void)text;
        wa::detail::default_log_called() = true;
    }
};

// One connection to a WhatsApp Business Account. Create with Create(), release with delete.
// Methods may be called from any thread (the callbacks run where Dispatch() runs).
class IWhatsAppClient {
public:
    // The seed's constructor: a poll-mode client configured from the environment
    // (WA_GRAPH_BASE_URL, WA_API_VERSION, WA_WEBHOOK_LISTEN, ...). `user` receives inbound
    // messages and CloseComplete. With whatsapp_connector_iomux.hpp included, the event fd is
    // registered with `iomux` and log lines go to `log`; otherwise both are unused and the host
    // drives EventFd()/Dispatch() itself. tcpSocketProvider, tlsSocketProvider, dns and
    // socketContext are unused (the library owns its networking). NULL when the library
    // refuses (wa::LastErrorMessage() says why).
    static IWhatsAppClient* Create(IIoMux* const iomux, UWhatsAppClient* const user,
                                   ISocketProvider* const tcpSocketProvider,
                                   ISocketProvider* const tlsSocketProvider, IInstanceLog* const log,
                                   IDns* const dns, ISocketContext* const socketContext = nullptr);

    // Explicit settings instead of the environment (setters win over environment variables).
    // `iomux`/`log` as above (may be NULL).
    static IWhatsAppClient* Create(const wa::Options& options, UWhatsAppClient* const user,
                                   IIoMux* const iomux = nullptr, IInstanceLog* const log = nullptr);

    virtual ~IWhatsAppClient() {}

    // Starts closing; CloseComplete follows as the last callback. Again: no-op.
    virtual void Close() = 0;
    // Access token (Bearer for Graph) and app secret (verifies webhooks); a null secret keeps
    // the current one (to renew only the token), "" removes it.
    virtual void SetConfig(const char* token, const char* secret) = 0;
    // The verify token Meta's webhook verification request must present.
    virtual void SetWebhookToken(const char* webhookToken) = 0;
    // Sends `message` (the type's content object as JSON text, e.g. {"body":"hi"} for "text")
    // from phone number id `channel` to `remoteNum`. Exactly one result follows on `context`.
    virtual void SendMessage(UWhatsAppClient* context, const char* message, const char* remoteNum,
                             const char* type, const char* channel, const char* callback_info = nullptr,
                             const char* refersToID = nullptr) = 0;

    // The seed's json_io form: `value.encode(base, buffer)` writes the JSON text of the element
    // `base` (at most 65535 bytes, as json_io's word lengths allow) and returns its length.
    template <class JsonWriter,
              class = decltype(std::declval<JsonWriter&>().encode(static_cast<unsigned short>(0),
                                                                   static_cast<char*>(nullptr)))>
    void SendMessage(UWhatsAppClient* context, JsonWriter&& value, unsigned short base, const char* remoteNum,
                     const char* type, const char* channel, const char* callback_info = nullptr,
                     const char* refersToID = nullptr)
    {
        const size_t capacity = 65536;
        std::unique_ptr<char[]> buffer(new char[capacity]);
        buffer[0] = '\0';
        size_t length = static_cast<size_t>(value.encode(base, buffer.get()));
        buffer[length < capacity ? length : capacity - 1] = '\0';
        SendMessage(context, buffer.get(), remoteNum, type, channel, callback_info, refersToID);
    }

    // Extra: like SendMessage, but a refusal is returned (no callback then) instead of being
    // reported through a result callback. WA_OK: exactly one result follows on `context`.
    virtual wa_result TrySendMessage(UWhatsAppClient* context, const char* message, const char* remoteNum,
                                     const char* type, const char* channel, const char* callback_info = nullptr,
                                     const char* refersToID = nullptr) = 0;

    // Downloads media `mediaID` from Graph and forwards it to `destination` (an HTTP URL);
    // `detailsType` is the expected MIME type (may be NULL). The result arrives on `context` as
    // WhatsAppClientSendMessageResult(client, error, mediaID, "<HTTP status>" or error text).
    virtual void RequestMedia(UWhatsAppClient* context, const char* destination, const char* mediaID,
                              const char* detailsType) = 0;

    // The configured Graph API version, e.g. "v26.0" (valid until the client is deleted).
    virtual const char* GetVersion() = 0;

    // --- Extras (not in the seed) ---
    // Readable while callbacks are waiting to be delivered (-1 in thread mode). Do not read,
    // write or close it; remove it from the loop before deleting the client.
    virtual int EventFd() = 0;
    // Delivers every pending callback on the calling thread. Not from inside a callback.
    virtual void Dispatch() = 0;
    // Requests accepted whose result callback has not run yet (undispatched results count).
    virtual size_t Pending() = 0;
    // Port of the built-in webhook listener (0 when none is configured).
    virtual uint16_t WebhookPort() = 0;
    // Host-fed webhook request (for hosts with their own web server, e.g. IWebserverPlugin).
    virtual wa_result WebhookRequest(const char* method, const char* pathAndQuery, const char* signature,
                                     const void* body, size_t bodyLength, wa::WebhookReply& reply) = 0;
    // The C handle (owned by this object).
    virtual wa_client* capi() = 0;
    // Expires when the object is deleted (lets loops notice a client deleted in a callback).
    virtual std::weak_ptr<void> LifeToken() = 0;
    // What IWhatsAppOnboarding needs from the client's implementation (nullptr: another
    // implementation of this interface, which onboarding objects cannot use).
    virtual wa::detail::ClientServices* Services() noexcept { return nullptr; }
};

namespace wa {

// The implementation behind IWhatsAppClient::Create().
class ClientImpl final : public IWhatsAppClient, private detail::ClientServices {
public:
    ClientImpl(UWhatsAppClient* user, bool threadMode) : user_(user), threadMode_(threadMode), shim_(new Shim(this))
    {
    }

    ClientImpl(const ClientImpl&) = delete;
    ClientImpl& operator=(const ClientImpl&) = delete;

    ~ClientImpl() override
    {
        detail::UnregisterClient(this);
        if (!threadMode_) {
            life_.reset();
            binding_.reset(); // removes the fd from the host's loop before it is closed
        }
        if (client_ != nullptr) {
            wa_client* c = client_;
            client_ = nullptr;
            // No callback reaches this object any more. destroy (OnDestroy) frees the shim and the
            // records of undelivered results: now, or - when deleted from inside a callback - once
            // the library's dispatch returns.
            shim_->impl.store(nullptr);
            wa_client_free(c);
        } else {
            delete shim_; // wa_client_new failed: no destroy will come
        }
        // Thread mode: a callback running on the library's thread (it may log through the
        // binding) has returned now; wa_client_free waited for that thread.
        life_.reset();
        binding_.reset();
        if (pollFd_ >= 0)
            ::close(pollFd_);
        if (wakeFd_ >= 0)
            ::close(wakeFd_);
    }

    // Second phase of construction (Create): returns false when the library refused.
    bool Start(const wa_options* options)
    {
        wa_client_callbacks callbacks{};
        callbacks.user_data = shim_;
        callbacks.close_complete = &OnCloseComplete;
        callbacks.send_result = &OnSendResult;
        callbacks.recv_message = &OnRecvMessage;
        callbacks.recv_media = &OnRecvMedia;
        callbacks.raw_change = &OnRawChange;
        callbacks.log = &OnLog;
        callbacks.destroy = &OnDestroy;
        if (wa_client_new(options, &callbacks, &client_) != WA_OK) {
            client_ = nullptr;
            return false;
        }
        if (!threadMode_) {
            int libraryFd = -1;
            if (wa_client_event_fd(client_, &libraryFd) != WA_OK)
                return false;
            eventFd_ = libraryFd;
            // One fd for the host: an epoll set over the library's fd and our own wake fd (for
            // refusals delivered by the next Dispatch). Without epoll, the library's fd alone.
            int ep = ::epoll_create1(EPOLL_CLOEXEC);
            int wake = ep >= 0 ? ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) : -1;
            if (ep >= 0 && wake >= 0) {
                epoll_event ev{};
                ev.events = EPOLLIN;
                ev.data.fd = libraryFd;
                bool ok = ::epoll_ctl(ep, EPOLL_CTL_ADD, libraryFd, &ev) == 0;
                ev.data.fd = wake;
                ok = ok && ::epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev) == 0;
                if (ok) {
                    pollFd_ = ep;
                    wakeFd_ = wake;
                    eventFd_ = ep;
                    return true;
                }
            }
            if (ep >= 0)
                ::close(ep);
            if (wake >= 0)
                ::close(wake);
        }
        return true;
    }

    void Bind(IIoMux* iomux, IInstanceLog* log)
    {
        detail::BindFn hook = detail::bind_hook();
        if (hook != nullptr && (iomux != nullptr || log != nullptr))
            binding_.reset(hook(this, iomux, log));
        if (iomux != nullptr && threadMode_)
            LogLine(WA_LOG_WARN, "thread mode with an IIoMux: callbacks run on the library's thread, not on the "
                                 "IIoMux's; use poll mode (the default) to get them on the IIoMux thread");
    }

    using IWhatsAppClient::SendMessage;

    void Close() override { wa_client_close(client_); }

    void SetConfig(const char* token, const char* secret) override
    {
        if (wa_client_set_config(client_, token != nullptr ? token : "", secret) != WA_OK)
            LogLine(WA_LOG_ERROR, ("SetConfig refused: " + LastErrorMessage()).c_str());
    }

    void SetWebhookToken(const char* webhookToken) override
    {
        if (wa_client_set_webhook_token(client_, webhookToken != nullptr ? webhookToken : "") != WA_OK)
            LogLine(WA_LOG_ERROR, ("SetWebhookToken refused: " + LastErrorMessage()).c_str());
    }

    void SendMessage(UWhatsAppClient* context, const char* message, const char* remoteNum, const char* type,
                     const char* channel, const char* callback_info = nullptr, const char* refersToID = nullptr) override
    {
        wa_result r = TrySendMessage(context, message, remoteNum, type, channel, callback_info, refersToID);
        if (r != WA_OK)
            Refused(context, r, callback_info);
    }

    wa_result TrySendMessage(UWhatsAppClient* context, const char* message, const char* remoteNum,
                             const char* type, const char* channel, const char* callback_info = nullptr,
                             const char* refersToID = nullptr) override
    {
        Record* record = NewRecord(context);
        wa_result r = wa_client_send_message(client_, message, remoteNum, type, channel, callback_info,
                                             refersToID, record);
        if (r != WA_OK)
            DropRecord(record);
        return r;
    }

    void RequestMedia(UWhatsAppClient* context, const char* destination, const char* mediaID,
                      const char* detailsType) override
    {
        Record* record = NewRecord(context);
        wa_result r = wa_client_request_media(client_, destination, mediaID, detailsType, record);
        if (r != WA_OK) {
            DropRecord(record);
            Refused(context, r, mediaID);
        }
    }

    const char* GetVersion() override { return wa_client_version(client_); }

    int EventFd() override { return threadMode_ ? -1 : eventFd_; }

    void Dispatch() override
    {
        if (threadMode_)
            return;
        std::weak_ptr<char> watch = life_; // the object may be deleted by a callback below
        const bool nested = dispatchDepth_ > 0; // Dispatch() called from inside a callback
        dispatchDepth_++;
        if (wakeFd_ >= 0) {
            uint64_t count;
            ssize_t n = ::read(wakeFd_, &count, sizeof count); // non-blocking; EAGAIN when not woken
            (void)n;
        }
        if (!DeliverRefusals())
            return;
        // Tasks posted by onboarding objects, before and after the library's callbacks; never
        // from a nested Dispatch() (the outer one runs them once its callback returned).
        if (!nested)
            RunTasks(watch, false);
        if (watch.expired())
            return;
        // The library's callbacks are already being dispatched by the outer Dispatch() (the
        // library refuses a nested dispatch of the same client): only the refusals above.
        wa_result r = nested ? WA_OK : wa_client_dispatch(client_, nullptr);
        if (watch.expired())
            return;
        if (r != WA_OK)
            LogLine(WA_LOG_ERROR, ("Dispatch: " + LastErrorMessage()).c_str());
        // Tasks posted to follow the library's callbacks wait while a bounded dispatch
        // (DispatchMaxEvents) left some of them: the library's fd stays readable for those.
        if (!nested && wa_client_events_pending(client_) == 0)
            RunTasks(watch, true);
        if (!watch.expired())
            dispatchDepth_--;
    }

    size_t Pending() override
    {
        std::lock_guard<std::mutex> lock(mutex_);
        return wa_client_pending(client_) + deferred_.size();
    }

    uint16_t WebhookPort() override
    {
        uint16_t port = 0;
        return wa_client_webhook_port(client_, &port) == WA_OK ? port : 0;
    }

    wa_result WebhookRequest(const char* method, const char* pathAndQuery, const char* signature,
                             const void* body, size_t bodyLength, WebhookReply& reply) override
    {
        std::vector<char> buffer(256);
        for (int attempt = 0; attempt < 2; attempt++) {
            uint16_t status = 0;
            const char* contentType = nullptr;
            size_t length = 0;
            wa_result r = wa_client_webhook_request(client_, method, pathAndQuery, signature,
                                                    static_cast<const uint8_t*>(body), bodyLength, &status,
                                                    &contentType, buffer.data(), buffer.size(), &length);
            if (r == WA_ERR_BUFFER_TOO_SMALL) {
                buffer.resize(length + 1);
                continue;
            }
            if (r == WA_OK) {
                reply.status = status;
                reply.contentType = contentType != nullptr ? contentType : "";
                reply.body.assign(buffer.data(), length);
            }
            return r;
        }
        return WA_ERR_BUFFER_TOO_SMALL;
    }

    wa_client* capi() override { return client_; }

    std::weak_ptr<void> LifeToken() override { return std::weak_ptr<void>(std::shared_ptr<void>(life_)); }

    detail::ClientServices* Services() noexcept override { return this; }

private:
    // --- detail::ClientServices (for IWhatsAppOnboarding) ---
    bool Post(std::weak_ptr<void> owner, std::function<void()> task, bool afterLibrary) override
    {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (threadMode_ && closeDelivered_)
                return false; // nothing runs after CloseComplete
            tasks_.push_back(Task{std::move(owner), std::move(task), afterLibrary});
            if (threadMode_ || wakeFd_ < 0) {
                // Run on the library's dispatch thread (or, in poll mode without a wake fd of
                // ours, by the library's own dispatch), in sequence with the callbacks.
                PostLocked();
                return true;
            }
        }
        if (wakeFd_ >= 0) {
            uint64_t one = 1;
            ssize_t n = ::write(wakeFd_, &one, sizeof one);
            (void)n;
        }
        return true;
    }

    void Quiesce() noexcept override { std::lock_guard<std::recursive_mutex> running(*taskRun_); }

    bool HostLog(int level, const char* text) noexcept override
    {
        if (!binding_)
            return false;
        binding_->Log(level, text);
        return true;
    }

    // Runs the posted tasks of one phase (before or after the library's callbacks), each unless
    // its owner expired, in posting order; stops when this client is deleted.
    void RunTasks(const std::weak_ptr<char>& watch, bool afterLibrary)
    {
        for (;;) {
            Task task;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                auto it = tasks_.begin();
                while (it != tasks_.end() && it->afterLibrary != afterLibrary)
                    ++it;
                if (it == tasks_.end())
                    return;
                task = std::move(*it);
                tasks_.erase(it);
            }
            {
                // Held while the task runs: an owner deleted on another thread waits (Quiesce).
                // A local reference: the task may delete this client.
                std::shared_ptr<std::recursive_mutex> guard = taskRun_;
                std::lock_guard<std::recursive_mutex> running(*guard);
                if (!task.owner.expired())
                    task.run();
            }
            if (watch.expired())
                return;
        }
    }

    struct Task {
        std::weak_ptr<void> owner;
        std::function<void()> run;
        bool afterLibrary = false;
    };

    // One accepted request: carries the per-call context through request_ctx.
    struct Record {
        UWhatsAppClient* context;
    };
    // The callbacks' user_data. It outlives the ClientImpl until destroy: deleting the client
    // inside a callback makes the library call destroy only after its dispatch returns.
    struct Shim {
        explicit Shim(ClientImpl* owner) : impl(owner) {}
        // nullptr once the ClientImpl is deleted; read on the library's thread in thread mode.
        std::atomic<ClientImpl*> impl;
        std::mutex mutex;
        std::unordered_set<Record*> records; // accepted and not yet answered
    };
    // A refusal waiting for the next Dispatch().
    struct Deferred {
        UWhatsAppClient* context = nullptr;
        whatsapp_error_t error = WHATSAPP_ERR_OK;
        bool hasInfo = false;
        std::string info;
        std::string text;
    };

    static ClientImpl* Self(void* userData) noexcept { return static_cast<Shim*>(userData)->impl.load(); }

    Record* NewRecord(UWhatsAppClient* context)
    {
        Record* record = new Record{context};
        std::lock_guard<std::mutex> lock(shim_->mutex);
        shim_->records.insert(record);
        return record;
    }

    static void DropRecord(Shim* shim, Record* record) noexcept
    {
        {
            std::lock_guard<std::mutex> lock(shim->mutex);
            shim->records.erase(record);
        }
        delete record;
    }
    void DropRecord(Record* record) noexcept { DropRecord(shim_, record); }

    // CLOSING after Close; OTHER_HTTP for what may pass later (a full outbox, a storage or
    // system error, an internal failure); BAD_REQUEST for the call's own arguments.
    static whatsapp_error_t RefusalError(wa_result r) noexcept
    {
        switch (r) {
        case WA_ERR_CLOSED:
            return WHATSAPP_ERR_CLOSING;
        case WA_ERR_QUEUE_FULL:
        case WA_ERR_STORAGE:
        case WA_ERR_SYSTEM:
        case WA_ERR_PANIC:
            return WHATSAPP_ERR_OTHER_HTTP;
        default:
            return WHATSAPP_ERR_BAD_REQUEST;
        }
    }

    void Refused(UWhatsAppClient* context, wa_result r, const char* callbackInfo)
    {
        Deferred item;
        item.context = context;
        item.error = RefusalError(r);
        item.hasInfo = callbackInfo != nullptr;
        item.info = callbackInfo != nullptr ? callbackInfo : "";
        std::string detail = LastErrorMessage();
        item.text = std::string(ResultText(r)) + (detail.empty() ? "" : ": " + detail);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (closeDelivered_)
                return; // after CloseComplete the call gets no result, like any other
            deferred_.push_back(std::move(item));
            if (threadMode_ || wakeFd_ < 0) {
                // Delivered on the library's dispatch thread (or, in poll mode without a wake fd
                // of ours, by the library's own dispatch), in sequence with the callbacks.
                PostLocked();
                return;
            }
        }
        if (wakeFd_ >= 0) {
            uint64_t one = 1;
            ssize_t n = ::write(wakeFd_, &one, sizeof one);
            (void)n;
        }
    }

    // Thread mode (or poll mode without a wake fd), under mutex_: one OnPosted in the library's
    // queue at a time delivers all that waits. When the library refuses (its close-complete is
    // queued), OnCloseComplete delivers what waits before the user's CloseComplete.
    void PostLocked() noexcept
    {
        if (postQueued_)
            return;
        postQueued_ = wa_client_post(client_, &OnPosted, shim_) == WA_OK;
    }

    // Delivers the refusals waiting for Dispatch(); false when a callback deleted this object.
    bool DeliverRefusals()
    {
        std::weak_ptr<char> watch = life_;
        for (;;) {
            Deferred item;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                if (deferred_.empty())
                    return true;
                item = std::move(deferred_.front());
                deferred_.pop_front();
            }
            DeliverResult(item.context, item.error, item.hasInfo ? item.info.c_str() : nullptr, item.text.c_str());
            if (watch.expired())
                return false;
        }
    }

    void DeliverResult(UWhatsAppClient* context, whatsapp_error_t error, const char* info,
                       const char* content) noexcept
    {
        UWhatsAppClient* target = context != nullptr ? context : user_;
        if (target == nullptr)
            return;
        std::weak_ptr<char> watch = life_; // the handler may delete this object, then throw
        try {
            target->WhatsAppClientSendMessageResult(this, error, info, content);
        } catch (const std::exception& e) {
            ReportThrown(watch, this, "WhatsAppClientSendMessageResult", e.what());
        } catch (...) {
            ReportThrown(watch, this, "WhatsAppClientSendMessageResult", "unknown exception");
        }
    }

    // A line from the wrapper itself (not the library), to the same sinks as the library's.
    void LogLine(int level, const char* text) noexcept
    {
        if (binding_)
            binding_->Log(level, text);
        if (user_ == nullptr)
            return;
        try {
            user_->WhatsAppClientLog(this, level, text);
        } catch (...) {
        }
    }

    // Reports an exception a U-method threw. A handler may delete the client and then throw:
    // `watch`, taken before the handler ran, says whether `self` is still there.
    static void ReportThrown(const std::weak_ptr<char>& watch, ClientImpl* self, const char* where,
                             const char* what) noexcept
    {
        if (!watch.expired())
            self->ReportException(where, what);
        else
            std::fprintf(stderr, "whatsapp-connector: exception from %s: %s\n", where,
                         what != nullptr ? what : "");
    }

    // The same, for a live object. Never throws.
    void ReportException(const char* where, const char* what) noexcept
    {
        char line[600];
        std::snprintf(line, sizeof line, "exception from %s: %s", where, what != nullptr ? what : "");
        if (binding_)
            binding_->Log(WA_LOG_ERROR, line);
        bool toStderr = !binding_;
        if (user_ != nullptr) {
            try {
                detail::default_log_called() = false;
                user_->WhatsAppClientLog(this, WA_LOG_ERROR, line);
                toStderr = toStderr && detail::default_log_called();
            } catch (...) {
                toStderr = true;
            }
        }
        if (toStderr)
            std::fprintf(stderr, "whatsapp-connector: %s\n", line);
    }

    // --- trampolines: every one is noexcept and catches all exceptions of user code ---

    static void OnCloseComplete(void* userData) noexcept
    {
        ClientImpl* self = Self(userData);
        if (self == nullptr || self->user_ == nullptr)
            return;
        std::weak_ptr<char> watch = self->life_; // a callback below may delete the client
        // A send refused after Close() (from a callback of this same dispatch) still comes
        // before CloseComplete, which is the last callback.
        if (!self->DeliverRefusals())
            return;
        if (self->threadMode_) {
            // Tasks posted once the library took no more (its close-complete was queued).
            self->RunTasks(watch, false);
            if (watch.expired())
                return;
            self->RunTasks(watch, true);
            if (watch.expired())
                return;
        }
        {
            std::lock_guard<std::mutex> lock(self->mutex_);
            // Anything refused from here on gets no callback: CloseComplete is the last one.
            // (Poll mode keeps its tasks: an onboarding closed after its client still gets its
            // CloseComplete from the client's next Dispatch.)
            self->closeDelivered_ = true;
            self->deferred_.clear();
            if (self->threadMode_)
                self->tasks_.clear();
        }
        try {
            self->user_->WhatsAppClientCloseComplete(self);
        } catch (const std::exception& e) {
            ReportThrown(watch, self, "WhatsAppClientCloseComplete", e.what());
        } catch (...) {
            ReportThrown(watch, self, "WhatsAppClientCloseComplete", "unknown exception");
        }
    }

    static void OnSendResult(void* userData, void* requestCtx, whatsapp_error_t error, const char* callbackInfo,
                             const char* content) noexcept
    {
        Shim* shim = static_cast<Shim*>(userData);
        Record* record = static_cast<Record*>(requestCtx);
        UWhatsAppClient* context = nullptr;
        if (record != nullptr) {
            context = record->context;
            DropRecord(shim, record);
        }
        if (ClientImpl* self = shim->impl.load())
            self->DeliverResult(context, error, callbackInfo, content);
    }

    // Refusals and onboarding tasks posted with wa_client_post (thread mode, or poll mode without
    // a wake fd of ours), run where the library runs its callbacks.
    static void OnPosted(void* userData) noexcept
    {
        ClientImpl* self = Self(userData);
        if (self == nullptr)
            return;
        {
            // From now on a new refusal or task needs a new post.
            std::lock_guard<std::mutex> lock(self->mutex_);
            self->postQueued_ = false;
        }
        std::weak_ptr<char> watch = self->life_; // a callback below may delete the client
        if (!self->DeliverRefusals())
            return;
        self->RunTasks(watch, false);
        if (watch.expired())
            return;
        self->RunTasks(watch, true);
    }

    static void OnRecvMessage(void* userData, const char* msg, const char* tel, const char* channel,
                              const char* type, const char* id, const char* refersToId) noexcept
    {
        ClientImpl* self = Self(userData);
        if (self == nullptr || self->user_ == nullptr)
            return;
        std::weak_ptr<char> watch = self->life_; // the handler may delete the client, then throw
        try {
            self->user_->WhatsAppClientRecvMessage(self, msg, tel, channel, type, id, refersToId);
        } catch (const std::exception& e) {
            ReportThrown(watch, self, "WhatsAppClientRecvMessage", e.what());
        } catch (...) {
            ReportThrown(watch, self, "WhatsAppClientRecvMessage", "unknown exception");
        }
    }

    static void OnRecvMedia(void* userData, const char* sender, const char* channel, const char* wamid,
                            const char* mediaId, const char* mimeType) noexcept
    {
        ClientImpl* self = Self(userData);
        if (self == nullptr || self->user_ == nullptr)
            return;
        std::weak_ptr<char> watch = self->life_; // the handler may delete the client, then throw
        try {
            self->user_->WhatsAppClientRecvMedia(self, sender, channel, wamid, mediaId, mimeType);
        } catch (const std::exception& e) {
            ReportThrown(watch, self, "WhatsAppClientRecvMedia", e.what());
        } catch (...) {
            ReportThrown(watch, self, "WhatsAppClientRecvMedia", "unknown exception");
        }
    }

    static void OnRawChange(void* userData, const char* field, const char* valueJson) noexcept
    {
        ClientImpl* self = Self(userData);
        if (self == nullptr || self->user_ == nullptr)
            return;
        std::weak_ptr<char> watch = self->life_; // the handler may delete the client, then throw
        try {
            self->user_->WhatsAppClientRawChange(self, field, valueJson);
        } catch (const std::exception& e) {
            ReportThrown(watch, self, "WhatsAppClientRawChange", e.what());
        } catch (...) {
            ReportThrown(watch, self, "WhatsAppClientRawChange", "unknown exception");
        }
    }

    static void OnLog(void* userData, wa_log_level level, const char* text) noexcept
    {
        ClientImpl* self = Self(userData);
        if (self == nullptr)
            return;
        if (self->binding_)
            self->binding_->Log(static_cast<int>(level), text);
        if (self->user_ == nullptr)
            return;
        try {
            self->user_->WhatsAppClientLog(self, static_cast<int>(level), text);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "whatsapp-connector: exception from WhatsAppClientLog: %s\n", e.what());
        } catch (...) {
            std::fprintf(stderr, "whatsapp-connector: exception from WhatsAppClientLog\n");
        }
    }

    static void OnDestroy(void* userData) noexcept
    {
        Shim* shim = static_cast<Shim*>(userData);
        for (Record* record : shim->records)
            delete record;
        delete shim;
    }

    UWhatsAppClient* const user_;
    const bool threadMode_;
    wa_client* client_ = nullptr;
    int eventFd_ = -1;
    int pollFd_ = -1;
    int wakeFd_ = -1;
    std::unique_ptr<detail::HostBinding> binding_;
    std::shared_ptr<char> life_ = std::make_shared<char>(0);
    Shim* shim_;
    std::mutex mutex_; // guards deferred_, tasks_, postQueued_ and closeDelivered_
    std::deque<Deferred> deferred_;
    std::deque<Task> tasks_;
    bool postQueued_ = false;     // an OnPosted waits in the library's queue
    bool closeDelivered_ = false; // CloseComplete ran: no refusal is delivered after it
    int dispatchDepth_ = 0; // Dispatch() calls running on the loop thread
    std::shared_ptr<std::recursive_mutex> taskRun_ = std::make_shared<std::recursive_mutex>(); // held while a posted task runs
};

// A poll() loop for programs without an SDK IIoMux: waits on the event fds of its clients and
// dispatches them, all on the thread calling Run(). Deleting a client (also from inside one of
// its callbacks) removes it from the loop.
class PollLoop {
public:
    void Add(IWhatsAppClient* client)
    {
        if (client != nullptr)
            clients_.push_back(Entry{client, client->LifeToken()});
    }

    void Remove(IWhatsAppClient* client)
    {
        for (auto& entry : clients_)
            if (entry.client == client)
                entry.client = nullptr;
    }

    // Clients still registered and alive.
    size_t Size()
    {
        Prune();
        return clients_.size();
    }

    // One round: waits up to `timeoutMs` (negative: no limit) for any client, then dispatches
    // every ready one. Returns the number of clients dispatched (0 on timeout), -1 on error.
    int RunOnce(int timeoutMs)
    {
        Prune();
        std::vector<pollfd> fds;
        std::vector<Entry> entries;
        for (const auto& entry : clients_) {
            int fd = entry.client->EventFd();
            if (fd < 0)
                continue;
            fds.push_back(pollfd{fd, POLLIN, 0});
            entries.push_back(entry);
        }
        if (fds.empty())
            return 0;
        int n = ::poll(fds.data(), fds.size(), timeoutMs);
        if (n < 0)
            return errno == EINTR ? 0 : -1;
        int dispatched = 0;
        for (size_t i = 0; i < fds.size(); i++) {
            if ((fds[i].revents & (POLLIN | POLLERR | POLLHUP)) == 0)
                continue;
            // Skip clients deleted or removed by an earlier dispatch of this round.
            if (entries[i].token.expired() || !Contains(entries[i].client))
                continue;
            entries[i].client->Dispatch();
            dispatched++;
        }
        return dispatched;
    }

    // Runs rounds until `done()` returns true (checked before each round; returns true), or
    // `timeoutMs` has passed in total (negative: no limit; returns false), or no client is
    // left (returns done()).
    bool Run(const std::function<bool()>& done, int timeoutMs = -1)
    {
        using clock = std::chrono::steady_clock;
        const auto deadline = clock::now() + std::chrono::milliseconds(timeoutMs < 0 ? 0 : timeoutMs);
        for (;;) {
            if (done && done())
                return true;
            if (Size() == 0)
                return done ? done() : true;
            int wait = 100;
            if (timeoutMs >= 0) {
                auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
                if (left <= 0)
                    return false;
                wait = static_cast<int>(left < wait ? left : wait);
            }
            if (RunOnce(wait) < 0)
                return false;
        }
    }

private:
    struct Entry {
        IWhatsAppClient* client;
        std::weak_ptr<void> token;
    };

    bool Contains(IWhatsAppClient* client) const
    {
        for (const auto& entry : clients_)
            if (entry.client == client && !entry.token.expired())
                return true;
        return false;
    }

    void Prune()
    {
        std::vector<Entry> kept;
        for (auto& entry : clients_)
            if (entry.client != nullptr && !entry.token.expired())
                kept.push_back(entry);
        clients_.swap(kept);
    }

    std::vector<Entry> clients_;
};

} // namespace wa

inline IWhatsAppClient* IWhatsAppClient::Create(IIoMux* const iomux, UWhatsAppClient* const user,
                                                ISocketProvider* const tcpSocketProvider,
                                                ISocketProvider* const tlsSocketProvider, IInstanceLog* const log,
                                                IDns* const dns, ISocketContext* const socketContext)
{
    (void)tcpSocketProvider, (void)tlsSocketProvider, (void)dns, (void)socketContext;
    std::unique_ptr<wa::ClientImpl> client(new wa::ClientImpl(user, false));
    if (!client->Start(nullptr))
        return nullptr;
    client->Bind(iomux, log);
    wa::detail::RegisterClient(client.get());
    return client.release();
}

inline IWhatsAppClient* IWhatsAppClient::Create(const wa::Options& options, UWhatsAppClient* const user,
                                                IIoMux* const iomux, IInstanceLog* const log)
{
    wa_options* o = nullptr;
    if (options.Build(&o) != WA_OK)
        return nullptr;
    std::unique_ptr<wa::ClientImpl> client(new wa::ClientImpl(user, options.ThreadMode()));
    bool started = client->Start(o);
    wa_options_free(o);
    if (!started)
        return nullptr;
    client->Bind(iomux, log);
    wa::detail::RegisterClient(client.get());
    return client.release();
}

// ---------------------------------------------------------------------------------------------
// Onboarding (Meta Embedded Signup, Tech Provider flow): IWhatsAppOnboarding / UWhatsAppOnboarding
// over wa_onboarding_* (the C header documents each stage).
//
//   IWhatsAppOnboarding * o = IWhatsAppOnboarding::Create(iomux, user, tcp, tls, log, dns);
//   o->Onboard(context, src, version, code, webhookToken, wabaID, callbackUri, phoneID, phonePin);
//   ...  context->WhatsAppOnboardingOnboardResult(o, src, FINISHED, token)
//   o->Close();  ... user->WhatsAppOnboardingCloseComplete(o) ...  delete o;
//
// CLIENT. An onboarding object always works through an IWhatsAppClient of this process ("the
// WhatsAppClient needs to be running too"): the app id comes from that client's options
// (wa::Options::AppId, else WA_APP_ID), the app secret from its SetConfig(token, secret), the
// Graph base URL and default version from its settings; the token obtained is set as the
// client's token (SetConfig with the client's secret: later sends use it), and Meta's
// verification GET of `callbackUri` must be answered by that client's webhook listener
// (WA_WEBHOOK_LISTEN / wa::Options::WebhookListen; callbackUri = http(s)://<host>:<port>/webhook
// reaching it): the onboarding sets the client's webhook token to `webhookToken` before the
// subscription. Create(client, user) names the client; the seed-shaped Create (which has no
// client parameter) takes the client created most recently in this process that is still alive
// (not yet deleted), and returns nullptr when there is none (reported on the `user`'s
// WhatsAppOnboardingLog, the IInstanceLog when the IIoMux adapter is included, else stderr).
//
// EVENTS. The onboarding has no event fd of its own: every U-callback comes through its
// client's event fd and runs inside the client's Dispatch(), on that thread (thread mode: the
// client's dispatch thread). `iomux`, the socket providers, the DNS and the socket context of the
// seed-shaped Create are accepted and unused (the client's loop carries the callbacks).
//
// RESULTS. Every Onboard()/Resume() gets exactly one WhatsAppOnboardingOnboardResult, on the
// `context` given to that call (on the Create() `user` when NULL), with callback_info = `src`,
// status FINISHED on success or else the stage that failed (or was running when Close() came),
// and the business token whenever the code exchange succeeded (or the token a resumed run used),
// else NULL. When status is not FINISHED, WhatsAppOnboardingError(onboarding, src, status, text)
// comes first on the same target with what went wrong. A call refused at once (bad arguments,
// closed onboarding or client) gets both too, with status UNSTARTED, delivered by the client's
// next Dispatch() (thread mode: on the dispatch thread, never inside the call). CloseComplete
// and log lines go to the `user`.
//
// LIFETIME. Close(): runs still going end with their result (the stage reached), then
// WhatsAppOnboardingCloseComplete as the last callback; `delete` inside it or later. When the
// client was closed first, Close() still answers with CloseComplete (client's next Dispatch).
// Deleting earlier is safe at any time, also inside any callback: runs still going are dropped
// without a result. Delete onboarding objects before their client; once the client is deleted
// an onboarding object does nothing any more (no callbacks) except being deleted. Exceptions
// thrown by U-methods are caught (never reach the library) and reported as for the client.
// ---------------------------------------------------------------------------------------------

// The stage an onboarding reached (the seed's onboardingStatus; values equal wa_onboarding_status).
enum onboardingStatus {
    UNSTARTED = WA_ONBOARDING_UNSTARTED,
    FETCH_TOKEN = WA_ONBOARDING_FETCH_TOKEN,
    REGISTER_WEBHOOKS = WA_ONBOARDING_REGISTER_WEBHOOKS,
    REGISTER_PHONE = WA_ONBOARDING_REGISTER_PHONE,
    FINISHED = WA_ONBOARDING_FINISHED
};
static_assert(static_cast<int>(UNSTARTED) == 0 && static_cast<int>(FETCH_TOKEN) == 1 &&
                  static_cast<int>(REGISTER_WEBHOOKS) == 2 && static_cast<int>(REGISTER_PHONE) == 3 &&
                  static_cast<int>(FINISHED) == 4,
              "onboardingStatus must equal wa_onboarding_status");

// The host's side of onboarding. Every method has an empty default body; strings are valid
// only during the call.
class UWhatsAppOnboarding {
public:
    virtual ~UWhatsAppOnboarding() {}

    // The onboarding finished closing; its last callback. `delete onboarding` is allowed here.
    virtual void WhatsAppOnboardingCloseComplete(IWhatsAppOnboarding* onboarding) { (void)onboarding; }

    // The result of one Onboard()/Resume() (see RESULTS above). Persist `token` when you want to
    // resume later (it is also the client's token from now on).
    virtual void WhatsAppOnboardingOnboardResult(IWhatsAppOnboarding* onboarding, const char* callback_info,
                                                 onboardingStatus status, const char* token = nullptr)
    {
        (void)onboarding, (void)callback_info, (void)status, (void)token;
    }

    // Extra (not in the seed): what failed, just before the OnboardResult of a run that did not
    // finish (`status` = the stage that failed, UNSTARTED for a refused call).
    virtual void WhatsAppOnboardingError(IWhatsAppOnboarding* onboarding, const char* callback_info,
                                         onboardingStatus status, const char* error)
    {
        (void)onboarding, (void)callback_info, (void)status, (void)error;
    }

    // Extra (not in the seed): the wrapper's log lines (level: wa_log_level) and reports of
    // exceptions thrown by the other methods (WA_LOG_ERROR). `onboarding` is NULL for the line of
    // a seed-shaped Create that found no client. The library's own log lines go to the client.
    virtual void WhatsAppOnboardingLog(IWhatsAppOnboarding* onboarding, int level, const char* text)
    {
        (void)onboarding, (void)level, (void)text;
        wa::detail::default_log_called() = true;
    }
};

// Onboards a business customer (code exchange, webhook subscription, phone registration).
// Create with Create(), release with delete. Methods may be called from any thread.
class IWhatsAppOnboarding {
public:
    // The seed's names also inside the class (IWhatsAppOnboarding::FINISHED, ...).
    using onboardingStatus = ::onboardingStatus;
    static constexpr ::onboardingStatus UNSTARTED = ::UNSTARTED;
    static constexpr ::onboardingStatus FETCH_TOKEN = ::FETCH_TOKEN;
    static constexpr ::onboardingStatus REGISTER_WEBHOOKS = ::REGISTER_WEBHOOKS;
    static constexpr ::onboardingStatus REGISTER_PHONE = ::REGISTER_PHONE;
    static constexpr ::onboardingStatus FINISHED = ::FINISHED;

    // The seed's constructor. Seed fix: the SDK page declares it returning IWhatsAppClient*, an
    // evident typo; it returns IWhatsAppOnboarding*. It has no client parameter: it uses the
    // IWhatsAppClient created most recently in this process and still alive (see CLIENT above),
    // and returns nullptr when there is none. `log` (with whatsapp_connector_iomux.hpp included)
    // receives this object's log lines; iomux, the socket providers, dns and socketContext are
    // unused.
    static IWhatsAppOnboarding* Create(IIoMux* const iomux, UWhatsAppOnboarding* const user,
                                       ISocketProvider* const tcpSocketProvider,
                                       ISocketProvider* const tlsSocketProvider, IInstanceLog* const log,
                                       IDns* const dns, ISocketContext* const socketContext = nullptr);

    // Extra: the client named explicitly (an object of IWhatsAppClient::Create). nullptr when
    // `client` is NULL or the library refuses.
    static IWhatsAppOnboarding* Create(IWhatsAppClient* client, UWhatsAppOnboarding* user);

    virtual ~IWhatsAppOnboarding() {}

    // Starts closing; CloseComplete follows as the last callback. Again: no-op.
    virtual void Close() = 0;

    // A full run: FETCH_TOKEN (exchange the Embedded Signup `code`, single-use, ~30 s, never
    // retried), REGISTER_WEBHOOKS (subscribe the app to `wabaID` with `callbackUri` as override,
    // verified against the client's listener with `webhookToken`; callbackUri "" subscribes
    // without override), REGISTER_PHONE (register `phoneID` with the 6-digit two-step `phonePin`),
    // FINISHED. `version` NULL or "": the client's. One result follows on `context`.
    virtual void Onboard(UWhatsAppOnboarding* context, const char* src, const char* version, const char* code,
                         const char* webhookToken, const char* wabaID, const char* callbackUri,
                         const char* phoneID, const char* phonePin) = 0;

    // Extra (not in the seed): resumes a run that failed at `from` (REGISTER_WEBHOOKS or
    // REGISTER_PHONE), with the token the client has (restore a persisted one with the client's
    // SetConfig first); no code is exchanged. At REGISTER_PHONE, webhookToken, wabaID and
    // callbackUri are not used (may be NULL). The client's API version. One result on `context`.
    virtual void Resume(UWhatsAppOnboarding* context, const char* src, onboardingStatus from,
                        const char* webhookToken, const char* wabaID, const char* callbackUri, const char* phoneID,
                        const char* phonePin) = 0;

    // --- Extras (not in the seed) ---
    // The client this onboarding works through (nullptr once it was deleted).
    virtual IWhatsAppClient* Client() = 0;
    // The C handle (owned by this object).
    virtual wa_onboarding* capi() = 0;
};

namespace wa {

// The implementation behind IWhatsAppOnboarding::Create().
class OnboardingImpl final : public IWhatsAppOnboarding {
public:
    OnboardingImpl(IWhatsAppClient* client, detail::ClientServices* services, UWhatsAppOnboarding* user,
                   IInstanceLog* log)
        : client_(client), clientLife_(client->LifeToken()), services_(services), user_(user), log_(log),
          shim_(new Shim(this))
    {
    }

    OnboardingImpl(const OnboardingImpl&) = delete;
    OnboardingImpl& operator=(const OnboardingImpl&) = delete;

    ~OnboardingImpl() override
    {
        {
            // Posted deliveries for this object are skipped from now on. Locked: in thread mode
            // a result being delivered on the library's thread copies life_ meanwhile.
            std::lock_guard<std::mutex> lock(lifeMutex_);
            life_.reset();
        }
        if (ClientAlive())
            services_->Quiesce(); // one running on another thread has returned
        if (onboarding_ != nullptr) {
            // No callback reaches this object after the free (one running on another thread is
            // waited for; from inside one of ours, destroy comes once it returned).
            wa_onboarding_free(onboarding_);
            onboarding_ = nullptr;
        } else {
            Release(shim_); // wa_onboarding_new failed: no destroy will come
        }
        shim_->impl = nullptr;
        Release(shim_);
    }

    // Second phase of construction: false when the library refused.
    bool Start()
    {
        wa_onboarding_callbacks callbacks{};
        callbacks.user_data = shim_;
        callbacks.close_complete = &OnCloseComplete;
        callbacks.onboard_result = &OnResult;
        callbacks.destroy = &OnDestroy;
        if (wa_onboarding_new(client_->capi(), &callbacks, &onboarding_) != WA_OK) {
            onboarding_ = nullptr;
            return false;
        }
        return true;
    }

    void Close() override
    {
        if (closing_.exchange(true))
            return;
        if (!ClientAlive()) {
            LogLine(WA_LOG_WARN, "Close: the client of this onboarding was deleted; no CloseComplete follows");
            return;
        }
        wa_result r = wa_onboarding_close(onboarding_);
        if (r == WA_ERR_CLOSED) {
            // The client was closed first (its close ended our runs): answer the seed's
            // Close -> CloseComplete contract ourselves, after what the library has queued.
            // When queued, the last statement: it may delete this (on another thread).
            if (!services_->Post(LifeToken(), [this] { DeliverCloseComplete(); }, true))
                LogLine(WA_LOG_WARN, "Close: the client's CloseComplete was delivered already and thread "
                                     "mode runs nothing after it; no CloseComplete follows (close "
                                     "onboardings before their client)");
        } else if (r != WA_OK) {
            LogLine(WA_LOG_ERROR, ("Close refused: " + LastErrorMessage()).c_str());
        }
    }

    void Onboard(UWhatsAppOnboarding* context, const char* src, const char* version, const char* code,
                 const char* webhookToken, const char* wabaID, const char* callbackUri, const char* phoneID,
                 const char* phonePin) override
    {
        Run(context, src, version, code, webhookToken, wabaID, callbackUri, phoneID, phonePin,
            WA_ONBOARDING_FETCH_TOKEN);
    }

    void Resume(UWhatsAppOnboarding* context, const char* src, onboardingStatus from, const char* webhookToken,
                const char* wabaID, const char* callbackUri, const char* phoneID, const char* phonePin) override
    {
        if (from != REGISTER_WEBHOOKS && from != REGISTER_PHONE) {
            Refused(context, src, "Resume: `from` must be REGISTER_WEBHOOKS or REGISTER_PHONE");
            return;
        }
        Run(context, src, nullptr, nullptr, webhookToken, wabaID, callbackUri, phoneID, phonePin,
            static_cast<uint32_t>(from));
    }

    IWhatsAppClient* Client() override { return ClientAlive() ? client_ : nullptr; }

    wa_onboarding* capi() override { return onboarding_; }

    std::weak_ptr<void> LifeToken() { return std::weak_ptr<void>(Watch()); }

    // A watch on this object's life, safe against the destructor on another thread.
    std::weak_ptr<char> Watch()
    {
        std::lock_guard<std::mutex> lock(lifeMutex_);
        return life_;
    }

    // A line of this object (or of the seed-shaped Create finding no client, onboarding NULL) to
    // the user's log method, the host's log, and stderr when neither exists.
    static void Report(IWhatsAppOnboarding* self, UWhatsAppOnboarding* user, IInstanceLog* log,
                       detail::ClientServices* services, int level, const char* text) noexcept
    {
        bool hostLog = false;
        detail::LogFn hook = detail::log_hook();
        if (log != nullptr && hook != nullptr) {
            hook(log, level, text);
            hostLog = true;
        } else if (services != nullptr) {
            hostLog = services->HostLog(level, text);
        }
        bool toStderr = !hostLog;
        if (user != nullptr) {
            try {
                detail::default_log_called() = false;
                user->WhatsAppOnboardingLog(self, level, text);
                toStderr = toStderr && detail::default_log_called();
            } catch (...) {
                toStderr = true;
            }
        }
        if (toStderr && level <= static_cast<int>(WA_LOG_WARN))
            std::fprintf(stderr, "whatsapp-connector: %s\n", text);
    }

private:
    // One accepted run: carries the per-call context through request_ctx.
    struct Record {
        UWhatsAppOnboarding* context;
    };
    // The callbacks' user_data. Shared by this object and the library (until destroy), freed by
    // the later of the two: the client's free calls destroy too, possibly before this object
    // is deleted.
    struct Shim {
        explicit Shim(OnboardingImpl* owner) : impl(owner) {}
        OnboardingImpl* impl; // nullptr once the OnboardingImpl is deleted
        std::atomic<int> refs{2};
        std::mutex mutex;
        std::unordered_set<Record*> records; // accepted and not yet answered
    };

    static void Release(Shim* shim) noexcept
    {
        if (shim->refs.fetch_sub(1, std::memory_order_acq_rel) != 1)
            return;
        for (Record* record : shim->records)
            delete record;
        delete shim;
    }

    bool ClientAlive() const noexcept { return !clientLife_.expired(); }

    void Run(UWhatsAppOnboarding* context, const char* src, const char* version, const char* code,
             const char* webhookToken, const char* wabaID, const char* callbackUri, const char* phoneID,
             const char* phonePin, uint32_t from)
    {
        if (closing_.load()) {
            Refused(context, src, "the onboarding is closed");
            return;
        }
        if (!ClientAlive()) {
            LogLine(WA_LOG_ERROR, "Onboard: the client of this onboarding was deleted; no result follows");
            return;
        }
        auto text = [](const char* s) { return s != nullptr ? s : ""; };
        Record* record = new Record{context};
        {
            std::lock_guard<std::mutex> lock(shim_->mutex);
            shim_->records.insert(record);
        }
        wa_result r = wa_onboarding_onboard(onboarding_, record, src, version, code, text(webhookToken),
                                            text(wabaID), text(callbackUri), text(phoneID), text(phonePin), from);
        if (r != WA_OK) {
            DropRecord(shim_, record);
            std::string detail = LastErrorMessage();
            Refused(context, src, (std::string(ResultText(r)) + (detail.empty() ? "" : ": " + detail)).c_str());
        }
    }

    // A refused call: its Error + OnboardResult (UNSTARTED) by the client's next Dispatch().
    void Refused(UWhatsAppOnboarding* context, const char* src, const char* why)
    {
        if (!ClientAlive()) {
            LogLine(WA_LOG_ERROR, (std::string("refused, and the client is deleted: ") + why).c_str());
            return;
        }
        bool hasInfo = src != nullptr;
        std::string info = hasInfo ? src : "";
        std::string error = why;
        // When queued, the last statement: the delivery may delete this object (on another
        // thread in thread mode).
        bool queued = services_->Post(
            LifeToken(),
            [this, context, hasInfo, info, error] {
                Deliver(context, hasInfo ? info.c_str() : nullptr, UNSTARTED, nullptr, error.c_str());
            },
            false);
        if (!queued)
            LogLine(WA_LOG_ERROR, ("refused after the client's CloseComplete, which thread mode cannot "
                                   "follow with callbacks: " + error).c_str());
    }

    static void DropRecord(Shim* shim, Record* record) noexcept
    {
        {
            std::lock_guard<std::mutex> lock(shim->mutex);
            shim->records.erase(record);
        }
        delete record;
    }

    // Error (when not finished), then OnboardResult, on `context` (else the user). Stops when a
    // callback deleted this object.
    void Deliver(UWhatsAppOnboarding* context, const char* info, onboardingStatus status, const char* token,
                 const char* error) noexcept
    {
        UWhatsAppOnboarding* target = context != nullptr ? context : user_;
        if (target == nullptr)
            return;
        std::weak_ptr<char> watch = Watch(); // a handler may delete this object, then throw
        if (status != FINISHED) {
            try {
                target->WhatsAppOnboardingError(this, info, status, error != nullptr ? error : "");
            } catch (const std::exception& e) {
                ReportThrown(watch, this, "WhatsAppOnboardingError", e.what());
            } catch (...) {
                ReportThrown(watch, this, "WhatsAppOnboardingError", "unknown exception");
            }
            if (watch.expired())
                return;
        }
        try {
            target->WhatsAppOnboardingOnboardResult(this, info, status, token);
        } catch (const std::exception& e) {
            ReportThrown(watch, this, "WhatsAppOnboardingOnboardResult", e.what());
        } catch (...) {
            ReportThrown(watch, this, "WhatsAppOnboardingOnboardResult", "unknown exception");
        }
    }

    void DeliverCloseComplete() noexcept
    {
        if (user_ == nullptr)
            return;
        std::weak_ptr<char> watch = Watch(); // the handler may delete this object, then throw
        try {
            user_->WhatsAppOnboardingCloseComplete(this);
        } catch (const std::exception& e) {
            ReportThrown(watch, this, "WhatsAppOnboardingCloseComplete", e.what());
        } catch (...) {
            ReportThrown(watch, this, "WhatsAppOnboardingCloseComplete", "unknown exception");
        }
    }

    void LogLine(int level, const char* text) noexcept
    {
        Report(this, user_, log_, ClientAlive() ? services_ : nullptr, level, text);
    }

    // Reports an exception a U-method threw. A handler may delete this object and then throw:
    // `watch`, taken before the handler ran, says whether `self` is still there.
    static void ReportThrown(const std::weak_ptr<char>& watch, OnboardingImpl* self, const char* where,
                             const char* what) noexcept
    {
        char line[600];
        std::snprintf(line, sizeof line, "exception from %s: %s", where, what != nullptr ? what : "");
        if (!watch.expired())
            self->LogLine(WA_LOG_ERROR, line);
        else
            std::fprintf(stderr, "whatsapp-connector: %s\n", line);
    }

    // --- trampolines: every one is noexcept and catches all exceptions of user code ---

    static void OnCloseComplete(void* userData) noexcept
    {
        OnboardingImpl* self = static_cast<Shim*>(userData)->impl;
        if (self != nullptr)
            self->DeliverCloseComplete();
    }

    static void OnResult(void* userData, void* requestCtx, const char* callbackInfo, uint32_t status,
                         const char* token, const char* error) noexcept
    {
        Shim* shim = static_cast<Shim*>(userData);
        Record* record = static_cast<Record*>(requestCtx);
        UWhatsAppOnboarding* context = nullptr;
        if (record != nullptr) {
            context = record->context;
            DropRecord(shim, record);
        }
        if (shim->impl != nullptr)
            shim->impl->Deliver(context, callbackInfo, static_cast<onboardingStatus>(status), token, error);
    }

    static void OnDestroy(void* userData) noexcept { Release(static_cast<Shim*>(userData)); }

    IWhatsAppClient* const client_;
    const std::weak_ptr<void> clientLife_;
    detail::ClientServices* const services_;
    UWhatsAppOnboarding* const user_;
    IInstanceLog* const log_;
    wa_onboarding* onboarding_ = nullptr;
    std::atomic<bool> closing_{false};
    std::mutex lifeMutex_; // guards life_ (reset by the destructor, copied by deliveries)
    std::shared_ptr<char> life_ = std::make_shared<char>(0);
    Shim* shim_;
};

namespace detail {
// Creates the onboarding object of `client`; on failure returns nullptr and says why in `error`.
inline IWhatsAppOnboarding* CreateOnboarding(IWhatsAppClient* client, UWhatsAppOnboarding* user, IInstanceLog* log,
                                             std::string& error)
{
    ClientServices* services = client->Services();
    if (services == nullptr || client->capi() == nullptr) {
        error = "IWhatsAppOnboarding::Create: the client was not made by IWhatsAppClient::Create";
        return nullptr;
    }
    std::unique_ptr<OnboardingImpl> onboarding(new OnboardingImpl(client, services, user, log));
    if (!onboarding->Start()) {
        error = "IWhatsAppOnboarding::Create: " + LastErrorMessage();
        return nullptr;
    }
    return onboarding.release();
}
} // namespace detail
} // namespace wa

inline IWhatsAppOnboarding* IWhatsAppOnboarding::Create(IIoMux* const iomux, UWhatsAppOnboarding* const user,
                                                        ISocketProvider* const tcpSocketProvider,
                                                        ISocketProvider* const tlsSocketProvider,
                                                        IInstanceLog* const log, IDns* const dns,
                                                        ISocketContext* const socketContext)
{
    (void)iomux, (void)tcpSocketProvider, (void)tlsSocketProvider, (void)dns, (void)socketContext;
    IWhatsAppOnboarding* onboarding = nullptr;
    std::string error;
    {
        // Held while creating: the client cannot be deleted (unregistered) meanwhile. No user
        // code runs under it.
        std::lock_guard<std::mutex> lock(wa::detail::client_registry_mutex);
        if (wa::detail::client_registry.empty())
            error = "IWhatsAppOnboarding::Create: no IWhatsAppClient alive in this process; create the client "
                    "first (or use IWhatsAppOnboarding::Create(client, user))";
        else
            onboarding = wa::detail::CreateOnboarding(wa::detail::client_registry.back(), user, log, error);
    }
    if (onboarding == nullptr)
        wa::OnboardingImpl::Report(nullptr, user, log, nullptr, WA_LOG_ERROR, error.c_str());
    return onboarding;
}

inline IWhatsAppOnboarding* IWhatsAppOnboarding::Create(IWhatsAppClient* client, UWhatsAppOnboarding* user)
{
    std::string error = "IWhatsAppOnboarding::Create: client is NULL";
    IWhatsAppOnboarding* onboarding =
        client != nullptr ? wa::detail::CreateOnboarding(client, user, nullptr, error) : nullptr;
    if (onboarding == nullptr)
        wa::OnboardingImpl::Report(nullptr, user, nullptr, client != nullptr ? client->Services() : nullptr,
                                   WA_LOG_ERROR, error.c_str());
    return onboarding;
}
#endif /* WHATSAPP_CONNECTOR_HPP */
