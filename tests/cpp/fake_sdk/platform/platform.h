// A stand-in for the innovaphone SDK's platform/platform.h, for testing
// whatsapp_connector_iomux.hpp without the SDK: only the declarations the adapter uses, with the
// SDK's names and signatures (innovaphone/13r1-SDK). Like the SDK header it has no include guard.
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>

typedef unsigned char byte;
typedef unsigned short word;
typedef unsigned int dword;
typedef long long long64;
typedef unsigned long long ulong64;
typedef int IoMuxFd;

enum LogFlags { LOG_APP = 0x0001, LOG_APP_WEBSOCKET = 0x8000 };

// The SDK routes IInstanceLog::Log through a global IDebug; this stand-in keeps the same public
// surface (Log(flag, format, ...)) and lets the test see the lines.
class IInstanceLog {
protected:
    ulong64 logFlags;

public:
    IInstanceLog() { logFlags = LOG_APP | LOG_APP_WEBSOCKET; }
    virtual ~IInstanceLog() {}
    virtual void Line(const char* text) = 0;
    inline void Log(enum LogFlags flag, const char* format, ...)
    {
        if (logFlags & flag) {
            char buffer[1024];
            va_list ap;
            va_start(ap, format);
            vsnprintf(buffer, sizeof buffer, format, ap);
            va_end(ap);
            Line(buffer);
        }
    }
};
