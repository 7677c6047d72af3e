#include "whatsapp_connector.hpp"
#include <cstdio>
#include <cstring>
int main()
{
    UWhatsAppClient user;
    IWhatsAppClient* c = IWhatsAppClient::Create(wa::Options().ApiVersion("v26.0"), &user);
    bool ok = c != nullptr && std::strcmp(c->GetVersion(), "v26.0") == 0;
    delete c;
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", wa::LibraryVersion());
    return ok ? 0 : 1;
}
