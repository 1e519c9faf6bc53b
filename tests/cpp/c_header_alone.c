/* gradtau.h alone, compiled as C11. */
#include <gradtau.h>

int c_header_alone_c(void);
int c_header_alone_c(void) { return gradtau_abi_version() == GRADTAU_ABI_VERSION ? 0 : 1; }
