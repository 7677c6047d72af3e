// The IIoMux adapter (whatsapp_connector_iomux.hpp) against stand-ins of the SDK headers
// (fake_sdk/, same names and signatures): the seed Create registers the event fd with FDAdd,
// IoContextNotify dispatches, callbacks run on the iomux thread, log lines reach IInstanceLog,
// and deleting the client removes the fd (FDRem).
#include "platform/platform.h"
#include "common/os/iomux.h"
#include "whatsapp_connector_iomux.hpp"

#include "test_support.hpp"

#include <map>
#include <stdexcept>
#include <vector>

namespace {

// A poll()-based IIoMux with the SDK's fd interface.
class FakeIoMux : public IIoMux {
public:
    std::map<UIoContext*, int> fds;
    int adds = 0, removes = 0;
    void Run() override {}
    void FDAdd(IoMuxFd fd, UIoContext* context, bool) override
    {
        context->SetFd(fd);
        fds[context] = fd;
        adds++;
    }
    void FDClose(UIoContext* context) override { fds.erase(context); }
    void FDRem(UIoContext* context) override
    {
        fds.erase(context);
        removes++;
    }
    // One round like IIoMux::Run's loop body.
    void RunOnce(int timeoutMs)
    {
        std::vector<pollfd> p;
        std::vector<UIoContext*> contexts;
        for (auto& entry : fds) {
            p.push_back(pollfd{entry.second, POLLIN, 0});
            contexts.push_back(entry.first);
        }
        if (p.empty() || ::poll(p.data(), p.size(), timeoutMs) <= 0)
            return;
        for (size_t i = 0; i < p.size(); i++)
            if ((p[i].revents & POLLIN) && fds.count(contexts[i]))
                contexts[i]->IoContextNotify(true, false);
    }
};

class Log : public IInstanceLog {
public:
    std::vector<std::string> lines;
    void Line(const char* text) override { lines.push_back(text); }
};

class User : public UWhatsAppClient {
public:
    int results = 0;
    bool closed = false;
    std::vector<std::thread::id> threads;
    void WhatsAppClientSendMessageResult(IWhatsAppClient*, whatsapp_error_t error, const char*, const char*) override
    {
        threads.push_back(std::this_thread::get_id());
        if (error == WHATSAPP_ERR_OK)
            results++;
    }
    void WhatsAppClientCloseComplete(IWhatsAppClient* client) override
    {
        threads.push_back(std::this_thread::get_id());
        closed = true;
        delete client; // also removes the fd from the iomux, from inside IoContextNotify
    }
};

// Throws from its result: the report goes to the IInstanceLog given to Create (no log override).
class Onboarder : public UWhatsAppOnboarding {
public:
    int results = 0;
    bool closed = false;
    std::thread::id thread;
    void WhatsAppOnboardingOnboardResult(IWhatsAppOnboarding*, const char*, onboardingStatus, const char*) override
    {
        results++;
        thread = std::this_thread::get_id();
        throw std::runtime_error("boom");
    }
    void WhatsAppOnboardingCloseComplete(IWhatsAppOnboarding*) override { closed = true; }
};

} // namespace

int main()
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    ::setenv("WA_GRAPH_BASE_URL", test::EmulatorUrl().c_str(), 1);
    test::Run("seed Create with an IIoMux and an IInstanceLog", [&] {
        CHECK(wa::iomux::installed);
        FakeIoMux iomux;
        Log log;
        User user;
        IWhatsAppClient* c = IWhatsAppClient::Create(&iomux, &user, nullptr, nullptr, &log, nullptr);
        CHECK(c != nullptr);
        CHECK(iomux.adds == 1);
        CHECK(iomux.fds.size() == 1 && iomux.fds.begin()->second == c->EventFd());
        c->SetConfig("test-token", "secret");
        c->SendMessage(&user, "{\"body\":\"x\"}", "16505551234", "text", "106540352242922");
        for (int i = 0; i < 500 && user.results < 1; i++)
            iomux.RunOnce(20);
        CHECK(user.results == 1);
        c->Close();
        for (int i = 0; i < 500 && !user.closed; i++)
            iomux.RunOnce(20);
        CHECK(user.closed);
        CHECK(iomux.removes == 1 && iomux.fds.empty());
        bool sawLine = false;
        for (auto& line : log.lines)
            sawLine = sawLine || line.rfind("WhatsApp ", 0) == 0;
        CHECK(sawLine);
        for (auto t : user.threads)
            CHECK(t == std::this_thread::get_id());
    });
    test::Run("seed IWhatsAppOnboarding::Create: callbacks through the iomux, log lines to its IInstanceLog", [&] {
        FakeIoMux iomux;
        Log clientLog, onboardingLog;
        User user;
        Onboarder onboarder;
        IWhatsAppOnboarding* none = IWhatsAppOnboarding::Create(&iomux, nullptr, nullptr, nullptr, &onboardingLog, nullptr);
        CHECK(none == nullptr);
        CHECK(onboardingLog.lines.size() == 1 && onboardingLog.lines[0].find("no IWhatsAppClient") != std::string::npos);
        IWhatsAppClient* c = IWhatsAppClient::Create(&iomux, &user, nullptr, nullptr, &clientLog, nullptr);
        IWhatsAppOnboarding* o = IWhatsAppOnboarding::Create(&iomux, &onboarder, nullptr, nullptr, &onboardingLog, nullptr);
        CHECK(o != nullptr && o->Client() == c);
        // A refused call (bad PIN): its result comes through the client's fd on the iomux.
        o->Onboard(&onboarder, "x", nullptr, "code", "verify", "1234", "", "5678", "1");
        for (int i = 0; i < 500 && onboarder.results < 1; i++)
            iomux.RunOnce(20);
        CHECK(onboarder.results == 1 && onboarder.thread == std::this_thread::get_id());
        CHECK(onboardingLog.lines.size() == 2 && onboardingLog.lines[1].find("exception from") != std::string::npos);
        o->Close();
        for (int i = 0; i < 500 && !onboarder.closed; i++)
            iomux.RunOnce(20);
        CHECK(onboarder.closed);
        delete o;
        c->Close();
        for (int i = 0; i < 500 && !user.closed; i++)
            iomux.RunOnce(20);
        CHECK(user.closed);
    });
    test::Run("thread mode with an IIoMux: a warning that callbacks leave the IIoMux thread", [&] {
        FakeIoMux iomux;
        Log log;
        User user;
        wa::Options threaded;
        threaded.DispatchMode(WA_DISPATCH_THREAD);
        IWhatsAppClient* c = IWhatsAppClient::Create(threaded, &user, &iomux, &log);
        CHECK(c != nullptr);
        CHECK(iomux.adds == 0); // no fd to watch in thread mode
        bool warned = false;
        for (auto& line : log.lines)
            warned = warned || line.find("thread mode with an IIoMux") != std::string::npos;
        CHECK(warned);
        delete c;
    });

    return test::Finish();
}
