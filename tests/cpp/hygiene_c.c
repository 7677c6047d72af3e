/* Header hygiene: the C header compiles on its own as C (strict C11). */
#include "whatsapp_connector.h"
int hygiene_c(void) { return (int)WA_OK; }
