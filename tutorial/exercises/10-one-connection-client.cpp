// 10-one-connection-client.cpp: chapter 10's exercise, not in the project's servers.
//
// A client that sends N requests one at a time on one keep-alive connection, each only once
// the response before it has arrived in full, and prints how many responses came and how
// many per second. wrk keeps requests in flight on many connections at once and measures
// throughput; with one request in flight, requests/s is one over a request's round trip.
//
//   g++ -std=c++20 -O2 -o one_connection_client tutorial/exercises/10-one-connection-client.cpp
//   ./main_async &
//   ./one_connection_client --port 8000 --requests 1000
//   1000 responses, 54628 requests/s
//
// Exits 0 when every response came and was a 200; else says why and exits 1. Against ./main,
// which closes after one response, it says so after the first.

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace {

// Closes the connection however main returns. A client holds one descriptor, for its whole
// life: it needs no more of an owner than this.
struct ClosesOnExit {
  int fd;
  ~ClosesOnExit() {
    if (fd >= 0) ::close(fd);
  }
};

// Connects to host:port; -1 (after saying why) when it cannot.
int connect_to(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int err = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); err != 0) {
    std::fprintf(stderr, "cannot resolve %s: %s\n", host.c_str(), ::gai_strerror(err));
    return -1;
  }
  int fd = ::socket(found->ai_family, found->ai_socktype, found->ai_protocol);
  if (fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) != 0) {
    std::fprintf(stderr, "cannot connect to %s:%s: %s\n", host.c_str(), port.c_str(), std::strerror(errno));
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  return fd;
}

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(sent));
  }
  return true;
}

// What the client needs of a response head: its status and how long its body is.
struct Head {
  int status = 0;
  std::size_t content_length = 0;
};

// Parses "HTTP/1.1 200 OK\r\nName: value\r\n..." up to (not including) the empty line; nullopt
// for anything else, or a response without a Content-Length (the servers always send one).
std::optional<Head> parse_head(std::string_view head) {
  Head parsed;
  if (!head.starts_with("HTTP/1.1 ") || head.size() < 12 ||
      std::from_chars(head.data() + 9, head.data() + 12, parsed.status).ec != std::errc()) {
    return std::nullopt;
  }
  for (std::size_t end = head.find("\r\n"); end != std::string_view::npos && end + 2 < head.size();) {
    std::size_t start = end + 2;
    end = head.find("\r\n", start);
    std::string_view line = head.substr(start, end - start);
    constexpr std::string_view kName = "content-length:";
    if (line.size() < kName.size()) continue;
    bool match = true;  // field names are case-insensitive
    for (std::size_t i = 0; i < kName.size(); ++i) {
      match &= std::tolower(static_cast<unsigned char>(line[i])) == kName[i];
    }
    if (!match) continue;
    std::string_view value = line.substr(kName.size());
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), parsed.content_length);
    if (ec != std::errc() || ptr != value.data() + value.size()) return std::nullopt;
    return parsed;
  }
  return std::nullopt;
}

// Reads one response; the bytes after it stay in `buffer`. Its status, or 0 when the
// connection ended first or what came is not a response this client understands.
int read_response(int fd, std::string& buffer) {
  for (;;) {
    if (std::size_t blank = buffer.find("\r\n\r\n"); blank != std::string::npos) {
      std::optional<Head> head = parse_head(std::string_view(buffer).substr(0, blank + 2));
      if (!head) return 0;
      const std::size_t total = blank + 4 + head->content_length;
      if (buffer.size() >= total) {
        buffer.erase(0, total);
        return head->status;
      }
    }
    char bytes[16384];
    ssize_t got = ::recv(fd, bytes, sizeof bytes, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return 0;  // the server closed (or reset) the connection
    buffer.append(bytes, static_cast<std::size_t>(got));
  }
}

int usage() {
  std::fputs("usage: one_connection_client [--host ADDR] [--port N] [--requests N]\n", stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1", port = "8000";
  long requests = 1000;
  for (int i = 1; i < argc; i += 2) {  // "--flag value"; a flag given twice: the last one counts
    std::string_view flag = argv[i];
    if (i + 1 == argc) return usage();
    if (flag == "--host") {
      host = argv[i + 1];
    } else if (flag == "--port") {
      port = argv[i + 1];
    } else if (flag == "--requests") {
      requests = std::strtol(argv[i + 1], nullptr, 10);
    } else {
      return usage();
    }
  }
  if (requests <= 0) return usage();

  const int fd = connect_to(host, port);
  if (fd < 0) return 1;
  const ClosesOnExit closes{fd};
  int one = 1;
  // Each request leaves at once, as the servers' responses do: Nagle would hold it back.
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const std::string request = "GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n";
  std::string buffer;

  long responses = 0;
  const auto start = std::chrono::steady_clock::now();
  while (responses < requests) {
    if (!send_all(fd, request)) break;
    int status = read_response(fd, buffer);
    if (status != 200) {
      if (status != 0) std::fprintf(stderr, "response %ld: status %d\n", responses + 1, status);
      break;
    }
    ++responses;
  }
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;

  std::printf("%ld responses, %.0f requests/s\n", responses, responses / elapsed.count());
  if (responses < requests) {
    std::fprintf(stderr, "the connection ended after %ld of %ld responses\n", responses, requests);
    return 1;
  }
  return 0;
}
