// first_server_test.cpp: the first server (tutorial/code/first_server.cpp) does what chapter 2
// says, its breaks included: each test is one of the chapter's commands, and fails if the
// server ever stops breaking that way (a fixed break belongs in main.cpp, not there).
//
//   make && make build/first_server_tests && SERVER_DIR=$PWD build/first_server_tests
//
// Linux: the reset and TIME_WAIT behaviour checked here is Linux's (macOS differs in details).
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "server_tests.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using test_support::Client;
using test_support::Clock;
using test_support::Fd;
using test_support::kGet;
using test_support::kHelloWorld;
using test_support::millis;
using test_support::post_request;
using test_support::ServerProcess;

constexpr auto kPatience = 3s;  // for what should happen at once; a passing test never waits it out

[[maybe_unused]] ::testing::Environment* const kProcessEnvironment =
    ::testing::AddGlobalTestEnvironment(new ProcessEnvironment);

// A port nothing is bound to, below Linux's ephemeral range (32768 and up), so that no client's
// own end of a connection (or its TIME_WAIT) takes it between this check and the server's bind.
std::uint16_t unused_port() {
  static std::mt19937 random(std::random_device{}());
  for (int attempt = 0; attempt < 100; ++attempt) {
    const auto port = static_cast<std::uint16_t>(std::uniform_int_distribution<int>(20000, 30000)(random));
    Fd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) return port;
  }
  throw std::runtime_error("no unused port in 20000..30000");
}

// Starts SERVER_DIR/first_server PORT in `server`, as the chapter runs it; with
// `listening_line`, returns once it says it listens (and throws if it does not).
ServerProcess& start_first_server(std::optional<ServerProcess>& server, std::uint16_t port,
                                  ServerProcess::Readiness readiness = ServerProcess::Readiness::listening_line) {
  return server.emplace("first_server", std::vector<std::string>{std::to_string(port)}, readiness, kPatience,
                        ServerProcess::Port::in_args);
}

// A first server on an unused port, once it says it listens there.
class FirstServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::uint16_t port = unused_port();
    ASSERT_EQ(start_first_server(server_, port).port(), port);
  }
  ServerProcess& server() { return *server_; }
  std::optional<ServerProcess> server_;
};

void expect_hello_world(const std::optional<test_support::Response>& response, const Client& client) {
  ASSERT_TRUE(response) << "no response; received [" << client.unread() << "]";
  EXPECT_EQ(response->version, "HTTP/1.1");
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->reason, "OK");
  EXPECT_EQ(response->header("Content-Length"), "12");
  EXPECT_EQ(response->body, kHelloWorld);
}

// ---- what works: curl -i ----

TEST_F(FirstServerTest, AnswersCurlsGetWith200HelloWorldAndCloses) {
  Client client(server().port());
  ASSERT_TRUE(client.send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"));
  expect_hello_world(client.read_response(kPatience), client);
  EXPECT_EQ(client.read_until_close(kPatience), "") << "one response, then nothing";
  EXPECT_TRUE(client.peer_closed());
  EXPECT_FALSE(client.peer_reset()) << "the whole request was read, so close() sends FIN, not RST";
}

TEST_F(FirstServerTest, AnswersOneClientAfterAnother) {
  for (int i = 0; i < 3; ++i) {
    Client client(server().port());
    ASSERT_TRUE(client.send(kGet));
    expect_hello_world(client.read_response(kPatience), client);
  }
}

// ---- the breaks ----

// One read takes whatever has arrived: the request line alone is "the request" (fixed in chapter 4).
TEST_F(FirstServerTest, AnswersASplitRequestAfterItsFirstPartOnly) {
  Client client(server().port());
  ASSERT_TRUE(client.send("GET / HTTP/1.1\r\n"));
  expect_hello_world(client.read_response(kPatience), client);  // before the rest was even sent
  std::this_thread::sleep_for(100ms);
  client.send("Host: a\r\n\r\n");  // to a connection already closed: the server's kernel resets it
  EXPECT_TRUE(client.is_closed_by_peer(kPatience));
  EXPECT_EQ(client.unread(), "") << "the rest of the request is answered by nobody";
}

// The body is never read (fixed in chapter 5): the answer is the same Hello World!, and the bytes
// left unread when the server closes make its kernel reset the connection instead of ending it.
// Linux keeps the answer, which arrived before the reset, readable; a client that checks for
// errors first (nc, curl while still sending) may lose it: the test reads before it sends more.
TEST_F(FirstServerTest, NeverReadsAPostBodyAndResetsTheConnectionOverItsUnreadBytes) {
  const std::string body(20000, 'x');  // far more than the one 1024-byte read takes
  Client client(server().port());
  ASSERT_TRUE(client.send(post_request(body)));  // one send: all of it has arrived before the read
  expect_hello_world(client.read_response(kPatience), client);
  EXPECT_TRUE(client.is_closed_by_peer(kPatience));
  EXPECT_TRUE(client.peer_reset()) << "ended with FIN: the server read the whole body";
}

// The one read takes both requests; the server answers once and closes (fixed in chapter 8).
TEST_F(FirstServerTest, AnswersOnlyOneOfTwoPipelinedRequests) {
  Client client(server().port());
  ASSERT_TRUE(client.send(std::string(kGet) + "GET /b HTTP/1.1\r\nHost: a\r\n\r\n"));
  expect_hello_world(client.read_response(kPatience), client);
  EXPECT_EQ(client.read_until_close(kPatience), "") << "a second response";
  EXPECT_TRUE(client.peer_closed());
}

// One connection at a time, and no timeout: a client that says nothing holds everyone else for
// as long as it likes (fixed in chapters 6 and 7). Its close sets the next one free.
TEST_F(FirstServerTest, ASilentClientMakesTheNextOneWaitUntilItCloses) {
  Client silent(server().port());
  Client next(server().port());
  ASSERT_TRUE(next.send(kGet));
  EXPECT_FALSE(next.read_response(300ms)) << "answered while the silent client still holds the server";
  EXPECT_FALSE(silent.is_closed_by_peer(1ms)) << "the server gave up on the silent client";
  silent.close();
  const auto closed_at = Clock::now();
  expect_hello_world(next.read_response(kPatience), next);
  EXPECT_LT(millis(Clock::now() - closed_at), 1000);
}

// No signal handling: Ctrl-C (SIGINT) kills it where it stands (a clean stop is chapter 6's).
TEST_F(FirstServerTest, SigintKillsIt) {
  server().signal(SIGINT);
  EXPECT_EQ(server().wait_exit(kPatience), 128 + SIGINT);
}

// Without SO_REUSEADDR (chapter 3), the served connection's TIME_WAIT (60 s on Linux) keeps
// the port: the server closed first, so its side waits, and bind() refuses the address.
TEST_F(FirstServerTest, CannotRestartOnThePortRightAfterServingAConnection) {
  {
    Client client(server().port());
    ASSERT_TRUE(client.send(kGet));
    expect_hello_world(client.read_response(kPatience), client);
    ASSERT_TRUE(client.is_closed_by_peer(kPatience));
  }
  server().signal(SIGINT);
  ASSERT_EQ(server().wait_exit(kPatience), 128 + SIGINT);

  std::optional<ServerProcess> again;
  start_first_server(again, server().port(), ServerProcess::Readiness::none);
  EXPECT_EQ(again->wait_exit(kPatience), 1);
  EXPECT_EQ(again->stderr_text(), "bind: Address already in use\n");
  EXPECT_EQ(again->stdout_text(), "") << "it must not say it listens";
}

// The same restart works when it served nobody: it is the connection's TIME_WAIT, not the
// listening socket, that holds the port.
TEST_F(FirstServerTest, RestartsOnThePortWhenItServedNobody) {
  server().signal(SIGINT);
  ASSERT_EQ(server().wait_exit(kPatience), 128 + SIGINT);
  std::optional<ServerProcess> again;
  EXPECT_EQ(start_first_server(again, server().port()).port(), server().port());
}

}  // namespace
