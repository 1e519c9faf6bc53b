// gradtau.h alone, compiled as C++ (cbindgen's cpp_compat: extern "C", typed enum).
#include <gradtau.h>

int c_header_alone_cpp() { return gradtau_abi_version() == GRADTAU_ABI_VERSION ? 0 : 1; }
