#include "whatsapp_connector.hpp"
#include <cstdio>
#include <cstring>
IWhatsAppClient* CreateInA(UWhatsAppClient* user);
IWhatsAppOnboarding* OnboardingInA(UWhatsAppOnboarding* user);
int main()
{
    UWhatsAppClient user;
    UWhatsAppOnboarding onboardingUser;
    IWhatsAppClient* a = CreateInA(&user);
    IWhatsAppClient* b = IWhatsAppClient::Create(wa::Options().ApiVersion("v2.0"), &user);
    bool ok = a != nullptr && b != nullptr && std::strcmp(a->GetVersion(), "v1.0") == 0 &&
              std::strcmp(b->GetVersion(), "v2.0") == 0;
    IWhatsAppOnboarding* ob = OnboardingInA(&onboardingUser); // b (this TU) is the newest
    ok = ok && ob != nullptr && ob->Client() == b;
    delete ob;
    delete b;
    IWhatsAppOnboarding* oa = IWhatsAppOnboarding::Create(nullptr, &onboardingUser, nullptr, nullptr, nullptr, nullptr);
    ok = ok && oa != nullptr && oa->Client() == a;
    delete oa;
    delete a;
    std::printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
