// An exception thrown from a user callback must not cross into the library (undefined
// behaviour): the trampolines catch it, the process survives, and the log path reports it.
#include "test_support.hpp"

#include <stdexcept>
#include <vector>

namespace {

const char* const kChannel = "106540352242922";
const char* const kTo = "16505551234";
const char* const kSecret = "app-secret";

class Thrower : public UWhatsAppClient {
public:
    std::vector<std::string> reports;
    int results = 0, inbound = 0, closes = 0;
    void WhatsAppClientSendMessageResult(IWhatsAppClient*, whatsapp_error_t, const char*, const char*) override
    {
        results++;
        throw std::runtime_error("boom in result");
    }
    void WhatsAppClientRecvMessage(IWhatsAppClient*, const char*, const char*, const char*, const char*,
                                   const char*, const char*) override
    {
        inbound++;
        throw 42; // not even a std::exception
    }
    void WhatsAppClientRecvMedia(IWhatsAppClient*, const char*, const char*, const char*, const char*,
                                 const char*) override
    {
        inbound++;
        throw std::logic_error("boom in media");
    }
    void WhatsAppClientRawChange(IWhatsAppClient*, const char*, const char*) override
    {
        throw std::runtime_error("boom in raw change");
    }
    void WhatsAppClientCloseComplete(IWhatsAppClient*) override
    {
        closes++;
        throw std::runtime_error("boom in close complete");
    }
    void WhatsAppClientLog(IWhatsAppClient*, int level, const char* text) override
    {
        if (level == static_cast<int>(WA_LOG_ERROR) && std::string(text).find("exception from") == 0)
            reports.push_back(text);
    }
};

// No log override: reports go to stderr; the log method itself throwing is survived too.
class ThrowerWithoutLog : public UWhatsAppClient {
public:
    int results = 0;
    void WhatsAppClientSendMessageResult(IWhatsAppClient*, whatsapp_error_t, const char*, const char*) override
    {
        results++;
        throw std::runtime_error("boom without a log sink");
    }
};

class ThrowingLog : public UWhatsAppClient {
public:
    int results = 0;
    void WhatsAppClientSendMessageResult(IWhatsAppClient*, whatsapp_error_t, const char*, const char*) override
    {
        results++;
        throw std::runtime_error("boom");
    }
    void WhatsAppClientLog(IWhatsAppClient*, int, const char*) override { throw std::runtime_error("log throws"); }
};

// Deletes the client in a handler, then throws (the header allows delete in any callback): the
// report must not touch the deleted object.
class DeleteThenThrow : public UWhatsAppClient {
public:
    IWhatsAppClient* client = nullptr;
    int results = 0, closes = 0;
    void WhatsAppClientSendMessageResult(IWhatsAppClient*, whatsapp_error_t, const char*, const char*) override
    {
        results++;
        delete client;
        client = nullptr;
        throw std::runtime_error("after delete in result");
    }
    void WhatsAppClientCloseComplete(IWhatsAppClient* c) override
    {
        closes++;
        delete c;
        client = nullptr;
        throw std::runtime_error("after delete in close complete");
    }
};

bool Has(const std::vector<std::string>& lines, const std::string& text)
{
    for (auto& line : lines)
        if (line.find(text) != std::string::npos)
            return true;
    return false;
}

} // namespace

int main()
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    wa::Options options;
    options.GraphBaseUrl(test::EmulatorUrl());

    test::Run("exceptions from every callback are caught and reported through WhatsAppClientLog", [&] {
        Thrower t;
        IWhatsAppClient* c = IWhatsAppClient::Create(options, &t);
        CHECK(c != nullptr);
        c->SetConfig("test-token", kSecret);
        c->SendMessage(&t, "{\"body\":\"x\"}", kTo, "text", kChannel);
        c->SendMessage(&t, "{bad", kTo, "text", kChannel); // deferred refusal: also throws
        std::string body = test::InboundBody(
            kChannel, kTo, "wamid.X1",
            "\"type\":\"image\",\"image\":{\"id\":\"M1\",\"mime_type\":\"image/png\",\"caption\":\"c\"}");
        wa::WebhookReply reply;
        CHECK(c->WebhookRequest("POST", "/webhook", host::HubSignature(kSecret, body).c_str(), body.data(),
                                body.size(), reply) == WA_OK);
        CHECK(test::Pump(c, [&] { return t.results == 2 && t.inbound == 2; }));
        c->Close();
        CHECK(test::Pump(c, [&] { return t.closes == 1; }));
        delete c;
        CHECK(Has(t.reports, "exception from WhatsAppClientSendMessageResult: boom in result"));
        CHECK(Has(t.reports, "exception from WhatsAppClientRecvMessage: unknown exception"));
        CHECK(Has(t.reports, "exception from WhatsAppClientRecvMedia: boom in media"));
        CHECK(Has(t.reports, "exception from WhatsAppClientRawChange: boom in raw change"));
        CHECK(Has(t.reports, "exception from WhatsAppClientCloseComplete: boom in close complete"));
    });

    test::Run("without a log override (stderr) and with a throwing log method", [&] {
        ThrowerWithoutLog a;
        ThrowingLog b;
        IWhatsAppClient* ca = IWhatsAppClient::Create(options, &a);
        IWhatsAppClient* cb = IWhatsAppClient::Create(options, &b);
        ca->SetConfig("test-token", kSecret);
        cb->SetConfig("test-token", kSecret);
        ca->SendMessage(nullptr, "{\"body\":\"x\"}", kTo, "text", kChannel);
        cb->SendMessage(nullptr, "{\"body\":\"x\"}", kTo, "text", kChannel);
        wa::PollLoop loop;
        loop.Add(ca);
        loop.Add(cb);
        CHECK(loop.Run([&] { return a.results == 1 && b.results == 1; }, 10000));
        delete ca;
        delete cb;
    });

    test::Run("a handler deletes the client, then throws (refused send, close complete)", [&] {
        DeleteThenThrow refused;
        refused.client = IWhatsAppClient::Create(options, &refused);
        CHECK(refused.client != nullptr);
        IWhatsAppClient* c = refused.client;
        c->SendMessage(nullptr, "{bad", kTo, "text", kChannel); // refused: delivered by Dispatch
        CHECK(test::Pump(c, [&] { return refused.results == 1; }));
        CHECK(refused.client == nullptr);

        DeleteThenThrow closing;
        closing.client = IWhatsAppClient::Create(options, &closing);
        CHECK(closing.client != nullptr);
        c = closing.client;
        c->Close();
        CHECK(test::Pump(c, [&] { return closing.closes == 1; }));
        CHECK(closing.client == nullptr);
    });

    std::printf("the process survived every exception\n");
    return test::Finish();
}
