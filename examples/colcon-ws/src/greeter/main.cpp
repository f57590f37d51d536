#include <iostream>
int main() { std::cout << "hello from greeter" << std::endl; return 0; }
