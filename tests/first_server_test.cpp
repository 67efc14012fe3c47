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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
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
using test_support::Millis;
using test_support::post_request;

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

// Runs SERVER_DIR/first_server PORT, as the chapter does. (test_support::ServerProcess passes
// "--port 0", which the first server, taking nothing but a port number, does not understand.)
class FirstServer {
 public:
  explicit FirstServer(std::uint16_t port) : port_(port) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    stdout_ = Fd(out[0]);
    stderr_ = Fd(err[0]);
    Fd out_write(out[1]), err_write(err[1]);
    const std::string path = test_support::server_path("first_server"), port_text = std::to_string(port);
    char* const argv[] = {const_cast<char*>(path.c_str()), const_cast<char*>(port_text.c_str()), nullptr};
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {  // default signal handling (SIGINT is the point), and it dies with the test
      for (int signal_number = 1; signal_number < NSIG; ++signal_number) ::signal(signal_number, SIG_DFL);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::dup2(out_write.get(), STDOUT_FILENO);
      ::dup2(err_write.get(), STDERR_FILENO);
      ::execv(path.c_str(), argv);
      static constexpr char kExecFailed[] = "first_server_test: exec of first_server failed\n";
      [[maybe_unused]] const ssize_t ignored = ::write(STDERR_FILENO, kExecFailed, sizeof kExecFailed - 1);
      ::_exit(127);
    }
  }
  FirstServer(const FirstServer&) = delete;
  FirstServer& operator=(const FirstServer&) = delete;
  ~FirstServer() {
    if (exit_status_) return;
    ::kill(pid_, SIGKILL);
    wait_exit(kPatience);
  }

  std::uint16_t port() const { return port_; }
  void signal(int signal_number) const { ::kill(pid_, signal_number); }

  // What it printed on stdout, up to the first line break (or its exit, or `timeout`).
  std::string first_line(Millis timeout = kPatience) {
    const auto deadline = Clock::now() + timeout;
    while (out_text_.find('\n') == std::string::npos && read_some(stdout_, out_text_, deadline)) {
    }
    return out_text_.substr(0, out_text_.find('\n'));
  }

  // The exit status (128 + N if signal N ended it), or nullopt if it still runs after `timeout`.
  std::optional<int> wait_exit(Millis timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!exit_status_) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      } else if (Clock::now() >= deadline) {
        return std::nullopt;
      } else {
        std::this_thread::sleep_for(5ms);
      }
    }
    return exit_status_;
  }

  // Everything it printed on stderr; call once it has exited.
  std::string stderr_text() {
    while (read_some(stderr_, err_text_, Clock::now() + kPatience)) {
    }
    return err_text_;
  }

 private:
  static bool read_some(const Fd& pipe, std::string& text, Clock::time_point deadline) {
    if (!test_support::poll_until(pipe.get(), POLLIN, deadline)) return false;
    char buffer[4096];
    const ssize_t count = ::read(pipe.get(), buffer, sizeof buffer);
    if (count <= 0) return false;
    text.append(buffer, static_cast<std::size_t>(count));
    return true;
  }

  std::uint16_t port_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  Fd stdout_, stderr_;
  std::string out_text_, err_text_;
};

// A first server on an unused port, once it says it listens.
class FirstServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.emplace(unused_port());
    ASSERT_EQ(server_->first_line(), "Listening on http://127.0.0.1:" + std::to_string(server_->port()))
        << "stderr: " << (server_->wait_exit(0ms) ? server_->stderr_text() : "(still running)");
  }
  FirstServer& server() { return *server_; }
  std::optional<FirstServer> server_;
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

  FirstServer again(server().port());
  EXPECT_EQ(again.wait_exit(kPatience), 1);
  EXPECT_EQ(again.stderr_text(), "bind: Address already in use\n");
  EXPECT_EQ(again.first_line(), "") << "it must not say it listens";
}

// The same restart works when it served nobody: it is the connection's TIME_WAIT, not the
// listening socket, that holds the port.
TEST_F(FirstServerTest, RestartsOnThePortWhenItServedNobody) {
  server().signal(SIGINT);
  ASSERT_EQ(server().wait_exit(kPatience), 128 + SIGINT);
  FirstServer again(server().port());
  EXPECT_EQ(again.first_line(), "Listening on http://127.0.0.1:" + std::to_string(server().port()));
}

}  // namespace
