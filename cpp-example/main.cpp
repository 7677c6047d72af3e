// cpp-example: a small C++17 host of whatsapp-connector written against the seed's classes.
//
//   cpp-example [emulator-url]
//
// Without an URL it starts the wa-emulator itself (WA_EMULATOR, else the path CMake built it
// at). It creates the client through the seed-shaped IWhatsAppClient::Create (configured from
// WA_GRAPH_BASE_URL, WA_WEBHOOK_LISTEN=127.0.0.1:0 and WA_APP_ID), runs a poll() event loop on
// the main thread with the client's event fd, and sets only the app secret. It onboards first:
// gets an Embedded Signup code from the emulator (the browser's half), and runs
// IWhatsAppOnboarding (seed-shaped Create: it finds the client) with the client's webhook
// listener as callbackUri, until FINISHED; the token obtained is now the client's. Then it points
// the emulator's webhook at the listener, sends a text, a reaction to it, a location and an image
// by link from the onboarded number, receives a simulated inbound text and image (RecvMedia +
// RecvMessage), answers the text (echo bot), forwards the inbound image to a small HTTP receiver
// of its own with RequestMedia (result "200", every byte received), closes both objects, and
// exits 0 only if every expected callback arrived, each on the loop thread.
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

// The app's secret: the emulator's default --app-secret (it checks the OAuth client_secret and
// signs webhooks with it). The app id comes from WA_APP_ID (the emulator's default app id).
const char* const kAppSecret = "test-app-secret";
const char* const kAppId = "1234567890";
const char* const kVerifyToken = "demo-verify-token";
const char* const kPin = "581063"; // the number's two-step verification PIN
const char* const kCustomer = "16505551234";
const size_t kImageSize = 12345; // bytes of the inbound image the emulator holds
std::string g_channel;           // the phone number id onboarded (sends go out from it)

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

// The host: receives the client's callbacks and the onboarding's (one object may serve both).
class DemoHost : public UWhatsAppClient, public UWhatsAppOnboarding {
public:
    IWhatsAppClient* client = nullptr;
    IWhatsAppOnboarding* onboarding = nullptr;
    bool onboarded = false;
    bool onboardingDone = false;
    bool onboardingClosed = false;
    std::string onboardingToken;
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
    bool mediaRequested = false;
    size_t mediaBytesReceived = 0;

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
            c->SendMessage(this, reaction.c_str(), kCustomer, "reaction", g_channel.c_str(), "reaction");
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
            // The text is the user's: quoted as JSON, never pasted into it.
            std::string reply = "{\"body\":" + wa::JsonString(std::string("You said: ") + msg) + "}";
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
        // Forward the media (Graph: GET /{version}/{media-id}, then the download) to our receiver.
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

    // --- onboarding ---
    void WhatsAppOnboardingError(IWhatsAppOnboarding*, const char* info, onboardingStatus status,
                                 const char* error) override
    {
        Check("OnboardingError");
        std::printf("<- onboard  %s failed at stage %d: %s\n", info, static_cast<int>(status), error);
    }

    void WhatsAppOnboardingOnboardResult(IWhatsAppOnboarding*, const char* info, onboardingStatus status,
                                         const char* token) override
    {
        Check("OnboardResult");
        std::string t = token != nullptr ? token : "";
        std::printf("<- onboard  %s %s, token %s\n", info, status == FINISHED ? "FINISHED" : "stopped",
                    t.empty() ? "(none)" : (t.substr(0, 8) + "...").c_str());
        onboardingDone = true;
        onboarded = status == FINISHED && !t.empty();
        onboardingToken = t; // a real host persists it (to resume, or after a restart)
    }

    void WhatsAppOnboardingCloseComplete(IWhatsAppOnboarding* o) override
    {
        Check("OnboardingCloseComplete");
        std::printf("<- onboarding closed\n");
        onboardingClosed = true;
        delete o; // allowed inside CloseComplete
        onboarding = nullptr;
    }

    void WhatsAppOnboardingLog(IWhatsAppOnboarding*, int level, const char* text) override
    {
        Check("OnboardingLog");
        std::printf("   log      onboarding %d %s\n", level, text);
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
            if (g_sink->ServeOne(head, body)) {
                std::printf("   receiver got %s (%zu bytes)\n", head.substr(0, head.find('\r')).c_str(), body.size());
                host.mediaBytesReceived += body.size();
            }
        }
        if (p[0].revents & POLLIN)
            host.client->Dispatch(); // every callback runs here, on this thread
    }
    return true;
}

bool Control(const std::string& url, const std::string& target, const std::string& body)
{
    host::HttpResponse r = host::Http(url, "POST", target, body);
    std::string shown = r.body.size() > 100 ? r.body.substr(0, 100) + "..." : r.body;
    std::printf("   emulator POST %s -> %d %s\n", target.c_str(), r.status, shown.c_str());
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
    ::setenv("WA_APP_ID", kAppId, 0); // an emulator of your own with another --app-id: set WA_APP_ID
    host::HttpSink sink;
    g_sink = &sink;
    DemoHost demo;
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

    // Only the app secret: the token comes from the onboarding.
    client->SetConfig(nullptr, kAppSecret);

    // ---- onboarding (Embedded Signup, Tech Provider flow) ----
    // The browser's half: the customer finished Embedded Signup; its code, WABA and number.
    host::HttpResponse signup = host::Http(url, "POST", "/_emulator/oauth/codes", "{}");
    std::string code = host::JsonField(signup.body, "code");
    std::string waba = host::JsonField(signup.body, "waba_id");
    g_channel = host::JsonField(signup.body, "phone_number_id");
    std::printf("   emulator POST /_emulator/oauth/codes -> %d (WABA %s, phone number id %s)\n", signup.status,
                waba.c_str(), g_channel.c_str());
    // The seed-shaped Create finds the client created above (app id, app secret, listener).
    demo.onboarding = IWhatsAppOnboarding::Create(nullptr, &demo, nullptr, nullptr, nullptr, nullptr);
    if (demo.onboarding != nullptr && !code.empty()) {
        std::string callbackUri = "http://127.0.0.1:" + std::to_string(port) + "/webhook";
        std::printf("-> onboard  code exchange, webhook subscription (%s), phone registration\n", callbackUri.c_str());
        demo.onboarding->Onboard(&demo, "demo-onboarding", nullptr, code.c_str(), kVerifyToken, waba.c_str(),
                                 callbackUri.c_str(), g_channel.c_str(), kPin);
        RunLoop(demo, 20000, [&] { return demo.onboardingDone; });
    }

    bool webhookOk = false;
    if (demo.onboarded) {
        // The onboarding set the client's webhook token to kVerifyToken; the emulator delivers
        // to the same listener.
        webhookOk = Control(url, "/_emulator/webhook/config",
                            "{\"url\":\"http://127.0.0.1:" + std::to_string(port) + "/webhook\",\"app_secret\":\"" +
                                kAppSecret + "\",\"verify_token\":\"" + kVerifyToken + "\"}");
        webhookOk = webhookOk && Control(url, "/_emulator/webhook/verify", "{}");

        std::printf("-> send     text, location (json_io-style writer), image by link\n");
        const char* channel = g_channel.c_str();
        client->SendMessage(&demo, "{\"body\":\"Hello from C++\",\"preview_url\":false}", kCustomer, "text", channel,
                            "text");
        LocationWriter location(52.52, 13.405, "Berlin");
        client->SendMessage(&demo, location, 0xffff, kCustomer, "location", channel, "location");
        client->SendMessage(&demo, "{\"link\":\"https://example.com/cat.png\",\"caption\":\"a cat\"}", kCustomer,
                            "image", channel, "image");
        RunLoop(demo, 10000, [&] { return demo.okResults + demo.failedResults >= 4; });
    }

    if (webhookOk) {
        // The customer's image: media the emulator holds (Graph serves it by id), then the
        // inbound messages naming it.
        host::HttpResponse media =
            host::Http(url, "POST", "/_emulator/media",
                       "{\"mime_type\":\"image/png\",\"size\":" + std::to_string(kImageSize) + "}");
        std::string mediaId = host::JsonField(media.body, "id");
        std::string sha256 = host::JsonField(media.body, "sha256");
        std::printf("   emulator POST /_emulator/media -> %d (media id %s, %zu bytes)\n", media.status,
                    mediaId.c_str(), kImageSize);
        Control(url, "/_emulator/webhook/inbound",
                std::string("{\"from\":\"") + kCustomer + "\",\"phone_number_id\":\"" + g_channel +
                    "\",\"type\":\"text\",\"text\":{\"body\":\"Hi bot\"}}");
        Control(url, "/_emulator/webhook/inbound",
                std::string("{\"from\":\"") + kCustomer + "\",\"phone_number_id\":\"" + g_channel +
                    "\",\"type\":\"image\",\"image\":{\"id\":\"" + mediaId +
                    "\",\"mime_type\":\"image/png\",\"sha256\":\"" + sha256 + "\",\"caption\":\"a photo\"}}");
        RunLoop(demo, 15000, [&] {
            return demo.gotInboundText && demo.gotInboundImage && demo.gotMedia && demo.okResults + demo.failedResults >= 6;
        });
    }

    std::printf("-> close    onboarding, then client\n");
    if (demo.onboarding != nullptr) {
        demo.onboarding->Close();
        RunLoop(demo, 10000, [&] { return demo.onboardingClosed; });
        if (demo.onboarding != nullptr) {
            delete demo.onboarding; // CloseComplete never came: discard
            demo.onboarding = nullptr;
        }
    }
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
    expect(demo.onboarded, "onboarded: code exchanged, webhooks subscribed (verified by our listener), phone "
                           "registered; the token is the client's");
    expect(webhookOk, "emulator webhook configured and verified");
    expect(demo.okResults == 6 && demo.failedResults == 0,
           "every result OK (text, reaction, location, image, echo, media forward), sent with the onboarded token");
    expect(demo.gotInboundText && demo.echoSent, "inbound text received and answered");
    expect(demo.gotMedia && demo.gotInboundImage, "inbound image received (RecvMedia + RecvMessage)");
    expect(demo.mediaRequested && demo.mediaForwarded && demo.mediaBytesReceived == kImageSize,
           "inbound image forwarded with RequestMedia (destination answered 200, every byte received)");
    expect(demo.onboardingClosed, "onboarding close complete");
    expect(demo.closed, "client close complete");
    expect(demo.wrongThread == 0, "every callback ran on the loop thread");
    std::printf("%s\n", ok ? "PASS" : "FAILED");
    return ok ? 0 : 1;
}
