// first_server.cpp: the smallest server curl accepts an answer from (chapter 2). One connection
// at a time, one read, a fixed answer, close. Wrong in several ways, on purpose: chapter 2 breaks
// it, and the chapters after it fix each break in main.cpp.
//
//   g++ -std=c++20 -Wall -Wextra -o first_server tutorial/code/first_server.cpp && ./first_server 8000
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  int port = argc > 1 ? std::atoi(argv[1]) : 8000;

  int listener = socket(AF_INET, SOCK_STREAM, 0);  // IPv4, TCP: a descriptor, bound to nothing yet
  if (listener < 0) { perror("socket"); return 1; }

  // No SO_REUSEADDR: a restart soon after serving fails with "Address already in use" (chapter 3).
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);                    // the port, in network byte order
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // 127.0.0.1: only this machine can connect
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) < 0) { perror("bind"); return 1; }
  if (listen(listener, 128) < 0) { perror("listen"); return 1; }  // the kernel queues up to 128
  std::printf("Listening on http://127.0.0.1:%d\n", port);
  std::fflush(stdout);  // at once, even when stdout is a pipe

  const char* response = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nHello World!";
  for (;;) {
    int connection = accept(listener, nullptr, nullptr);  // waits for the next client
    if (connection < 0) { perror("accept"); continue; }

    // One read: whatever has arrived by now, up to 1024 bytes. We hope it is the whole request.
    char request[1024];
    ssize_t received = read(connection, request, sizeof request);
    if (received < 0) perror("read");

    // Whatever it was, the same answer. 0 bytes means the client closed without asking.
    if (received > 0 && write(connection, response, std::strlen(response)) < 0) perror("write");
    if (close(connection) < 0) perror("close");
  }
}
