// C++ tests of IWhatsAppOnboarding / UWhatsAppOnboarding against the emulator: every method and
// callback, per-call contexts, the Dispatch() thread, refusals, both Create overloads (the
// seed-shaped one finding the newest client, and nullptr without one), Close during a run,
// Close after the client closed, delete at any time, thread mode, and exceptions from the
// onboarding callbacks staying in C++.
//
// The cases that run Embedded Signup use the emulator's onboarding routes
// (POST /_emulator/oauth/codes, /oauth/access_token, /subscribed_apps, /register); if the
// first of them does not answer, that is a failure, not a skip.
#include "test_support.hpp"

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace {

const char* const kAppId = "1234567890";           // the emulator's default --app-id
const char* const kAppSecret = "test-app-secret";  // the emulator's default --app-secret
const char* const kVerify = "onboarding-verify-token";
const char* const kPin = "581063";
const char* const kTo = "16505551234";

struct Outcome {
    IWhatsAppOnboarding* onboarding;
    std::string kind; // "error" or "result"
    std::string info;
    onboardingStatus status;
    std::string text; // token ("(null)" when none) or error
    std::thread::id thread;
};

class OnboardingRecorder : public UWhatsAppOnboarding {
public:
    std::vector<Outcome> outcomes;
    std::vector<std::string> order; // "error", "result", "close"
    std::vector<std::string> logs;
    std::vector<IWhatsAppOnboarding*> closed;
    bool deleteOnClose = false;
    bool deleteOnError = false;
    std::mutex mutex; // thread-mode test only

    void WhatsAppOnboardingOnboardResult(IWhatsAppOnboarding* o, const char* info, onboardingStatus status,
                                         const char* token) override
    {
        std::lock_guard<std::mutex> lock(mutex);
        order.push_back("result");
        outcomes.push_back(Outcome{o, "result", info ? info : "(null)", status, token ? token : "(null)",
                                   std::this_thread::get_id()});
    }
    void WhatsAppOnboardingError(IWhatsAppOnboarding* o, const char* info, onboardingStatus status,
                                 const char* error) override
    {
        {
            std::lock_guard<std::mutex> lock(mutex);
            order.push_back("error");
            outcomes.push_back(Outcome{o, "error", info ? info : "(null)", status, error ? error : "(null)",
                                       std::this_thread::get_id()});
        }
        if (deleteOnError)
            delete o;
    }
    void WhatsAppOnboardingCloseComplete(IWhatsAppOnboarding* o) override
    {
        {
            std::lock_guard<std::mutex> lock(mutex);
            order.push_back("close");
            closed.push_back(o);
        }
        if (deleteOnClose)
            delete o;
    }
    void WhatsAppOnboardingLog(IWhatsAppOnboarding*, int level, const char* text) override
    {
        std::lock_guard<std::mutex> lock(mutex);
        logs.push_back(std::to_string(level) + " " + text);
    }
    size_t Results()
    {
        std::lock_guard<std::mutex> lock(mutex);
        size_t n = 0;
        for (const auto& o : outcomes)
            n += o.kind == "result";
        return n;
    }
    const Outcome* Result(size_t index)
    {
        size_t n = 0;
        for (const auto& o : outcomes)
            if (o.kind == "result" && n++ == index)
                return &o;
        return nullptr;
    }
};

class ClientUser : public UWhatsAppClient {
public:
    std::vector<std::string> results; // "<error name> <content>"
    std::vector<IWhatsAppClient*> closed;
    void WhatsAppClientSendMessageResult(IWhatsAppClient*, whatsapp_error_t error, const char*,
                                         const char* content) override
    {
        results.push_back(std::string(wa::ErrorName(error)) + " " + (content ? content : ""));
    }
    void WhatsAppClientCloseComplete(IWhatsAppClient* c) override { closed.push_back(c); }
};

// A client as onboarding needs it: app id, app secret, a webhook listener.
IWhatsAppClient* OnboardingClient(UWhatsAppClient* user, bool threadMode = false)
{
    wa::Options o;
    o.GraphBaseUrl(test::EmulatorUrl()).AppId(kAppId).WebhookListen("127.0.0.1:0");
    if (threadMode)
        o.DispatchMode(WA_DISPATCH_THREAD);
    IWhatsAppClient* client = IWhatsAppClient::Create(o, user);
    CHECK(client != nullptr);
    if (client != nullptr)
        client->SetConfig("", kAppSecret); // no token: onboarding fetches it
    return client;
}

std::string CallbackUri(IWhatsAppClient* client)
{
    return "http://127.0.0.1:" + std::to_string(client->WebhookPort()) + "/webhook";
}

struct Code {
    std::string code, waba, phone;
};

// The browser half of Embedded Signup: a fresh code for a new WABA and number.
bool NewCode(Code& out)
{
    host::HttpResponse r = host::Http(test::EmulatorUrl(), "POST", "/_emulator/oauth/codes", "{}");
    if (r.status != 200)
        return false;
    out.code = host::JsonField(r.body, "code");
    out.waba = host::JsonField(r.body, "waba_id");
    out.phone = host::JsonField(r.body, "phone_number_id");
    return !out.code.empty() && !out.waba.empty() && !out.phone.empty();
}

size_t CountRequests(const std::string& pathContains)
{
    host::HttpResponse r =
        host::Http(test::EmulatorUrl(), "GET", "/_emulator/requests?path_contains=" + pathContains);
    size_t n = 0;
    for (size_t at = r.body.find("\"method\""); at != std::string::npos; at = r.body.find("\"method\"", at + 1))
        n++;
    return n;
}

bool AllOn(const OnboardingRecorder& r, std::thread::id id)
{
    for (const auto& o : r.outcomes)
        if (o.thread != id)
            return false;
    return !r.outcomes.empty();
}

class Thrower : public UWhatsAppOnboarding {
public:
    std::vector<std::string> reports;
    int errors = 0, results = 0, closes = 0;
    void WhatsAppOnboardingError(IWhatsAppOnboarding*, const char*, onboardingStatus, const char*) override
    {
        errors++;
        throw std::runtime_error("boom in error");
    }
    void WhatsAppOnboardingOnboardResult(IWhatsAppOnboarding*, const char*, onboardingStatus, const char*) override
    {
        results++;
        throw 42; // not even a std::exception
    }
    void WhatsAppOnboardingCloseComplete(IWhatsAppOnboarding*) override
    {
        closes++;
        throw std::logic_error("boom in close complete");
    }
    void WhatsAppOnboardingLog(IWhatsAppOnboarding*, int level, const char* text) override
    {
        if (level == static_cast<int>(WA_LOG_ERROR) && std::string(text).find("exception from") == 0)
            reports.push_back(text);
    }
};

// Deletes the onboarding in a handler, then throws: the report must not touch it.
class DeleteThenThrow : public UWhatsAppOnboarding {
public:
    IWhatsAppOnboarding* onboarding = nullptr;
    int errors = 0, closes = 0;
    void WhatsAppOnboardingError(IWhatsAppOnboarding*, const char*, onboardingStatus, const char*) override
    {
        errors++;
        delete onboarding;
        onboarding = nullptr;
        throw std::runtime_error("after delete in error");
    }
    void WhatsAppOnboardingOnboardResult(IWhatsAppOnboarding*, const char*, onboardingStatus, const char*) override {}
    void WhatsAppOnboardingCloseComplete(IWhatsAppOnboarding* o) override
    {
        closes++;
        delete o;
        onboarding = nullptr;
        throw std::runtime_error("after delete in close complete");
    }
};

} // namespace

int main()
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const std::string url = test::EmulatorUrl();
    const std::thread::id self = std::this_thread::get_id();

    test::Run("seed-shaped Create without a client: nullptr and a log line; Create(NULL client)", [&] {
        OnboardingRecorder r;
        IWhatsAppOnboarding* o = IWhatsAppOnboarding::Create(nullptr, &r, nullptr, nullptr, nullptr, nullptr);
        CHECK(o == nullptr);
        CHECK(r.logs.size() == 1 && r.logs[0].find("no IWhatsAppClient") != std::string::npos);
        CHECK(IWhatsAppOnboarding::Create(static_cast<IWhatsAppClient*>(nullptr), &r) == nullptr);
        CHECK(r.logs.size() == 2);
        // Without a user: the line goes to stderr, nothing crashes.
        CHECK(IWhatsAppOnboarding::Create(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr) == nullptr);
    });

    test::Run("seed-shaped Create takes the newest client alive; the enum's values", [&] {
        ClientUser u;
        IWhatsAppClient* a = OnboardingClient(&u);
        IWhatsAppClient* b = OnboardingClient(&u);
        OnboardingRecorder r;
        IWhatsAppOnboarding* ob = IWhatsAppOnboarding::Create(nullptr, &r, nullptr, nullptr, nullptr, nullptr);
        CHECK(ob != nullptr && ob->Client() == b && ob->capi() != nullptr);
        delete b;
        CHECK(ob->Client() == nullptr); // its client is gone: inert, deleting it is still fine
        ob->Close();                    // no CloseComplete can come; logged
        CHECK(r.closed.empty());
        delete ob;
        IWhatsAppOnboarding* oa = IWhatsAppOnboarding::Create(nullptr, &r, nullptr, nullptr, nullptr, nullptr);
        CHECK(oa != nullptr && oa->Client() == a);
        IWhatsAppOnboarding* explicitA = IWhatsAppOnboarding::Create(a, &r);
        CHECK(explicitA != nullptr && explicitA->Client() == a);
        delete explicitA;
        delete oa;
        delete a;
        CHECK(IWhatsAppOnboarding::Create(nullptr, &r, nullptr, nullptr, nullptr, nullptr) == nullptr);
        CHECK(static_cast<int>(IWhatsAppOnboarding::FINISHED) == static_cast<int>(WA_ONBOARDING_FINISHED));
        CHECK(static_cast<int>(REGISTER_PHONE) == static_cast<int>(WA_ONBOARDING_REGISTER_PHONE));
        CHECK(static_cast<int>(UNSTARTED) == 0 && static_cast<int>(FETCH_TOKEN) == 1 &&
              static_cast<int>(REGISTER_WEBHOOKS) == 2);
    });

    test::Run("refusals: Error + OnboardResult(UNSTARTED) on the context, by the next Dispatch", [&] {
        ClientUser u;
        IWhatsAppClient* client = OnboardingClient(&u);
        OnboardingRecorder user, context;
        IWhatsAppOnboarding* o = IWhatsAppOnboarding::Create(client, &user);
        CHECK(o != nullptr);
        o->Onboard(&context, "bad-pin", nullptr, "some-code", kVerify, "1234", "", "5678", "12345");
        CHECK(context.outcomes.empty()); // never inside the call
        o->Onboard(nullptr, "no-code", "", nullptr, kVerify, "1234", "", "5678", kPin);
        o->Resume(&context, "resume-fetch", FETCH_TOKEN, kVerify, "1234", "", "5678", kPin);
        CHECK(test::Pump(client, [&] { return context.Results() == 2 && user.Results() == 1; }));
        CHECK(context.order == (std::vector<std::string>{"error", "result", "error", "result"}));
        const Outcome* first = context.Result(0);
        CHECK(first != nullptr && first->info == "bad-pin" && first->status == UNSTARTED && first->text == "(null)");
        CHECK(context.outcomes[0].text.find("phonePin must be 6 digits") != std::string::npos);
        CHECK(context.outcomes[0].onboarding == o);
        CHECK(context.Result(1) != nullptr && context.Result(1)->info == "resume-fetch");
        CHECK(user.Result(0) != nullptr && user.Result(0)->info == "no-code");
        CHECK(user.outcomes[0].text.find("code") != std::string::npos);
        CHECK(AllOn(context, self) && AllOn(user, self));
        delete o;
        delete client;
    });

    test::Run("Close: CloseComplete through the client's Dispatch, delete inside it; Close twice; "
              "Onboard after Close is refused",
              [&] {
                  ClientUser u;
                  IWhatsAppClient* client = OnboardingClient(&u);
                  OnboardingRecorder r;
                  IWhatsAppOnboarding* o = IWhatsAppOnboarding::Create(client, &r);
                  o->Close();
                  o->Close(); // no-op
                  o->Onboard(&r, "after-close", nullptr, "code", kVerify, "1234", "", "5678", kPin);
                  CHECK(test::Pump(client, [&] { return r.closed.size() == 1 && r.Results() == 1; }));
                  CHECK(r.closed.size() == 1 && r.closed[0] == o);
                  CHECK(r.Result(0) != nullptr && r.Result(0)->status == UNSTARTED);
                  CHECK(r.outcomes[0].text.find("closed") != std::string::npos);
                  delete o;

                  // Delete inside CloseComplete.
                  OnboardingRecorder d;
                  d.deleteOnClose = true;
                  IWhatsAppOnboarding* o2 = IWhatsAppOnboarding::Create(client, &d);
                  o2->Close();
                  CHECK(test::Pump(client, [&] { return d.closed.size() == 1; }));
                  // Nothing further arrives.
                  test::Pump(client, [] { return false; }, 200);
                  CHECK(d.closed.size() == 1);
                  delete client;
              });

    test::Run("Close after the client closed: CloseComplete still comes; delete client then onboarding", [&] {
        ClientUser u;
        IWhatsAppClient* client = OnboardingClient(&u);
        OnboardingRecorder r;
        IWhatsAppOnboarding* o = IWhatsAppOnboarding::Create(client, &r);
        client->Close();
        o->Close();
        CHECK(test::Pump(client, [&] { return r.closed.size() == 1 && u.closed.size() == 1; }));
        CHECK(r.order == std::vector<std::string>{"close"});
        delete client;
        delete o; // after its client: fine
        // An onboarding whose client is deleted first: inert, deletable.
        IWhatsAppClient* c2 = OnboardingClient(&u);
        IWhatsAppOnboarding* o2 = IWhatsAppOnboarding::Create(c2, &r);
        delete c2;
        o2->Onboard(&r, "orphan", nullptr, "code", kVerify, "1234", "", "5678", kPin); // logged, no result
        delete o2;
        CHECK(r.Results() == 0);
    });

    test::Run("thread mode, after the client's CloseComplete: Close and Onboard log why nothing follows", [&] {
        struct ThreadUser : public UWhatsAppClient {
            std::atomic<int> closes{0};
            void WhatsAppClientSendMessageResult(IWhatsAppClient*, whatsapp_error_t, const char*, const char*) override {}
            void WhatsAppClientCloseComplete(IWhatsAppClient*) override { closes++; }
        } u;
        IWhatsAppClient* client = OnboardingClient(&u, true);
        OnboardingRecorder r;
        IWhatsAppOnboarding* o = IWhatsAppOnboarding::Create(client, &r);
        client->Close();
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (u.closes == 0 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        CHECK(u.closes == 1);
        o->Onboard(&r, "late", nullptr, "code", kVerify, "1234", "", "5678", kPin);
        o->Close();
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        {
            std::lock_guard<std::mutex> lock(r.mutex);
            CHECK(r.outcomes.empty() && r.closed.empty());
            bool refused = false, noClose = false;
            for (const std::string& line : r.logs) {
                refused = refused || line.find("refused after the client's CloseComplete") != std::string::npos;
                noClose = noClose || line.find("no CloseComplete follows") != std::string::npos;
            }
            CHECK(refused && noClose);
        }
        delete o;
        delete client;
    });

    test::Run("DispatchMaxEvents(1): a CloseComplete posted after the library's events still follows them", [&] {
        struct OrderedUser : public ClientUser {
            std::vector<std::string>* order = nullptr;
            void WhatsAppClientSendMessageResult(IWhatsAppClient*, whatsapp_error_t, const char*, const char*) override
            {
                order->push_back("result");
            }
        };
        OnboardingRecorder r;
        OrderedUser u;
        u.order = &r.order;
        wa::Options o;
        o.GraphBaseUrl(test::EmulatorUrl()).AppId(kAppId).DispatchMaxEvents(1);
        IWhatsAppClient* client = IWhatsAppClient::Create(o, &u); // no token: the sends are held
        CHECK(client != nullptr);
        if (client == nullptr)
            return;
        IWhatsAppOnboarding* onboarding = IWhatsAppOnboarding::Create(client, &r);
        for (int i = 0; i < 3; i++)
            client->SendMessage(nullptr, "{\"body\":\"held\"}", kTo, "text", "1234", "held");
        client->Close();
        std::this_thread::sleep_for(std::chrono::milliseconds(300)); // their CLOSING results queued
        onboarding->Close(); // the client is closed: the wrapper posts CloseComplete after them
        CHECK(test::Pump(client, [&] { return r.closed.size() == 1 && u.closed.size() == 1; }));
        CHECK((r.order == std::vector<std::string>{"result", "result", "result", "close"}));
        delete onboarding;
        delete client;
    });

    test::Run("exceptions from onboarding callbacks stay in C++ (refusal path)", [&] {
        ClientUser u;
        IWhatsAppClient* client = OnboardingClient(&u);
        Thrower t;
        IWhatsAppOnboarding* o = IWhatsAppOnboarding::Create(client, &t);
        o->Onboard(nullptr, "x", nullptr, "code", kVerify, "1234", "", "5678", "1");
        o->Close();
        CHECK(test::Pump(client, [&] { return t.closes == 1 && t.results == 1; }));
        CHECK(t.errors == 1); // Error threw, OnboardResult still came
        CHECK(t.reports.size() == 3);
        for (const auto& line : t.reports)
            std::printf("    reported: %s\n", line.c_str());
        delete o;
        delete client;
    });

    test::Run("a handler deletes the onboarding, then throws (refusal, close complete)", [&] {
        ClientUser u;
        IWhatsAppClient* client = OnboardingClient(&u);
        DeleteThenThrow refused;
        refused.onboarding = IWhatsAppOnboarding::Create(client, &refused);
        refused.onboarding->Onboard(nullptr, "x", nullptr, "code", kVerify, "1234", "", "5678", "1");
        CHECK(test::Pump(client, [&] { return refused.errors == 1; }));
        CHECK(refused.onboarding == nullptr);
        DeleteThenThrow closing;
        closing.onboarding = IWhatsAppOnboarding::Create(client, &closing);
        closing.onboarding->Close();
        CHECK(test::Pump(client, [&] { return closing.closes == 1; }));
        CHECK(closing.onboarding == nullptr);
        delete client;
    });

    // ---- against the emulator's onboarding routes ----
    Code probe;
    if (!NewCode(probe)) {
        std::printf("- the Embedded Signup cases: POST /_emulator/oauth/codes gave no code\n");
        CHECK(false && "the emulator's onboarding routes answer");
    } else {
        test::Run("full onboarding on the context, on the Dispatch thread; then SendMessage uses the token", [&] {
            ClientUser u;
            IWhatsAppClient* client = OnboardingClient(&u);
            OnboardingRecorder user, context;
            IWhatsAppOnboarding* o = IWhatsAppOnboarding::Create(client, &user);
            Code c;
            CHECK(NewCode(c));
            o->Onboard(&context, "full", "v26.0", c.code.c_str(), kVerify, c.waba.c_str(), CallbackUri(client).c_str(),
                       c.phone.c_str(), kPin);
            CHECK(test::Pump(client, [&] { return context.Results() == 1; }, 20000));
            const Outcome* r = context.Result(0);
            CHECK(r != nullptr && r->status == FINISHED && r->info == "full");
            CHECK(r != nullptr && r->text.compare(0, 3, "EAA") == 0);
            CHECK(context.order == std::vector<std::string>{"result"}); // no Error on success
            CHECK(user.outcomes.empty());
            CHECK(AllOn(context, self));
            std::string token = r != nullptr ? r->text : "";
            client->SendMessage(nullptr, "{\"body\":\"after onboarding\"}", kTo, "text", c.phone.c_str(), "sent");
            CHECK(test::Pump(client, [&] { return u.results.size() == 1; }));
            CHECK(u.results.size() == 1 && u.results[0].compare(0, 15, "WHATSAPP_ERR_OK") == 0);
            host::HttpResponse sends = host::Http(url, "GET", "/_emulator/requests?path_contains=" + c.phone + "/messages");
            CHECK(!token.empty() && sends.body.find("Bearer " + token) != std::string::npos);
            CHECK(CountRequests(c.waba + "/subscribed_apps") == 1);
            CHECK(CountRequests(c.phone + "/register") == 1);
            delete o;
            delete client;
        });

        test::Run("failure at FETCH_TOKEN (bad code): Error then OnboardResult, null token", [&] {
            ClientUser u;
            IWhatsAppClient* client = OnboardingClient(&u);
            OnboardingRecorder r;
            IWhatsAppOnboarding* o = IWhatsAppOnboarding::Create(client, &r);
            Code c;
            CHECK(NewCode(c));
            o->Onboard(nullptr, "bad-code", nullptr, "not-a-code", kVerify, c.waba.c_str(), CallbackUri(client).c_str(),
                       c.phone.c_str(), kPin);
            CHECK(test::Pump(client, [&] { return r.Results() == 1; }, 20000));
            CHECK(r.order == (std::vector<std::string>{"error", "result"}));
            CHECK(r.outcomes.size() == 2 && r.outcomes[0].status == FETCH_TOKEN &&
                  r.outcomes[0].text.find("token exchange") == 0);
            CHECK(r.Result(0) != nullptr && r.Result(0)->status == FETCH_TOKEN && r.Result(0)->text == "(null)" &&
                  r.Result(0)->info == "bad-code");
            delete o;
            delete client;
        });

        test::Run("resume at REGISTER_PHONE with the persisted token, no new code exchange", [&] {
            ClientUser u;
            IWhatsAppClient* client = OnboardingClient(&u);
            OnboardingRecorder r;
            IWhatsAppOnboarding* o = IWhatsAppOnboarding::Create(client, &r);
            Code c;
            CHECK(NewCode(c));
            host::Http(url, "POST", "/_emulator/onboarding/config", "{\"register_fail_code\":133004}");
            o->Onboard(&r, "first", nullptr, c.code.c_str(), kVerify, c.waba.c_str(), CallbackUri(client).c_str(),
                       c.phone.c_str(), kPin);
            CHECK(test::Pump(client, [&] { return r.Results() == 1; }, 20000));
            host::Http(url, "POST", "/_emulator/onboarding/config", "{\"register_fail_code\":null}");
            const Outcome* first = r.Result(0);
            CHECK(first != nullptr && first->status == REGISTER_PHONE && first->text.compare(0, 3, "EAA") == 0);
            std::string token = first != nullptr ? first->text : "";
            // A later process: a new client restores the token, and the run resumes.
            delete o;
            delete client;
            client = OnboardingClient(&u);
            client->SetConfig(token.c_str(), kAppSecret);
            o = IWhatsAppOnboarding::Create(client, &r);
            size_t oauthBefore = CountRequests("oauth");
            o->Resume(&r, "second", REGISTER_PHONE, nullptr, nullptr, nullptr, c.phone.c_str(), kPin);
            CHECK(test::Pump(client, [&] { return r.Results() == 2; }, 20000));
            const Outcome* second = r.Result(1);
            CHECK(second != nullptr && second->status == FINISHED && second->text == token && second->info == "second");
            CHECK(CountRequests("oauth") == oauthBefore);
            delete o;
            delete client;
        });

        test::Run("Close during a run: the result with the stage reached, then CloseComplete", [&] {
            ClientUser u;
            IWhatsAppClient* client = OnboardingClient(&u);
            OnboardingRecorder r;
            r.deleteOnClose = true;
            IWhatsAppOnboarding* o = IWhatsAppOnboarding::Create(client, &r);
            Code c;
            CHECK(NewCode(c));
            host::Http(url, "POST", "/_emulator/faults",
                       "{\"match\":{\"path_contains\":\"subscribed_apps\"},\"action\":{\"delay_ms\":3000}}");
            o->Onboard(&r, "closing", nullptr, c.code.c_str(), kVerify, c.waba.c_str(), CallbackUri(client).c_str(),
                       c.phone.c_str(), kPin);
            test::Pump(client, [] { return false; }, 700);
            o->Close();
            CHECK(test::Pump(client, [&] { return r.closed.size() == 1; }));
            host::Http(url, "DELETE", "/_emulator/faults");
            CHECK(r.order == (std::vector<std::string>{"error", "result", "close"}));
            const Outcome* result = r.Result(0);
            CHECK(result != nullptr && result->status == REGISTER_WEBHOOKS && result->text.compare(0, 3, "EAA") == 0);
            delete client;
        });

        test::Run("delete during a run (also inside Error): no callback afterwards, nothing leaks", [&] {
            ClientUser u;
            IWhatsAppClient* client = OnboardingClient(&u);
            OnboardingRecorder r;
            IWhatsAppOnboarding* o = IWhatsAppOnboarding::Create(client, &r);
            Code c;
            CHECK(NewCode(c));
            o->Onboard(&r, "dropped", nullptr, c.code.c_str(), kVerify, c.waba.c_str(), CallbackUri(client).c_str(),
                       c.phone.c_str(), kPin);
            delete o;
            test::Pump(client, [] { return false; }, 1500);
            CHECK(r.outcomes.empty());
            OnboardingRecorder d;
            d.deleteOnError = true; // the OnboardResult after it must not come
            IWhatsAppOnboarding* o2 = IWhatsAppOnboarding::Create(client, &d);
            o2->Onboard(&d, "bad", nullptr, "not-a-code", kVerify, c.waba.c_str(), "", c.phone.c_str(), kPin);
            CHECK(test::Pump(client, [&] { return !d.order.empty(); }, 20000));
            test::Pump(client, [] { return false; }, 200);
            CHECK(d.order == std::vector<std::string>{"error"});
            delete client;
        });

        test::Run("thread mode: results on the client's dispatch thread", [&] {
            ClientUser u;
            IWhatsAppClient* client = OnboardingClient(&u, true);
            OnboardingRecorder r;
            IWhatsAppOnboarding* o = IWhatsAppOnboarding::Create(client, &r);
            Code c;
            CHECK(NewCode(c));
            o->Onboard(&r, "threaded", nullptr, c.code.c_str(), kVerify, c.waba.c_str(), CallbackUri(client).c_str(),
                       c.phone.c_str(), kPin);
            auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
            while (r.Results() == 0 && std::chrono::steady_clock::now() < deadline)
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            {
                std::lock_guard<std::mutex> lock(r.mutex);
                const Outcome* result = r.Result(0);
                CHECK(result != nullptr && result->status == FINISHED && result->thread != self);
            }
            // A refusal (bad PIN) too: Error and OnboardResult on the dispatch thread.
            o->Onboard(&r, "refused", nullptr, "code", kVerify, "1234", "", "5678", "1");
            deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
            while (r.Results() < 2 && std::chrono::steady_clock::now() < deadline)
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            {
                std::lock_guard<std::mutex> lock(r.mutex);
                const Outcome* refused = r.Result(1);
                CHECK(refused != nullptr && refused->status == UNSTARTED && refused->thread != self);
                for (const Outcome& outcome : r.outcomes)
                    CHECK(outcome.info != "refused" || outcome.thread != self);
            }
            o->Close();
            deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
            for (;;) {
                {
                    std::lock_guard<std::mutex> lock(r.mutex);
                    if (!r.closed.empty() || std::chrono::steady_clock::now() > deadline)
                        break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
            CHECK(r.closed.size() == 1);
            delete o;
            delete client;
        });

        test::Run("exceptions from onboarding callbacks stay in C++ (library result path)", [&] {
            ClientUser u;
            IWhatsAppClient* client = OnboardingClient(&u);
            Thrower t;
            IWhatsAppOnboarding* o = IWhatsAppOnboarding::Create(client, &t);
            Code c;
            CHECK(NewCode(c));
            o->Onboard(&t, "x", nullptr, "not-a-code", kVerify, c.waba.c_str(), "", c.phone.c_str(), kPin);
            CHECK(test::Pump(client, [&] { return t.results == 1; }, 20000));
            CHECK(t.errors == 1 && t.reports.size() == 2);
            o->Close();
            CHECK(test::Pump(client, [&] { return t.closes == 1; }));
            CHECK(t.reports.size() == 3);
            delete o;
            delete client;
        });
    }

    return test::Finish();
}
