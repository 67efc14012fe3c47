// server_tests.hpp: the GoogleTest fixture shared by the suites that start the real servers
// (integration_test.cpp, stress_test.cpp).
#pragma once

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "test_support.hpp"

// The parameter names the binary: "main" or "main_async".
class BothServers : public ::testing::TestWithParam<const char*> {
 protected:
  test_support::ServerProcess start(std::vector<std::string> args = {}) const {
    return test_support::ServerProcess(GetParam(), std::move(args));
  }
  bool is_async() const { return std::string_view(GetParam()) == "main_async"; }
};

inline std::string binary_name(const ::testing::TestParamInfo<const char*>& info) { return info.param; }

#define RUN_AGAINST_BOTH_SERVERS(Suite) \
  INSTANTIATE_TEST_SUITE_P(BothServers, Suite, ::testing::Values("main", "main_async"), binary_name)

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
