// steps_test.cpp: the file the reader types in chapters 3 to 6 works at the end of each chapter.
//
// Chapters 3 to 6 have the reader type main.cpp's blocks, in the order shown, into a
// server.cpp of their own, ended by a small main (tutorial/code/steps/). `tutorial_code --build`
// writes that file as it stands at each chapter's "Build it" to build/steps/<chapter>-server.cpp;
// make builds each with the chapter's g++ line, and these tests run it as the chapter does.
// Chapter 6's file, the whole blocking server, also passes main's integration tests (make runs
// them with SERVER_DIR=build/steps/06-blocking-server).
//
//   make build/steps_tests && SERVER_DIR=$PWD/build/steps build/steps_tests
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server_tests.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using test_support::Client;
using test_support::kChunkedPost;
using test_support::kChunkedPostBody;
using test_support::kGet;
using test_support::kHelloWorld;
using test_support::post_request;
using test_support::ServerProcess;

constexpr auto kPatience = 3s;  // for what should happen at once; a passing test never waits it out

[[maybe_unused]] ::testing::Environment* const kProcessEnvironment =
    ::testing::AddGlobalTestEnvironment(new ProcessEnvironment);

// The reader's server at the end of `chapter`, started as the chapter does, with port 0 for
// "the kernel picks one" (chapters 3-5 take a bare port, as first_server does; 6 takes --port).
ServerProcess start(std::string_view chapter) {
  if (chapter == "06-blocking-server") return ServerProcess(chapter);
  return ServerProcess(chapter, {"0"}, ServerProcess::Readiness::listening_line, kPatience,
                       ServerProcess::Port::in_args);
}

std::optional<test_support::Response> ask(ServerProcess& server, std::string_view request) {
  Client client(server.port());
  if (!client.send(request)) return std::nullopt;
  return client.read_response(kPatience);
}

// ---- chapter 3: first_server's main on the TCP layer ----

TEST(Chapter3, AnswersHelloWorldAndClosesWithoutAReset) {
  ServerProcess server = start("03-tcp-layer");
  Client client(server.port());
  ASSERT_TRUE(client.send(kGet));
  std::optional<test_support::Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, kHelloWorld);
  EXPECT_TRUE(client.is_closed_by_peer(kPatience));
  EXPECT_FALSE(client.peer_reset());
}

// Chapter 2's first break, fixed: the answer waits for the blank line that ends the head.
TEST(Chapter3, WaitsForTheRestOfASplitRequest) {
  ServerProcess server = start("03-tcp-layer");
  Client client(server.port());
  ASSERT_TRUE(client.send("GET / HTTP/1.1\r\n"));
  EXPECT_FALSE(client.wait_for_bytes(1, 300ms)) << "answered half a request: " << client.unread();
  ASSERT_TRUE(client.send("Host: a\r\n\r\n"));
  std::optional<test_support::Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->body, kHelloWorld);
}

// Chapter 2's second break, fixed by linger_before_close: unread body bytes no longer cost a reset.
TEST(Chapter3, EndsAConnectionWithAnUnreadBodyWithFinNotReset) {
  ServerProcess server = start("03-tcp-layer");
  Client client(server.port());
  ASSERT_TRUE(client.send(post_request(std::string(20000, 'x'))));
  ASSERT_TRUE(client.read_response(kPatience));
  EXPECT_TRUE(client.is_closed_by_peer(kPatience));
  EXPECT_FALSE(client.peer_reset()) << "the body was left unread at close()";
}

TEST(Chapter3, RefusesABadPortWithAUsageLineAndStatus2) {
  ServerProcess server("03-tcp-layer", {"80x"}, ServerProcess::Readiness::none, kPatience,
                       ServerProcess::Port::in_args);
  EXPECT_EQ(server.wait_exit(kPatience), 2);
  EXPECT_EQ(server.stderr_text(), "usage: server [PORT]\n");
}

// ---- chapter 4: a parsed head ----

TEST(Chapter4, AnswersAGoodHeadWithItsMethodAndTarget) {
  ServerProcess server = start("04-request-head");
  std::optional<test_support::Response> response = ask(server, "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "GET /hello\n");
}

TEST(Chapter4, AnswersABadHeadWithTheParsersStatus) {
  ServerProcess server = start("04-request-head");
  const std::vector<std::pair<std::string_view, int>> cases = {
      {"GET / HTTP/1.1\nHost: a\n\n", 400},                    // bare LF
      {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},             // space before the colon
      {"GET / HTTP/1.1\r\n\r\n", 400},                         // no Host
      {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},              // another version
  };
  for (const auto& [request, status] : cases) {
    std::optional<test_support::Response> response = ask(server, request);
    ASSERT_TRUE(response) << request;
    EXPECT_EQ(response->status, status) << request;
    EXPECT_EQ(response->body, response->reason + "\n") << request;
  }
}

// ---- chapter 5: the whole exchange ----

TEST(Chapter5, GreetsEchoesAndRefusesOtherMethods) {
  ServerProcess server = start("05-body-and-response");
  std::optional<test_support::Response> get = ask(server, kGet);
  ASSERT_TRUE(get);
  EXPECT_EQ(get->body, kHelloWorld);
  EXPECT_TRUE(get->has_header("Date"));

  std::optional<test_support::Response> echo = ask(server, post_request("hello"));
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->status, 200);
  EXPECT_EQ(echo->body, "hello");

  std::optional<test_support::Response> chunked = ask(server, kChunkedPost);
  ASSERT_TRUE(chunked);
  EXPECT_EQ(chunked->body, kChunkedPostBody);

  std::optional<test_support::Response> put = ask(server, "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 405);
  EXPECT_EQ(put->header("Allow"), "GET, HEAD, POST");
}

TEST(Chapter5, RefusesABodyOverOneMiBFromItsHead) {
  ServerProcess server = start("05-body-and-response");
  std::optional<test_support::Response> response =
      ask(server, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 413);
}

// ---- chapter 6: main.cpp, in the reader's order (main's integration tests run on it too) ----

TEST(Chapter6, LogsEachRequestAndStopsOnCtrlC) {
  ServerProcess server = start("06-blocking-server");
  std::optional<test_support::Response> response = ask(server, kGet);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->body, kHelloWorld);
  server.signal(SIGINT);
  EXPECT_EQ(server.wait_exit(kPatience), 0);
  EXPECT_EQ(server.stderr_text(), "GET / 200\n");
}

}  // namespace
