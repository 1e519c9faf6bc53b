// gradtau.hpp as the only include of a translation unit.
#include <gradtau.hpp>

int header_alone_cpp() { return gradtau::Control::Cancel == gradtau::Control::Continue ? 1 : 0; }
