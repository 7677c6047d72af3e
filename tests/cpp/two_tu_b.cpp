#include "whatsapp_connector.hpp"
#include <cstdio>
#include <cstring>
IWhatsAppClient* CreateInA(UWhatsAppClient* user);
int main()
{
    UWhatsAppClient user;
    IWhatsAppClient* a = CreateInA(&user);
    IWhatsAppClient* b = IWhatsAppClient::Create(wa::Options().ApiVersion("v2.0"), &user);
    bool ok = a != nullptr && b != nullptr && std::strcmp(a->GetVersion(), "v1.0") == 0 &&
              std::strcmp(b->GetVersion(), "v2.0") == 0;
    delete a;
    delete b;
    std::printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
