// The C++ header included from two translation units of one binary links (no ODR clashes).
#include "whatsapp_connector.hpp"
IWhatsAppClient* CreateInA(UWhatsAppClient* user)
{
    wa::Options o;
    o.ApiVersion("v1.0");
    return IWhatsAppClient::Create(o, user);
}
// The seed-shaped onboarding Create in this TU sees clients created in the other one (one
// process-wide registry: inline variables).
IWhatsAppOnboarding* OnboardingInA(UWhatsAppOnboarding* user)
{
    return IWhatsAppOnboarding::Create(nullptr, user, nullptr, nullptr, nullptr, nullptr);
}
