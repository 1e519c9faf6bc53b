int header_alone_cpp();
int c_header_alone_cpp();
extern "C" int c_header_alone_c(void);

int main() { return header_alone_cpp() + c_header_alone_cpp() + c_header_alone_c(); }
