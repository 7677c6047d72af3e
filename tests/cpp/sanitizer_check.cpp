// Proves the sanitizers are really compiled in (WA_SANITIZE=ON builds).
#include <cstdio>
int main()
{
#if defined(__SANITIZE_ADDRESS__)
    std::printf("AddressSanitizer is on\n");
    return 0;
#else
    std::printf("AddressSanitizer is NOT on\n");
    return 1;
#endif
}
