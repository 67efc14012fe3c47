// Counts the heap allocations main_async makes per keep-alive request: there should be none.
//
// Every allocation in the process goes through malloc, calloc or realloc (operator new calls
// malloc), so this test defines those three itself and counts the calls made on the thread
// that serves the connection, then hands them to glibc's allocator. The connection is served
// by main_async.cpp's own serve_connection() on a real loopback socket.
//
// Built without sanitizers only: they bring allocators of their own.
#define HTTP_SERVER_NO_MAIN
#include "../main_async.cpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>

[[maybe_unused]] static const auto kUsesParseOptions = &parse_options;
[[maybe_unused]] static const auto kUsesRunServer = &run_server;

namespace {
std::atomic<long> g_allocations{0};
thread_local bool t_counting = false;  // set on the server's thread only
}  // namespace

#ifdef __GLIBC__
extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t count, std::size_t size);
void* __libc_realloc(void* pointer, std::size_t size);

void* malloc(std::size_t size) {
  if (t_counting) g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(size);
}
void* calloc(std::size_t count, std::size_t size) {
  if (t_counting) g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(count, size);
}
void* realloc(void* pointer, std::size_t size) {
  if (t_counting) g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(pointer, size);
}
}
#endif

namespace {

// A keep-alive client for one connection: sends a request, reads exactly one response.
class KeepAliveClient {
 public:
  explicit KeepAliveClient(int port) : socket_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(socket_.fd(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  bool connected() const { return connected_; }

  // Sends `request` and returns the response body, or "" when no whole response came.
  std::string exchange(std::string_view request) {
    if (::send(socket_.fd(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
      return "";
    }
    std::size_t head_end;
    while ((head_end = pending_.find("\r\n\r\n")) == std::string::npos) {
      if (!receive()) return "";
    }
    std::size_t length_at = pending_.find("Content-Length: ");
    if (length_at == std::string::npos || length_at > head_end) return "";
    std::size_t length = std::stoul(pending_.substr(length_at + 16));
    while (pending_.size() < head_end + 4 + length) {
      if (!receive()) return "";
    }
    std::string body = pending_.substr(head_end + 4, length);
    pending_.erase(0, head_end + 4 + length);
    return body;
  }

 private:
  bool receive() {
    pollfd ready{socket_.fd(), POLLIN, 0};
    if (::poll(&ready, 1, 5000) != 1) return false;
    char chunk[4096];
    ssize_t n = ::recv(socket_.fd(), chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    pending_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  Socket socket_;
  bool connected_ = false;
  std::string pending_;
};

// Serves one connection with main_async's serve_connection on a counting thread, and runs
// `client_side` against it.
template <typename ClientSide>
void with_served_connection(ClientSide client_side) {
  Socket listener = listen_on("127.0.0.1", 0);
  ASSERT_TRUE(listener);
  sockaddr_in address{};
  socklen_t length = sizeof address;
  ::getsockname(listener.fd(), reinterpret_cast<sockaddr*>(&address), &length);

  KeepAliveClient client(ntohs(address.sin_port));
  ASSERT_TRUE(client.connected());
  Socket connection(::accept(listener.fd(), nullptr, nullptr));
  ASSERT_TRUE(connection);

  const Options options;  // the defaults: keep-alive, 4096-byte buffers, no logging
  g_allocations = 0;
  std::thread server([&options, connection = std::move(connection)]() mutable {
    t_counting = true;
    serve_connection(std::move(connection), options, std::stop_token());
  });
  client_side(client);
  { KeepAliveClient ending = std::move(client); }  // closing the client ends the server loop
  server.join();
}

long allocations() { return g_allocations.load(std::memory_order_relaxed); }

TEST(Allocations, KeepAliveGetAllocatesNothingPerRequest) {
#ifndef __GLIBC__
  GTEST_SKIP() << "counts allocations through glibc's __libc_malloc";
#endif
  with_served_connection([](KeepAliveClient& client) {
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(client.exchange("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), "Hello World!");
    const long after_1000 = allocations();
    for (int i = 0; i < 9000; ++i) ASSERT_EQ(client.exchange("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), "Hello World!");
    const long after_10000 = allocations();

    EXPECT_GE(after_1000, 2) << "the connection's two buffers were allocated, so the counter must have seen them";
    EXPECT_EQ(after_10000, after_1000) << "allocations in requests 1001..10000";
  });
}

TEST(Allocations, KeepAlivePostOfSteadySizeAllocatesNothingPerRequest) {
#ifndef __GLIBC__
  GTEST_SKIP() << "counts allocations through glibc's __libc_malloc";
#endif
  const std::string body(1500, 'x');
  const std::string request = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1500\r\n\r\n" + body;
  const std::string chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5dc\r\n" + body + "\r\n0\r\n\r\n";
  with_served_connection([&](KeepAliveClient& client) {
    for (int i = 0; i < 100; ++i) ASSERT_EQ(client.exchange(request), body);  // the body buffer grows once
    const long after_warm_up = allocations();
    for (int i = 0; i < 2000; ++i) {
      ASSERT_EQ(client.exchange(request), body);
      ASSERT_EQ(client.exchange(chunked), body);
    }
    EXPECT_EQ(allocations(), after_warm_up) << "allocations in 4000 steady-state POSTs";
  });
}

}  // namespace
