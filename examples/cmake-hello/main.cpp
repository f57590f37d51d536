// Serves greeting() on 127.0.0.1:$PORT; `hello-server once` prints it instead.
#include <arpa/inet.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

std::string greeting();

int main(int argc, char **argv) {
  if (argc > 1 && std::strcmp(argv[1], "once") == 0) {
    std::cout << greeting() << std::endl;
    return 0;
  }
  const char *port = std::getenv("PORT");
  if (port == nullptr) {
    std::cerr << "PORT is not set" << std::endl;
    return 1;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(port)));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 || listen(fd, 16) != 0) {
    std::perror("bind/listen");
    return 1;
  }
  const std::string body = greeting();
  const std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                            "\r\nConnection: close\r\n\r\n" + body;
  for (;;) {
    int c = accept(fd, nullptr, nullptr);
    if (c < 0) continue;
    char buf[1024];
    (void)read(c, buf, sizeof buf);
    (void)write(c, reply.data(), reply.size());
    close(c);
  }
}
