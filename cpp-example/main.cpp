// cpp-example: a small C++17 host of whatsapp-connector written against the seed's classes.
//
//   cpp-example [emulator-url]
//
// Without an URL it starts the wa-emulator itself (WA_EMULATOR, else the path CMake built it
// at). It creates the client through the seed-shaped IWhatsAppClient::Create (configured from
// WA_GRAPH_BASE_URL and WA_WEBHOOK_LISTEN=127.0.0.1:0), runs a poll() event loop on the main
// thread with the client's event fd, points the emulator's webhook at the built-in listener,
// sends a text, a reaction to it, a location and an image by link, receives a simulated inbound
// text and image (RecvMedia + RecvMessage), answers the text (echo bot), forwards the inbound
// image to a small HTTP receiver of its own with RequestMedia, closes, and exits 0
// only if every expected callback arrived, each on the loop thread.
#include "whatsapp_connector.hpp"
#include "host_support.hpp"

#include <poll.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#ifndef WA_EMULATOR_PATH
#define WA_EMULATOR_PATH "wa-emulator"
#endif

namespace {

const char* const kToken = "test-token";
const char* const kAppSecret = "demo-app-secret";
const char* const kVerifyToken = "demo-verify-token";
const char* const kChannel = "106540352242922";
const char* const kCustomer = "16505551234";

// A minimal JSON writer with the shape of the SDK's json_io (encode(base, buffer) returns the
// length), to show that json_io call sites compile unchanged.
class LocationWriter {
public:
    LocationWriter(double latitude, double longitude, const char* name)
        : latitude_(latitude), longitude_(longitude), name_(name)
    {
    }
    unsigned short encode(unsigned short base, char* buffer)
    {
        (void)base; // json_io: the handle of the element to encode; one object here
        int n = std::snprintf(buffer, 65535, "{\"latitude\":%.4f,\"longitude\":%.4f,\"name\":\"%s\"}", latitude_,
                              longitude_, name_);
        return static_cast<unsigned short>(n);
    }

private:
    double latitude_, longitude_;
    const char* name_;
};

class DemoHost : public UWhatsAppClient {
public:
    IWhatsAppClient* client = nullptr;
    std::thread::id loopThread = std::this_thread::get_id();
    int wrongThread = 0;
    int okResults = 0;
    int failedResults = 0;
    bool closed = false;
    bool gotInboundText = false;
    bool gotInboundImage = false;
    bool gotMedia = false;
    bool echoSent = false;
    bool mediaForwarded = false;
    std::string textWamid;
    std::string mediaId;
    std::string sinkUrl;
    std::string emulatorUrl;
    bool mediaRequested = false;

    void Check(const char* what)
    {
        if (std::this_thread::get_id() != loopThread) {
            wrongThread++;
            std::printf("  !! %s ran on another thread\n", what);
        }
    }

    void WhatsAppClientSendMessageResult(IWhatsAppClient* c, whatsapp_error_t error, const char* info,
                                         const char* content) override
    {
        Check("SendMessageResult");
        std::string tag = info != nullptr ? info : "";
        if (!mediaId.empty() && tag == mediaId) {
            // RequestMedia's result: callback_info = the media id, content = the HTTP status.
            std::printf("<- result   media      %s destination answered %s\n", wa::ErrorName(error),
                        content != nullptr ? content : "");
            mediaForwarded = error == WHATSAPP_ERR_OK && std::string(content) == "200";
            (mediaForwarded ? okResults : failedResults)++;
            return;
        }
        std::printf("<- result   %-10s %s %s\n", tag.c_str(), wa::ErrorName(error), content != nullptr ? content : "");
        if (error != WHATSAPP_ERR_OK) {
            failedResults++;
            return;
        }
        okResults++;
        if (tag == "text") {
            // React to the text just sent: its wamid is the content.
            textWamid = content;
            std::string reaction = "{\"message_id\":\"" + textWamid + "\",\"emoji\":\"\\ud83d\\udc4d\"}";
            std::printf("-> send     reaction to %s\n", textWamid.c_str());
            c->SendMessage(this, reaction.c_str(), kCustomer, "reaction", kChannel, "reaction");
        }
    }

    void WhatsAppClientRecvMessage(IWhatsAppClient* c, const char* msg, const char* tel, const char* channel,
                                   const char* type, const char* id, const char* refersToID) override
    {
        Check("RecvMessage");
        std::printf("<- inbound  %-10s from %s on %s: %s (id %s%s%s)\n", type, tel, channel, msg, id,
                    refersToID ? ", refers to " : "", refersToID ? refersToID : "");
        std::string kind = type;
        if (kind == "text") {
            gotInboundText = true;
            // The echo bot: answer the text as a reply to it.
            std::string reply = std::string("{\"body\":\"You said: ") + msg + "\"}";
            std::printf("-> send     echo to %s\n", tel);
            c->SendMessage(this, reply.c_str(), tel, "text", channel, "echo", id);
            echoSent = true;
        } else if (kind == "image") {
            gotInboundImage = true;
        }
    }

    void WhatsAppClientRecvMedia(IWhatsAppClient* c, const char* sender, const char* channel, const char* wamid,
                                 const char* mediaid, const char* mimeType) override
    {
        Check("RecvMedia");
        std::printf("<- media    from %s on %s: media id %s (%s), message %s\n", sender, channel, mediaid,
                    mimeType, wamid);
        gotMedia = true;
        mediaId = mediaid;
        // Forward only when the emulator serves Graph's media route (GET /{version}/{media-id});
        // older emulators answer it with code 100, and the step is reported as skipped.
        host::HttpResponse probe = host::Http(emulatorUrl, "GET", std::string("/") + c->GetVersion() + "/" + mediaid,
                                              "", {std::string("Authorization: Bearer ") + kToken});
        if (probe.status != 200) {
            std::printf("   skip     media forward: this emulator does not serve GET /{media-id} (%d)\n",
                        probe.status);
            return;
        }
        mediaRequested = true;
        std::printf("-> request  media %s to %s\n", mediaid, sinkUrl.c_str());
        c->RequestMedia(this, sinkUrl.c_str(), mediaid, mimeType);
    }

    void WhatsAppClientCloseComplete(IWhatsAppClient* c) override
    {
        Check("CloseComplete");
        std::printf("<- closed\n");
        closed = true;
        delete c; // allowed inside CloseComplete
        client = nullptr;
    }

    void WhatsAppClientLog(IWhatsAppClient*, int level, const char* text) override
    {
        Check("Log");
        if (level <= static_cast<int>(WA_LOG_WARN))
            std::printf("   log      %d %s\n", level, text);
    }
};

host::HttpSink* g_sink = nullptr; // the destination of RequestMedia, served by the same loop

// Runs the loop until `done` or `ms` milliseconds passed.
template <class Done>
bool RunLoop(DemoHost& host, int ms, Done done)
{
    for (int waited = 0; !done(); waited += 50) {
        if (host.client == nullptr || waited >= ms)
            return done();
        pollfd p[2] = {{host.client->EventFd(), POLLIN, 0}, {g_sink->Fd(), POLLIN, 0}};
        if (::poll(p, 2, 50) <= 0)
            continue;
        if (p[1].revents & POLLIN) {
            std::string head, body;
            if (g_sink->ServeOne(head, body))
                std::printf("   receiver got %s (%zu bytes)\n", head.substr(0, head.find('\r')).c_str(), body.size());
        }
        if (p[0].revents & POLLIN)
            host.client->Dispatch(); // every callback runs here, on this thread
    }
    return true;
}

bool Control(const std::string& url, const std::string& target, const std::string& body)
{
    host::HttpResponse r = host::Http(url, "POST", target, body);
    std::printf("   emulator POST %s -> %d %s\n", target.c_str(), r.status, r.body.c_str());
    return r.status == 200;
}

} // namespace

int main(int argc, char** argv)
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    host::Emulator emulator;
    std::string url;
    if (argc > 1) {
        url = argv[1];
    } else {
        const char* path = std::getenv("WA_EMULATOR");
        std::string error;
        if (!emulator.Start(path != nullptr ? path : WA_EMULATOR_PATH, {}, error)) {
            std::fprintf(stderr, "cannot start the emulator: %s\n", error.c_str());
            return 1;
        }
        url = emulator.Url();
    }
    std::printf("emulator   %s\n", url.c_str());

    // The seed-shaped Create reads its settings from the environment.
    ::setenv("WA_GRAPH_BASE_URL", url.c_str(), 1);
    ::setenv("WA_WEBHOOK_LISTEN", "127.0.0.1:0", 1);
    host::HttpSink sink;
    g_sink = &sink;
    DemoHost demo;
    demo.emulatorUrl = url;
    demo.sinkUrl = "http://127.0.0.1:" + std::to_string(sink.Port()) + "/media";
    demo.client = IWhatsAppClient::Create(nullptr, &demo, nullptr, nullptr, nullptr, nullptr);
    if (demo.client == nullptr) {
        std::fprintf(stderr, "Create failed: %s\n", wa::LastErrorMessage().c_str());
        return 1;
    }
    IWhatsAppClient* client = demo.client;
    unsigned port = client->WebhookPort();
    std::printf("library    %s, Graph API %s, webhook listener on port %u\n", wa::LibraryVersion(),
                client->GetVersion(), port);

    client->SetConfig(kToken, kAppSecret);
    client->SetWebhookToken(kVerifyToken);
    bool webhookOk = Control(url, "/_emulator/webhook/config",
                             "{\"url\":\"http://127.0.0.1:" + std::to_string(port) + "/webhook\",\"app_secret\":\"" +
                                 kAppSecret + "\",\"verify_token\":\"" + kVerifyToken + "\"}");
    webhookOk = webhookOk && Control(url, "/_emulator/webhook/verify", "{}");

    std::printf("-> send     text, location (json_io-style writer), image by link\n");
    client->SendMessage(&demo, "{\"body\":\"Hello from C++\",\"preview_url\":false}", kCustomer, "text", kChannel,
                        "text");
    LocationWriter location(52.52, 13.405, "Berlin");
    client->SendMessage(&demo, location, 0xffff, kCustomer, "location", kChannel, "location");
    client->SendMessage(&demo, "{\"link\":\"https://example.com/cat.png\",\"caption\":\"a cat\"}", kCustomer,
                        "image", kChannel, "image");
    RunLoop(demo, 10000, [&] { return demo.okResults + demo.failedResults >= 4; });

    if (webhookOk) {
        Control(url, "/_emulator/webhook/inbound",
                std::string("{\"from\":\"") + kCustomer + "\",\"phone_number_id\":\"" + kChannel +
                    "\",\"type\":\"text\",\"text\":{\"body\":\"Hi bot\"}}");
        Control(url, "/_emulator/webhook/inbound",
                std::string("{\"from\":\"") + kCustomer + "\",\"phone_number_id\":\"" + kChannel +
                    "\",\"type\":\"image\",\"image\":{\"caption\":\"a photo\"}}");
        RunLoop(demo, 10000, [&] {
            return demo.gotInboundText && demo.gotInboundImage && demo.gotMedia &&
                   demo.okResults + demo.failedResults >= (demo.mediaRequested ? 6 : 5);
        });
    }

    std::printf("-> close\n");
    client->Close();
    RunLoop(demo, 10000, [&] { return demo.closed; });
    if (demo.client != nullptr) {
        delete demo.client; // CloseComplete never came: discard
        demo.client = nullptr;
    }

    bool ok = true;
    auto expect = [&](bool condition, const char* what) {
        std::printf("%s %s\n", condition ? "  ok  " : "  FAIL", what);
        ok = ok && condition;
    };
    expect(webhookOk, "emulator webhook configured and verified");
    expect(demo.okResults == (demo.mediaRequested ? 6 : 5) && demo.failedResults == 0,
           "every result OK (text, reaction, location, image, echo, media forward)");
    expect(demo.gotInboundText && demo.echoSent, "inbound text received and answered");
    expect(demo.gotMedia && demo.gotInboundImage, "inbound image received (RecvMedia + RecvMessage)");
    if (demo.mediaRequested)
        expect(demo.mediaForwarded, "inbound image forwarded with RequestMedia (destination answered 200)");
    else
        std::printf("  skip  RequestMedia (the emulator has no media route yet)\n");
    expect(demo.closed, "close complete");
    expect(demo.wrongThread == 0, "every callback ran on the loop thread");
    std::printf("%s\n", ok ? "PASS" : "FAILED");
    return ok ? 0 : 1;
}
