// server_tests.hpp: the GoogleTest fixture shared by the suites that start the real servers
// (integration_test.cpp, stress_test.cpp).
//
// A suite of rules is run against every server that has the behaviour it checks:
//
//   class Routes : public ServerTest {};
//   RUN_AGAINST_ALL_SERVERS(Routes);            // main, main_async, main_epoll
//   class KeepAlive : public ServerTest {};
//   RUN_AGAINST_CONCURRENT_SERVERS(KeepAlive);  // main_async, main_epoll
//
// and each test is named AllServers/Routes.SomeRule/main_epoll (or ConcurrentServers/...), so
// --gtest_filter='*/main_epoll' runs everything against one server. Where a server differs
// within a rule, the test asks what it has (is_concurrent(), buffer_size()), not its name.
#pragma once

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <cstddef>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "test_support.hpp"

// What a server binary has, as far as the tests can tell from outside.
struct ServerKind {
  const char* binary;
  std::size_t buffer_size;     // its default read buffer, which a request head must fit
  bool concurrent;             // serves many connections at once and keeps them alive, with the flags for
                               // that: --buffer-size --max-connections --body-memory --shutdown-timeout-ms
                               // --no-keepalive --log-requests
  bool thread_per_connection;  // a thread starts and ends with each connection
  bool workers;                // --workers N: that many event loops, whatever the connections
};

inline constexpr ServerKind kBlockingServer{"main", 1024, false, false, false};
inline constexpr ServerKind kThreadGroupServer{"main_async", 4096, true, true, false};
inline constexpr ServerKind kEventLoopServer{"main_epoll", 4096, true, false, true};

// gtest prints a parameter when a test fails: the binary says which server it was.
inline void PrintTo(const ServerKind& kind, std::ostream* out) { *out << kind.binary; }

// The parameter is the server under test.
class ServerTest : public ::testing::TestWithParam<ServerKind> {
 protected:
  const char* binary() const { return GetParam().binary; }
  test_support::ServerProcess start(std::vector<std::string> args = {}) const {
    return test_support::ServerProcess(binary(), std::move(args));
  }
  std::size_t buffer_size() const { return GetParam().buffer_size; }
  bool is_concurrent() const { return GetParam().concurrent; }
  bool has_thread_per_connection() const { return GetParam().thread_per_connection; }
  bool has_workers() const { return GetParam().workers; }
};

inline std::string binary_name(const ::testing::TestParamInfo<ServerKind>& info) { return info.param.binary; }

// main, main_async and main_epoll.
#define RUN_AGAINST_ALL_SERVERS(Suite) \
  INSTANTIATE_TEST_SUITE_P(AllServers, Suite, \
                           ::testing::Values(kBlockingServer, kThreadGroupServer, kEventLoopServer), binary_name)

// main_async and main_epoll: the servers that hold many connections at once, each kept alive.
#define RUN_AGAINST_CONCURRENT_SERVERS(Suite) \
  INSTANTIATE_TEST_SUITE_P(ConcurrentServers, Suite, ::testing::Values(kThreadGroupServer, kEventLoopServer), \
                           binary_name)

// Ignores SIGPIPE (belt and braces: Client sends with MSG_NOSIGNAL) and fails the run if a test leaks
// a descriptor: a leaked socket or pipe would keep a connection or a child's output open. Each suite
// registers one with ::testing::AddGlobalTestEnvironment.
class ProcessEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    open_descriptors_ = test_support::open_descriptors(::getpid());
  }
  void TearDown() override {
    EXPECT_EQ(test_support::open_descriptors(::getpid()), open_descriptors_) << "descriptors leaked";
  }

 private:
  long open_descriptors_ = 0;
};
