#include <gradtau.h>
#include <gradtau.hpp>
#include <gradtau.hpp>

std::string version_from_b() {
    gradtau::check_abi();
    return gradtau::version();
}
