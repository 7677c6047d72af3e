// C++ tests of the header-only layer against the emulator: every IWhatsAppClient method and
// every UWhatsAppClient callback, the thread every callback runs on, per-call contexts,
// refusals, lifetime (delete before close, delete inside CloseComplete), wa::PollLoop with two
// clients, the Options overload, thread mode, and the webhook entries.
#include "test_support.hpp"

#include <atomic>
#include <cstdio>
#include <string>
#include <unistd.h>
#include <mutex>
#include <vector>

namespace {

const char* const kChannel = "106540352242922";
const char* const kTo = "16505551234";
const char* const kSecret = "app-secret";

struct Result {
    IWhatsAppClient* client;
    whatsapp_error_t error;
    std::string info, content;
    std::thread::id thread;
};

struct Inbound {
    std::string kind; // "message", "media", "raw"
    std::vector<std::string> args;
};

// Records every callback and the thread it ran on.
class Recorder : public UWhatsAppClient {
public:
    std::vector<Result> results;
    std::vector<Inbound> inbound;
    std::vector<std::string> logs;
    std::vector<IWhatsAppClient*> closed;
    std::vector<std::thread::id> threads;
    bool deleteOnClose = false;
    std::mutex mutex; // thread-mode test only

    void WhatsAppClientSendMessageResult(IWhatsAppClient* client, whatsapp_error_t error, const char* info,
                                         const char* content) override
    {
        std::lock_guard<std::mutex> lock(mutex);
        threads.push_back(std::this_thread::get_id());
        results.push_back(Result{client, error, info ? info : "(null)", content ? content : "(null)",
                                 std::this_thread::get_id()});
    }
    void WhatsAppClientRecvMessage(IWhatsAppClient*, const char* msg, const char* tel, const char* channel,
                                   const char* type, const char* id, const char* refersToID) override
    {
        std::lock_guard<std::mutex> lock(mutex);
        threads.push_back(std::this_thread::get_id());
        inbound.push_back(Inbound{"message", {msg, tel, channel, type, id, refersToID ? refersToID : "(null)"}});
    }
    void WhatsAppClientRecvMedia(IWhatsAppClient*, const char* sender, const char* channel, const char* wamid,
                                 const char* mediaid, const char* mimeType) override
    {
        std::lock_guard<std::mutex> lock(mutex);
        threads.push_back(std::this_thread::get_id());
        inbound.push_back(Inbound{"media", {sender, channel, wamid, mediaid, mimeType}});
    }
    void WhatsAppClientRawChange(IWhatsAppClient*, const char* field, const char* valueJson) override
    {
        std::lock_guard<std::mutex> lock(mutex);
        threads.push_back(std::this_thread::get_id());
        inbound.push_back(Inbound{"raw", {field, valueJson}});
    }
    void WhatsAppClientLog(IWhatsAppClient*, int level, const char* text) override
    {
        std::lock_guard<std::mutex> lock(mutex);
        threads.push_back(std::this_thread::get_id());
        logs.push_back(std::to_string(level) + " " + text);
    }
    void WhatsAppClientCloseComplete(IWhatsAppClient* client) override
    {
        {
            std::lock_guard<std::mutex> lock(mutex);
            threads.push_back(std::this_thread::get_id());
            closed.push_back(client);
        }
        if (deleteOnClose)
            delete client;
    }
    bool AllOn(std::thread::id id)
    {
        std::lock_guard<std::mutex> lock(mutex);
        for (auto t : threads)
            if (t != id)
                return false;
        return !threads.empty();
    }
};

class JsonWriter {
public:
    explicit JsonWriter(std::string json) : json_(std::move(json)) {}
    unsigned short encode(unsigned short base, char* buffer)
    {
        lastBase = base;
        std::memcpy(buffer, json_.c_str(), json_.size() + 1);
        return static_cast<unsigned short>(json_.size());
    }
    unsigned short lastBase = 0;

private:
    std::string json_;
};

wa::Options BaseOptions()
{
    wa::Options o;
    o.GraphBaseUrl(test::EmulatorUrl()).LogLevel(WA_LOG_DEBUG);
    return o;
}

IWhatsAppClient* Configured(UWhatsAppClient* user, wa::Options options = BaseOptions())
{
    IWhatsAppClient* client = IWhatsAppClient::Create(options, user);
    CHECK(client != nullptr);
    if (client != nullptr)
        client->SetConfig("test-token", kSecret);
    return client;
}

void CloseAndDelete(IWhatsAppClient* client, Recorder& r)
{
    size_t before = r.closed.size();
    client->Close();
    CHECK(test::Pump(client, [&] { return r.closed.size() > before; }));
    delete client;
}

} // namespace

int main()
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const std::string url = test::EmulatorUrl();

    test::Run("JsonString quotes any text as a JSON string, and such a message is sent as written", [&] {
        CHECK_EQ_STR(wa::JsonString("plain").c_str(), "\"plain\"");
        CHECK_EQ_STR(wa::JsonString("a\"b\\c\n\r\t\b\f\x01 \xc3\xa9").c_str(),
                     "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001 \xc3\xa9\"");
        Recorder r;
        IWhatsAppClient* c = Configured(&r);
        std::string text = "say \"hi\", \\o/\",\"preview_url\":true";
        std::string message = "{\"body\":" + wa::JsonString(text) + "}";
        c->SendMessage(&r, message.c_str(), kTo, "text", kChannel, "quoted");
        CHECK(test::Pump(c, [&] { return r.results.size() == 1; }));
        CHECK(r.results.size() == 1 && r.results[0].error == WHATSAPP_ERR_OK);
        // The emulator received the text as one string (its log re-encodes it as JSON), and no
        // preview_url field was injected.
        host::HttpResponse rec = host::Http(url, "GET", "/_emulator/requests?path_contains=messages");
        CHECK(rec.body.find(R"("body":"say \"hi\", \\o/\",\"preview_url\":true")") != std::string::npos);
        CHECK(rec.body.find(R"("preview_url":true)") == std::string::npos);
        CloseAndDelete(c, r);
    });

    test::Run("the environment is kept out by WebhookListen(\"\") or UseEnvironment(false)", [&] {
        ::setenv("WA_WEBHOOK_LISTEN", "127.0.0.1:0", 1);
        ::setenv("WA_API_VERSION", "v25.0", 1);
        Recorder r;
        IWhatsAppClient* fromEnv = IWhatsAppClient::Create(BaseOptions(), &r);
        IWhatsAppClient* noListener = IWhatsAppClient::Create(BaseOptions().WebhookListen(""), &r);
        IWhatsAppClient* own = IWhatsAppClient::Create(BaseOptions().UseEnvironment(false), &r);
        ::unsetenv("WA_WEBHOOK_LISTEN");
        ::unsetenv("WA_API_VERSION");
        CHECK(fromEnv != nullptr && noListener != nullptr && own != nullptr);
        if (fromEnv == nullptr || noListener == nullptr || own == nullptr)
            return;
        CHECK(fromEnv->WebhookPort() > 0);
        CHECK_EQ_STR(fromEnv->GetVersion(), "v25.0");
        CHECK(noListener->WebhookPort() == 0);
        CHECK_EQ_STR(noListener->GetVersion(), "v25.0"); // the rest still from the environment
        CHECK(own->WebhookPort() == 0);
        CHECK_EQ_STR(own->GetVersion(), "v26.0");
        CloseAndDelete(fromEnv, r);
        CloseAndDelete(noListener, r);
        CloseAndDelete(own, r);
    });

    test::Run("seed Create from the environment; GetVersion, EventFd, WebhookPort", [&] {
        ::setenv("WA_GRAPH_BASE_URL", url.c_str(), 1);
        ::setenv("WA_WEBHOOK_LISTEN", "127.0.0.1:0", 1);
        Recorder r;
        IWhatsAppClient* c = IWhatsAppClient::Create(nullptr, &r, nullptr, nullptr, nullptr, nullptr);
        ::unsetenv("WA_WEBHOOK_LISTEN");
        CHECK(c != nullptr);
        if (c == nullptr)
            return;
        CHECK_EQ_STR(c->GetVersion(), "v26.0");
        CHECK(c->EventFd() >= 0);
        CHECK(c->WebhookPort() > 0);
        CHECK(c->capi() != nullptr);
        c->SetConfig("test-token", kSecret);
        c->SendMessage(&r, "{\"body\":\"seed\"}", kTo, "text", kChannel, "seed");
        CHECK(test::Pump(c, [&] { return r.results.size() == 1; }));
        CHECK(r.results.size() == 1 && r.results[0].error == WHATSAPP_ERR_OK);
        CHECK(r.results.size() == 1 && r.results[0].content.rfind("wamid.", 0) == 0);
        CHECK(r.results.size() == 1 && r.results[0].client == c);
        CloseAndDelete(c, r);
    });

    test::Run("every callback runs on the thread calling Dispatch (a second thread)", [&] {
        Recorder r;
        IWhatsAppClient* c = Configured(&r);
        std::thread::id loopThread;
        std::atomic<bool> ready{false};
        // Sends happen here; the loop (and so every callback) runs on another thread.
        for (int i = 0; i < 5; i++)
            c->SendMessage(&r, "{\"body\":\"x\"}", kTo, "text", kChannel, "t");
        std::thread loop([&] {
            loopThread = std::this_thread::get_id();
            ready = true;
            test::Pump(c, [&] { return r.results.size() == 5; });
            c->Close();
            test::Pump(c, [&] { return !r.closed.empty(); });
        });
        loop.join();
        CHECK(ready);
        CHECK(r.results.size() == 5);
        CHECK(r.closed.size() == 1);
        CHECK(r.AllOn(loopThread));
        CHECK(loopThread != std::this_thread::get_id());
        delete c;
    });

    test::Run("per-call context gets the result; a NULL context goes to the user", [&] {
        Recorder user, contextA, contextB;
        IWhatsAppClient* c = Configured(&user);
        c->SendMessage(&contextA, "{\"body\":\"a\"}", kTo, "text", kChannel, "to-a");
        c->SendMessage(&contextB, "{\"body\":\"b\"}", kTo, "text", kChannel, "to-b");
        c->SendMessage(nullptr, "{\"body\":\"u\"}", kTo, "text", kChannel);
        CHECK(test::Pump(c, [&] {
            return contextA.results.size() == 1 && contextB.results.size() == 1 && user.results.size() == 1;
        }));
        CHECK(contextA.results.size() == 1 && contextA.results[0].info == "to-a");
        CHECK(contextB.results.size() == 1 && contextB.results[0].info == "to-b");
        CHECK(user.results.size() == 1 && user.results[0].info == "(null)"); // callback_info NULL stays NULL
        CloseAndDelete(c, user);
    });

    test::Run("json_io-style writer overload; refersToID", [&] {
        Recorder r;
        IWhatsAppClient* c = Configured(&r);
        JsonWriter writer("{\"latitude\":52.5,\"longitude\":13.4,\"name\":\"Berlin\"}");
        c->SendMessage(&r, writer, 0xffff, kTo, "location", kChannel, "loc");
        CHECK(writer.lastBase == 0xffff);
        c->SendMessage(&r, "{\"body\":\"reply\"}", kTo, "text", kChannel, "reply", "wamid.ORIGINAL");
        CHECK(test::Pump(c, [&] { return r.results.size() == 2; }));
        for (auto& result : r.results)
            CHECK(result.error == WHATSAPP_ERR_OK);
        host::HttpResponse rec = host::Http(url, "GET", "/_emulator/requests?path_contains=messages");
        CHECK(rec.body.find("Berlin") != std::string::npos);
        CHECK(rec.body.find("wamid.ORIGINAL") != std::string::npos);
        CloseAndDelete(c, r);
    });

    test::Run("refusals: a deferred result via Dispatch; TrySendMessage returns the code", [&] {
        Recorder r;
        IWhatsAppClient* c = Configured(&r);
        c->SendMessage(&r, "{not json", kTo, "text", kChannel, "bad");
        CHECK(r.results.empty()); // never inside the call
        pollfd p{c->EventFd(), POLLIN, 0};
        CHECK(::poll(&p, 1, 1000) == 1); // the event fd is woken for it
        c->Dispatch();
        CHECK(r.results.size() == 1);
        if (r.results.size() == 1) {
            CHECK(r.results[0].error == WHATSAPP_ERR_BAD_REQUEST);
            CHECK_EQ_STR(r.results[0].info, "bad");
            CHECK(r.results[0].content.find("JSON") != std::string::npos);
        }
        CHECK(c->TrySendMessage(&r, "{\"body\":\"x\"}", kTo, "no-such-type", kChannel) == WA_ERR_UNKNOWN_TYPE);
        CHECK(c->TrySendMessage(&r, "{\"body\":\"x\"}", kTo, "text", kChannel, "ok") == WA_OK);
        CHECK(test::Pump(c, [&] { return r.results.size() == 2; }));
        c->Dispatch();
        CHECK(r.results.size() == 2); // nothing for the refused TrySendMessage
        CloseAndDelete(c, r);
    });

    test::Run("a refusal the host may retry (outbox full) is OTHER_HTTP, not BAD_REQUEST", [&] {
        Recorder r;
        wa::Options options = BaseOptions();
        options.OutboxCapacity(1);
        IWhatsAppClient* c = IWhatsAppClient::Create(options, &r); // no token: the first is held
        CHECK(c != nullptr);
        c->SendMessage(&r, "{\"body\":\"held\"}", kTo, "text", kChannel, "first");
        c->SendMessage(&r, "{\"body\":\"no room\"}", kTo, "text", kChannel, "second");
        CHECK(test::Pump(c, [&] { return r.results.size() == 1; }));
        if (r.results.size() == 1) {
            CHECK(r.results[0].error == WHATSAPP_ERR_OTHER_HTTP);
            CHECK_EQ_STR(r.results[0].info, "second");
            CHECK(r.results[0].content.find("outbox is full") != std::string::npos);
        }
        CloseAndDelete(c, r);
    });

    test::Run("SetConfig releases messages held for a token", [&] {
        Recorder r;
        IWhatsAppClient* c = IWhatsAppClient::Create(BaseOptions(), &r);
        CHECK(c != nullptr);
        c->SendMessage(&r, "{\"body\":\"held\"}", kTo, "text", kChannel, "held");
        test::Pump(c, [] { return false; }, 300);
        CHECK(r.results.empty());
        CHECK(c->Pending() == 1);
        c->SetConfig("test-token", kSecret);
        CHECK(test::Pump(c, [&] { return r.results.size() == 1; }));
        CHECK(r.results.size() == 1 && r.results[0].error == WHATSAPP_ERR_OK);
        CHECK(c->Pending() == 0);
        CloseAndDelete(c, r);
    });

    test::Run("SetWebhookToken and the verification GET through WebhookRequest", [&] {
        Recorder r;
        IWhatsAppClient* c = Configured(&r);
        c->SetWebhookToken("verify-me");
        wa::WebhookReply reply;
        std::string challenge(300, '7'); // longer than the first buffer: exercises the retry
        CHECK(c->WebhookRequest("GET", ("/webhook?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=" +
                                        challenge).c_str(),
                                nullptr, nullptr, 0, reply) == WA_OK);
        CHECK(reply.status == 200);
        CHECK_EQ_STR(reply.body, challenge);
        CHECK(c->WebhookRequest("GET", "/webhook?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
                                nullptr, nullptr, 0, reply) == WA_OK);
        CHECK(reply.status == 403);
        CloseAndDelete(c, r);
    });

    test::Run("inbound through WebhookRequest: RawChange, RecvMedia then RecvMessage", [&] {
        Recorder r;
        IWhatsAppClient* c = Configured(&r);
        std::string text = test::InboundBody(kChannel, kTo, "wamid.IN1", "\"type\":\"text\",\"text\":{\"body\":\"hello\"}");
        std::string image = test::InboundBody(
            kChannel, kTo, "wamid.IN2",
            "\"type\":\"image\",\"image\":{\"id\":\"MEDIA1\",\"mime_type\":\"image/jpeg\",\"caption\":\"cat\"}");
        wa::WebhookReply reply;
        CHECK(c->WebhookRequest("POST", "/webhook", host::HubSignature(kSecret, text).c_str(), text.data(),
                                text.size(), reply) == WA_OK);
        CHECK(reply.status == 200);
        CHECK(c->WebhookRequest("POST", "/webhook", host::HubSignature(kSecret, image).c_str(), image.data(),
                                image.size(), reply) == WA_OK);
        CHECK(reply.status == 200);
        CHECK(c->WebhookRequest("POST", "/webhook", "sha256=00", text.data(), text.size(), reply) == WA_OK);
        CHECK(reply.status == 403);
        CHECK(r.inbound.empty()); // delivered by Dispatch only
        CHECK(test::Pump(c, [&] { return r.inbound.size() == 5; }));
        std::vector<std::string> kinds;
        for (auto& in : r.inbound)
            kinds.push_back(in.kind);
        CHECK((kinds == std::vector<std::string>{"raw", "message", "raw", "media", "message"}));
        if (r.inbound.size() == 5) {
            CHECK((r.inbound[1].args ==
                   std::vector<std::string>{"hello", kTo, kChannel, "text", "wamid.IN1", "(null)"}));
            CHECK((r.inbound[3].args == std::vector<std::string>{kTo, kChannel, "wamid.IN2", "MEDIA1", "image/jpeg"}));
            CHECK_EQ_STR(r.inbound[4].args[0], "cat");
            CHECK_EQ_STR(r.inbound[4].args[3], "image");
            CHECK_EQ_STR(r.inbound[0].args[0], "messages");
        }
        CloseAndDelete(c, r);
    });

    test::Run("inbound through the built-in listener (WebhookListen, WebhookPort)", [&] {
        Recorder r;
        wa::Options o = BaseOptions();
        o.WebhookListen("127.0.0.1:0");
        IWhatsAppClient* c = Configured(&r, o);
        int port = c->WebhookPort();
        CHECK(port > 0);
        std::string body = test::InboundBody(kChannel, kTo, "wamid.IN3", "\"type\":\"text\",\"text\":{\"body\":\"via http\"}");
        host::HttpResponse answer = host::Http("127.0.0.1", port, "POST", "/webhook", body,
                                               {"X-Hub-Signature-256: " + host::HubSignature(kSecret, body)});
        CHECK(answer.status == 200);
        CHECK(test::Pump(c, [&] {
            for (auto& in : r.inbound)
                if (in.kind == "message")
                    return true;
            return false;
        }));
        for (auto& in : r.inbound)
            if (in.kind == "message")
                CHECK((in.args == std::vector<std::string>{"via http", kTo, kChannel, "text", "wamid.IN3", "(null)"}));
        CloseAndDelete(c, r);
    });

    test::Run("Log callback receives the library's lines", [&] {
        Recorder r;
        IWhatsAppClient* c = Configured(&r);
        c->SendMessage(&r, "{\"body\":\"x\"}", kTo, "text", kChannel);
        CHECK(test::Pump(c, [&] { return r.results.size() == 1; }));
        CloseAndDelete(c, r);
        CHECK(!r.logs.empty());
        for (auto& line : r.logs)
            CHECK(line.find("test-token") == std::string::npos); // never a secret
    });

    test::Run("Close: pending sends end CLOSING, CloseComplete last, delete inside it, Close twice", [&] {
        Recorder r;
        r.deleteOnClose = true;
        IWhatsAppClient* c = IWhatsAppClient::Create(BaseOptions(), &r); // no token: held
        for (int i = 0; i < 3; i++)
            c->SendMessage(&r, "{\"body\":\"x\"}", kTo, "text", kChannel, "held");
        c->Close();
        c->Close(); // no-op
        c->SendMessage(&r, "{\"body\":\"late\"}", kTo, "text", kChannel, "late"); // refused: CLOSING
        int fd = c->EventFd();
        for (int i = 0; i < 500 && r.closed.empty(); i++) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 20) > 0)
                c->Dispatch(); // deletes c from inside CloseComplete
        }
        CHECK(r.closed.size() == 1);
        CHECK(r.results.size() == 4);
        for (auto& result : r.results)
            CHECK(result.error == WHATSAPP_ERR_CLOSING);
    });

    test::Run("a send refused in a callback after Close() comes before CloseComplete", [&] {
        struct SendsFromCallback : Recorder {
            IWhatsAppClient* client = nullptr;
            std::vector<std::string> order;
            void WhatsAppClientSendMessageResult(IWhatsAppClient* c, whatsapp_error_t error, const char* info,
                                                 const char* content) override
            {
                Recorder::WhatsAppClientSendMessageResult(c, error, info, content);
                order.push_back(std::string("result ") + (info ? info : "(null)"));
                if (order.size() == 1)
                    client->SendMessage(this, "{\"body\":\"late\"}", kTo, "text", kChannel, "late");
            }
            void WhatsAppClientCloseComplete(IWhatsAppClient* c) override
            {
                order.push_back("close");
                Recorder::WhatsAppClientCloseComplete(c);
            }
        } r;
        IWhatsAppClient* c = IWhatsAppClient::Create(BaseOptions(), &r); // no token: held
        r.client = c;
        c->SendMessage(&r, "{\"body\":\"x\"}", kTo, "text", kChannel, "held");
        c->Close();
        CHECK(test::Pump(c, [&] { return !r.closed.empty(); }));
        CHECK((r.order == std::vector<std::string>{"result held", "result late", "close"}));
        delete c;
    });

    test::Run("delete before close complete: no callback afterwards, nothing leaks", [&] {
        Recorder r;
        host::Http(url, "POST", "/_emulator/faults", "{\"match\":{\"to\":\"16505550000\"},\"times\":3,\"action\":{\"delay_ms\":400}}");
        IWhatsAppClient* c = Configured(&r);
        for (int i = 0; i < 3; i++)
            c->SendMessage(&r, "{\"body\":\"x\"}", "16505550000", "text", kChannel, "gone");
        c->SendMessage(&r, "{bad", kTo, "text", kChannel, "refused"); // deferred refusal, discarded too
        delete c;
        CHECK(r.results.empty());
        CHECK(r.closed.empty());
        host::Http(url, "DELETE", "/_emulator/faults");
    });

    test::Run("wa::PollLoop with two clients sharing one UWhatsAppClient", [&] {
        Recorder r;
        r.deleteOnClose = true;
        IWhatsAppClient* a = Configured(&r);
        IWhatsAppClient* b = Configured(&r);
        wa::PollLoop loop;
        loop.Add(a);
        loop.Add(b);
        CHECK(loop.Size() == 2);
        a->SendMessage(nullptr, "{\"body\":\"a\"}", kTo, "text", kChannel, "a");
        b->SendMessage(nullptr, "{\"body\":\"b\"}", kTo, "text", kChannel, "b");
        CHECK(loop.Run([&] { return r.results.size() == 2; }, 10000));
        bool sawA = false, sawB = false;
        for (auto& result : r.results) {
            sawA = sawA || (result.client == a && result.info == "a");
            sawB = sawB || (result.client == b && result.info == "b");
        }
        CHECK(sawA && sawB);
        a->Close();
        b->Close();
        CHECK(loop.Run([&] { return r.closed.size() == 2; }, 10000));
        CHECK(loop.Size() == 0); // deleted inside CloseComplete: gone from the loop
        CHECK(r.AllOn(std::this_thread::get_id()));
    });

    test::Run("Options: media settings and the durable outbox reach the library", [&] {
        Recorder r;
        std::string store = "wa-cpp-options-" + std::to_string(::getpid()) + ".sqlite";
        std::remove(store.c_str());
        wa::Options o = BaseOptions();
        o.WebhookListen("127.0.0.1:0")
            .MediaAccessToken("media-secret-1")
            .AllowMediaHost("media.example.com")
            .MediaMaxBytes(1 << 20)
            .OutboxPath(store);
        IWhatsAppClient* c = Configured(&r, o);
        CHECK(c != nullptr);
        if (c != nullptr) {
            FILE* created = std::fopen(store.c_str(), "rb");
            CHECK(created != nullptr); // the store exists once the client does
            if (created != nullptr)
                std::fclose(created);
            int port = c->WebhookPort();
            // Without the token getMedia refuses; with it the request gets as far as its id.
            CHECK(host::Http("127.0.0.1", port, "GET", "/client/getMedia?id=").status == 401);
            CHECK(host::Http("127.0.0.1", port, "GET", "/client/getMedia?id=&access_token=media-secret-1").status == 400);
            CloseAndDelete(c, r);
        }
        std::remove(store.c_str());
        std::remove((store + "-wal").c_str());
        std::remove((store + "-shm").c_str());
        // Refused values: Create fails with the setter's reason.
        CHECK(IWhatsAppClient::Create(wa::Options().MediaAccessToken("short"), &r) == nullptr);
        CHECK(wa::LastErrorMessage().find("8 characters") != std::string::npos);
        CHECK(IWhatsAppClient::Create(wa::Options().AllowMediaHost("evil.example/x"), &r) == nullptr);
        CHECK(IWhatsAppClient::Create(wa::Options().MediaMaxBytes(0), &r) == nullptr);
        CHECK(IWhatsAppClient::Create(wa::Options().OutboxPath(""), &r) == nullptr);
    });

    test::Run("Options overload: version, invalid setting, thread mode", [&] {
        Recorder r;
        wa::Options o = BaseOptions();
        o.ApiVersion("v99.0").ChannelRate(0).Retry(2, 1000, 10, 20).DrainTimeoutMs(100);
        IWhatsAppClient* c = IWhatsAppClient::Create(o, &r);
        CHECK(c != nullptr);
        if (c != nullptr) {
            CHECK_EQ_STR(c->GetVersion(), "v99.0");
            CHECK(c->WebhookPort() == 0);
            CloseAndDelete(c, r);
        }
        wa::Options bad;
        bad.GraphBaseUrl("http://127.0.0.1:1/with/path");
        CHECK(IWhatsAppClient::Create(bad, &r) == nullptr);
        CHECK(!wa::LastErrorMessage().empty());

        Recorder t;
        wa::Options threaded = BaseOptions();
        threaded.DispatchMode(WA_DISPATCH_THREAD).DispatchBatchingUs(0);
        CHECK(IWhatsAppClient::Create(wa::Options().DispatchBatchingUs(1000001), &r) == nullptr);
        IWhatsAppClient* tc = Configured(&t, threaded);
        CHECK(tc->EventFd() == -1);
        tc->SendMessage(&t, "{\"body\":\"t\"}", kTo, "text", kChannel, "t");
        for (int i = 0; i < 500; i++) {
            {
                std::lock_guard<std::mutex> lock(t.mutex);
                if (!t.results.empty())
                    break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        {
            std::lock_guard<std::mutex> lock(t.mutex);
            CHECK(t.results.size() == 1);
            CHECK(t.results.size() == 1 && t.results[0].thread != std::this_thread::get_id());
        }
        // A refusal too arrives on the library's thread, like every callback, not in the call.
        tc->SendMessage(&t, "{bad", kTo, "text", kChannel, "refused");
        for (int i = 0; i < 500; i++) {
            {
                std::lock_guard<std::mutex> lock(t.mutex);
                if (t.results.size() == 2)
                    break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        {
            std::lock_guard<std::mutex> lock(t.mutex);
            CHECK(t.results.size() == 2);
            CHECK(t.results.size() == 2 && t.results[1].error == WHATSAPP_ERR_BAD_REQUEST &&
                  t.results[1].thread == t.results[0].thread);
        }
        tc->Close();
        for (int i = 0; i < 500; i++) {
            {
                std::lock_guard<std::mutex> lock(t.mutex);
                if (!t.closed.empty())
                    break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        // After CloseComplete a refused call gets no callback and leaves nothing pending.
        tc->SendMessage(&t, "{bad", kTo, "text", kChannel, "after-close");
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        CHECK(tc->Pending() == 0);
        {
            std::lock_guard<std::mutex> lock(t.mutex);
            CHECK(t.results.size() == 2);
        }
        delete tc;
        CHECK(t.closed.size() == 1);
    });

    test::Run("RequestMedia: the result reaches the per-call context with the media id", [&] {
        Recorder user, context;
        IWhatsAppClient* c = Configured(&user);
        // The emulator knows no media with this id: the library answers NOT_FOUND (the plumbing
        // of context and callback_info is what is tested here; the transfer is the library's).
        c->RequestMedia(&context, "http://127.0.0.1:9/sink", "424242", "image/jpeg");
        c->RequestMedia(&context, nullptr, "434343", nullptr); // refused: reported by Dispatch
        CHECK(test::Pump(c, [&] { return context.results.size() == 2; }));
        CHECK(user.results.empty());
        bool sawNotFound = false, sawRefused = false;
        for (auto& result : context.results) {
            sawNotFound = sawNotFound || (result.info == "424242" && result.error == WHATSAPP_ERR_NOT_FOUND);
            sawRefused = sawRefused || (result.info == "434343" && result.error == WHATSAPP_ERR_BAD_REQUEST);
        }
        CHECK(sawNotFound);
        CHECK(sawRefused);
        CloseAndDelete(c, user);
    });

    test::Run("library helpers", [&] {
        CHECK(std::string(wa::LibraryVersion()).size() > 0);
        CHECK_EQ_STR(wa::ErrorName(WHATSAPP_ERR_NOT_FOUND), "WHATSAPP_ERR_NOT_FOUND");
        CHECK(std::string(wa::ResultText(WA_ERR_CLOSED)).size() > 0);
    });

    test::Run("Dispatch() from inside a callback: refusals only, no error; nothing after CloseComplete", [&] {
        class Nesting : public Recorder {
        public:
            void WhatsAppClientSendMessageResult(IWhatsAppClient* client, whatsapp_error_t error, const char* info,
                                                 const char* content) override
            {
                Recorder::WhatsAppClientSendMessageResult(client, error, info, content);
                client->Dispatch(); // nested: the outer Dispatch delivers the library's callbacks
            }
        };
        Nesting r;
        IWhatsAppClient* c = Configured(&r);
        c->SendMessage(&r, "{\"body\":\"x\"}", kTo, "text", kChannel, "nested");
        CHECK(test::Pump(c, [&] { return r.results.size() == 1; }));
        for (auto& line : r.logs)
            CHECK(line.find("Dispatch:") == std::string::npos);
        c->Close();
        CHECK(test::Pump(c, [&] { return r.closed.size() == 1; }));
        // A call refused after CloseComplete gets no callback (poll mode too).
        c->SendMessage(&r, "{bad", kTo, "text", kChannel, "after-close");
        test::Pump(c, [] { return false; }, 200);
        CHECK(r.results.size() == 1);
        CHECK(c->Pending() == 0);
        delete c;
    });

    return test::Finish();
}
