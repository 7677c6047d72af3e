/*
 * whatsapp_connector_iomux.hpp: optional adapter of the C++ layer for hosts built on the
 * innovaphone App Platform SDK.
 *
 * Include it in an SDK host AFTER the SDK's own headers, the way every SDK source file starts:
 *
 *   #include "platform/platform.h"
 *   #include "common/os/iomux.h"
 *   #include "whatsapp_connector_iomux.hpp"
 *
 * Then IWhatsAppClient::Create(iomux, user, tcp, tls, log, dns) registers the client's event fd
 * with iomux->FDAdd(fd, context, false); the UIoContext's IoContextNotify calls Dispatch(), so
 * every UWhatsAppClient callback runs on the iomux thread. The fd is removed (FDRem) when the
 * client is deleted. The library's log lines (and reports of exceptions thrown by U-callbacks)
 * go to log->Log(LOG_APP, "WhatsApp %s: %s", level, text), the level named (error, warn, ...). IWhatsAppOnboarding::Create(iomux, user, tcp, tls, log,
 * dns) sends its object's log lines (and exception reports) to its `log` the same way; its
 * callbacks come through the client's fd registered here.
 *
 * The SDK headers have no include guards, so this header does not include them itself. It
 * compiles to nothing where the SDK is not on the include path (checked with __has_include on
 * "common/os/iomux.h"); plain programs use wa::PollLoop from whatsapp_connector.hpp instead.
 */
#ifndef WHATSAPP_CONNECTOR_IOMUX_HPP
#define WHATSAPP_CONNECTOR_IOMUX_HPP

#include "whatsapp_connector.hpp"

#if defined(__has_include)
#if __has_include("common/os/iomux.h")
#define WA_HAVE_SDK_IOMUX 1
#endif
#endif

#ifdef WA_HAVE_SDK_IOMUX

namespace wa {
namespace iomux {

// Registers one client's event fd with an IIoMux and forwards its log lines to an IInstanceLog.
class Binding final : public detail::HostBinding, public UIoContext {
public:
    Binding(IWhatsAppClient* client, IIoMux* iomux, IInstanceLog* log) : client_(client), iomux_(iomux), log_(log)
    {
        int fd = client_->EventFd();
        if (iomux_ != nullptr && fd >= 0) {
            iomux_->FDAdd(fd, this, false);
            registered_ = true;
        }
    }

    ~Binding() override
    {
        if (registered_)
            iomux_->FDRem(this); // remove only: the client closes its fd itself
    }

    Binding(const Binding&) = delete;
    Binding& operator=(const Binding&) = delete;

    void IoContextNotify(bool indRX, bool indTX) override
    {
        (void)indTX;
        if (indRX || isError || isHangup)
            client_->Dispatch(); // may delete the client and this binding: nothing after it
    }

    void Log(int level, const char* text) noexcept override { LogTo(log_, level, text); }

    // One line to an IInstanceLog (also the log hook of IWhatsAppOnboarding).
    static void LogTo(IInstanceLog* log, int level, const char* text)
    {
        if (log == nullptr)
            return;
        static const char* const names[] = {"off", "error", "warn", "info", "debug", "trace"};
        const char* name = level >= 0 && level <= 5 ? names[level] : "?";
        log->Log(LOG_APP, "WhatsApp %s: %s", name, text != nullptr ? text : "");
    }

private:
    IWhatsAppClient* const client_;
    IIoMux* const iomux_;
    IInstanceLog* const log_;
    bool registered_ = false;
};

inline detail::HostBinding* Bind(IWhatsAppClient* client, IIoMux* iomux, IInstanceLog* log)
{
    return new Binding(client, iomux, log);
}

// Installs Bind as the hook IWhatsAppClient::Create uses (at static initialisation of every
// translation unit that includes this header).
inline const bool installed = (detail::bind_hook() = &Bind, true);
// ... and LogTo as the hook IWhatsAppOnboarding::Create's `log` lines go through.
inline const bool installedLog = (detail::log_hook() = &Binding::LogTo, true);

} // namespace iomux
} // namespace wa

#endif // WA_HAVE_SDK_IOMUX

#endif /* WHATSAPP_CONNECTOR_IOMUX_HPP */
