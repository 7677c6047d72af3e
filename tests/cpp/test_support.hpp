// Shared bits of the C++ tests: a minimal check framework, the emulator, webhook bodies.
#ifndef WA_TEST_SUPPORT_HPP
#define WA_TEST_SUPPORT_HPP

#include "host_support.hpp"
#include "whatsapp_connector.hpp"

#include <poll.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>

#ifndef WA_EMULATOR_PATH
#define WA_EMULATOR_PATH "wa-emulator"
#endif

namespace test {

inline int& failures()
{
    static int n = 0;
    return n;
}

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            std::printf("  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
            test::failures()++;                                                                \
        }                                                                                      \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                     \
    do {                                                                                       \
        std::string _a = (a), _b = (b);                                                        \
        if (_a != _b) {                                                                        \
            std::printf("  FAIL %s:%d: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, __LINE__, #a, #b, \
                        _a.c_str(), _b.c_str());                                               \
            test::failures()++;                                                                \
        }                                                                                      \
    } while (0)

inline void Run(const char* name, const std::function<void()>& body)
{
    int before = failures();
    std::printf("- %s\n", name);
    std::fflush(stdout);
    body();
    std::printf("  %s\n", failures() == before ? "ok" : "FAILED");
    std::fflush(stdout);
}

inline int Finish()
{
    std::printf("%s (%d failures)\n", failures() == 0 ? "PASS" : "FAIL", failures());
    return failures() == 0 ? 0 : 1;
}

// Starts the emulator once per test program.
inline const std::string& EmulatorUrl()
{
    static host::Emulator emulator;
    static std::string url;
    if (url.empty()) {
        std::string error;
        const char* path = std::getenv("WA_EMULATOR");
        if (!emulator.Start(path != nullptr ? path : WA_EMULATOR_PATH, {}, error)) {
            std::printf("cannot start the emulator: %s\n", error.c_str());
            std::exit(1);
        }
        url = emulator.Url();
    }
    return url;
}

// Dispatches `client` on the calling thread until `done()` or the timeout.
inline bool Pump(IWhatsAppClient* client, const std::function<bool()>& done, int timeoutMs = 10000)
{
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        pollfd p{client->EventFd(), POLLIN, 0};
        if (::poll(&p, 1, 20) > 0)
            client->Dispatch();
    }
    return true;
}

inline std::string InboundBody(const std::string& channel, const std::string& from, const std::string& id,
                               const std::string& messageJson)
{
    return "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"102290129340398\",\"changes\":[{"
           "\"field\":\"messages\",\"value\":{\"messaging_product\":\"whatsapp\",\"metadata\":{"
           "\"display_phone_number\":\"15550783881\",\"phone_number_id\":\"" +
           channel + "\"},\"contacts\":[{\"profile\":{\"name\":\"Kerry\"},\"wa_id\":\"" + from +
           "\"}],\"messages\":[{\"from\":\"" + from + "\",\"id\":\"" + id +
           "\",\"timestamp\":\"1700000000\"," + messageJson + "}]}}]}]}";
}

} // namespace test

#endif
