#include <string>

std::string greeting() { return "hello from cmake"; }
