// Header hygiene: the C header compiles on its own as C++.
#include "whatsapp_connector.h"
int hygiene_h_cpp() { return static_cast<int>(WA_OK); }
