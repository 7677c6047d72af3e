// Header hygiene: the C++ header compiles on its own.
#include "whatsapp_connector.hpp"
int hygiene_hpp() { return static_cast<int>(sizeof(wa::Options) > 0); }
