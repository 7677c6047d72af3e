// The C++ header included from two translation units of one binary links (no ODR clashes).
#include "whatsapp_connector.hpp"
IWhatsAppClient* CreateInA(UWhatsAppClient* user)
{
    wa::Options o;
    o.ApiVersion("v1.0");
    return IWhatsAppClient::Create(o, user);
}
