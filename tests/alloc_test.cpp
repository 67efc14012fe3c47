// Counts the heap allocations a server makes per keep-alive request: there should be none.
// Built twice: for main_async (alloc_test) and, with -DALLOC_EPOLL, for main_epoll
// (alloc_test_epoll).
//
// Every allocation in the process goes through malloc, calloc or realloc (operator new calls
// malloc), so this test defines those three itself and counts the calls made on the thread
// that serves the connection, then hands them to glibc's allocator. A request body lives in a
// mapping of its own, so mmap() is counted too (glibc's malloc and thread stacks map memory
// through internal calls, which this does not see). The connection is served by
// main_async.cpp's own serve_connection(), or by one of main_epoll's Workers, on a real
// loopback socket.
//
// Built without sanitizers only: they bring allocators of their own.
#define HTTP_SERVER_NO_MAIN
#ifdef ALLOC_EPOLL
#include "../tutorial/code/main_epoll.cpp"
#else
#include "../main_async.cpp"
#endif

#include <gtest/gtest.h>

#include <sys/syscall.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "test_support.hpp"

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
void* mmap(void* address, std::size_t length, int protection, int flags, int fd, off_t offset) {
  if (t_counting) g_allocations.fetch_add(1, std::memory_order_relaxed);
  return reinterpret_cast<void*>(::syscall(SYS_mmap, address, length, protection, flags, fd, offset));
}
void* realloc(void* pointer, std::size_t size) {
  if (t_counting) g_allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(pointer, size);
}
}
#endif

namespace {

using test_support::Client;
using test_support::kGet;
using test_support::kHelloWorld;

// Sends `request` on the kept-alive connection and returns the response body, or "" when no whole
// response came.
std::string round_trip(Client& client, std::string_view request) {
  if (!client.send(request)) return "";
  const std::optional<test_support::Response> response = client.read_response(std::chrono::seconds(5));
  return response ? response->body : "";
}

#ifdef ALLOC_EPOLL
// Runs one main_epoll Worker on a counting thread, connects, and runs `client_side` against it.
// The worker stops as the server does, on SIGTERM. The stop pipe stays readable once written,
// so each test installs a new one (the old pipe is left open: two descriptors per test).
template <typename ClientSide>
void with_served_connection(ClientSide client_side) {
  ASSERT_TRUE(StopSignal::install());
  Socket listener = listen_on("127.0.0.1", 0);
  ASSERT_TRUE(listener);
  ASSERT_EQ(::fcntl(listener.fd(), F_SETFL, O_NONBLOCK), 0);
  sockaddr_in address{};
  socklen_t length = sizeof address;
  ::getsockname(listener.fd(), reinterpret_cast<sockaddr*>(&address), &length);

  const Options options;  // the defaults: keep-alive, 4096-byte buffers, no logging
  BodyBudget budget(options.body_memory);
  ConnectionSlots slots(options.max_connections);
  Worker worker(options, listener, budget, slots);
  g_allocations = 0;
  std::thread server([&worker] {
    t_counting = true;
    EXPECT_EQ(worker.run(), Worker::Ended::Stopped);
  });
  {
    Client client(ntohs(address.sin_port));
    client_side(client);
  }
  ::kill(::getpid(), SIGTERM);
  server.join();
}
#else
// Serves one connection with main_async's serve_connection on a counting thread, and runs
// `client_side` against it.
template <typename ClientSide>
void with_served_connection(ClientSide client_side) {
  Socket listener = listen_on("127.0.0.1", 0);
  ASSERT_TRUE(listener);
  sockaddr_in address{};
  socklen_t length = sizeof address;
  ::getsockname(listener.fd(), reinterpret_cast<sockaddr*>(&address), &length);

  Client client(ntohs(address.sin_port));  // throws, failing the test, if it cannot connect
  Socket connection(::accept(listener.fd(), nullptr, nullptr));
  ASSERT_TRUE(connection);

  const Options options;  // the defaults: keep-alive, 4096-byte buffers, no logging
  BodyBudget budget(options.body_memory);
  g_allocations = 0;
  std::thread server([&options, &budget, connection = std::move(connection)]() mutable {
    t_counting = true;
    serve_connection(std::move(connection), options, budget, std::stop_token());
  });
  client_side(client);
  client.close();  // closing the client ends the server loop
  server.join();
}
#endif

long allocations() { return g_allocations.load(std::memory_order_relaxed); }

TEST(Allocations, KeepAliveGetAllocatesNothingPerRequest) {
#ifndef __GLIBC__
  GTEST_SKIP() << "counts allocations through glibc's __libc_malloc";
#endif
  with_served_connection([](Client& client) {
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(round_trip(client, kGet), kHelloWorld);
    const long after_1000 = allocations();
    for (int i = 0; i < 9000; ++i) ASSERT_EQ(round_trip(client, kGet), kHelloWorld);
    const long after_10000 = allocations();

    EXPECT_GE(after_1000, 2) << "the connection's buffers were allocated, so the counter must have seen them";
    EXPECT_EQ(after_10000, after_1000) << "allocations in requests 1001..10000";
  });
}

TEST(Allocations, KeepAlivePostOfSteadySizeAllocatesNothingPerRequest) {
#ifndef __GLIBC__
  GTEST_SKIP() << "counts allocations through glibc's __libc_malloc";
#endif
  const std::string body(1500, 'x');
  const std::string request = test_support::post_request(body);
  const std::string chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5dc\r\n" + body + "\r\n0\r\n\r\n";
  with_served_connection([&](Client& client) {
    for (int i = 0; i < 100; ++i) ASSERT_EQ(round_trip(client, request), body);  // the body buffer grows once
    const long after_warm_up = allocations();
    for (int i = 0; i < 2000; ++i) {
      ASSERT_EQ(round_trip(client, request), body);
      ASSERT_EQ(round_trip(client, chunked), body);
    }
    EXPECT_EQ(allocations(), after_warm_up) << "allocations in 4000 steady-state POSTs";
  });
}

}  // namespace
