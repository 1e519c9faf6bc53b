#include <gradtau.hpp>
#include <gradtau.hpp>
#include <gradtau.h>

std::string version_from_b();

int main() {
    gradtau::check_abi();
    return gradtau::version() == version_from_b() && !gradtau::version().empty() ? 0 : 1;
}
