// Header hygiene: the adapter compiles on its own where the SDK is absent (to the C++ layer only).
#include "whatsapp_connector_iomux.hpp"
#ifdef WA_HAVE_SDK_IOMUX
#error "no SDK on this include path: the adapter must compile to nothing"
#endif
int hygiene_iomux() { return 0; }
