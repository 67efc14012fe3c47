// exercises_test.cpp: the tutorial's exercises, each solution checked for the result its chapter
// promises. `make test` applies each tutorial/exercises/NN.patch to a copy of its server, builds
// the copies and the one new file into $(BUILD)/exercises, and runs this against them:
//
//   make test     (or: make BUILD=/tmp/b OUT=/tmp/o test-exercises)
//   SERVER_DIR=$PWD EXERCISE_DIR=$PWD/build/exercises build/exercises_test --gtest_filter='Chapter07*'
//
// Where it is cheap, a test also runs the unpatched server and checks that it does not show the
// result, so that the check could fail. Behaviour only: the one timing assertion is chapter 11's
// lower bound (a request waits out a sleeping handler), which a slow machine cannot break.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "server_tests.hpp"
#include "test_support.hpp"

#ifndef EXERCISES_EPOLL
#define EXERCISES_EPOLL 1  // the Makefile says 0 where main_epoll is not built (not Linux)
#endif

namespace {

using namespace std::chrono_literals;
using test_support::Client;
using test_support::Clock;
using test_support::kGet;
using test_support::kGetThenClose;
using test_support::ServerProcess;

constexpr auto kPatience = 3s;  // for what should happen at once; a passing test never waits it out

[[maybe_unused]] const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new ProcessEnvironment);

// ---- where the binaries are ----

// ServerProcess finds a binary under $SERVER_DIR (the unpatched servers); the solutions are under
// $EXERCISE_DIR, so they are named by their path from there.
std::string solution(std::string_view name) {
  const char* servers = std::getenv("SERVER_DIR");
  const char* exercises = std::getenv("EXERCISE_DIR");
  const std::filesystem::path from = servers != nullptr ? servers : ".";
  const std::filesystem::path dir = exercises != nullptr ? exercises : "build/exercises";
  return std::filesystem::relative(std::filesystem::absolute(dir) / name, std::filesystem::absolute(from)).string();
}

// ---- small helpers ----

// How often `part` occurs in `text`.
std::size_t occurrences(std::string_view text, std::string_view part) {
  std::size_t found = 0;
  for (std::size_t at = text.find(part); at != std::string_view::npos; at = text.find(part, at + 1)) ++found;
  return found;
}

// Waits until the server's stderr holds `text` `count` times; returns stderr then.
std::string wait_for_stderr_lines(const ServerProcess& server, std::string_view text, std::size_t count) {
  const auto deadline = Clock::now() + kPatience;
  for (;;) {
    std::string err = server.stderr_text();
    if (occurrences(err, text) >= count || Clock::now() >= deadline) return err;
    std::this_thread::sleep_for(2ms);
  }
}

// One request on a connection of its own; the response, or nullopt.
std::optional<test_support::Response> ask(const ServerProcess& server, std::string_view request,
                                          bool head_request = false) {
  Client client(server.port());
  if (!client.send(request)) return std::nullopt;
  return client.read_response(kPatience, head_request);
}

// ---- chapter 3: the peer's address ----

// A connection whose local port (the one the server sees as the client's) is known.
struct ConnectionWithPort {
  test_support::Fd socket;
  std::uint16_t local_port = 0;
};

ConnectionWithPort connect_and_get_port(std::uint16_t port) {
  ConnectionWithPort c{test_support::Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0))};
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(c.socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return c;
  sockaddr_in local{};
  socklen_t length = sizeof local;
  ::getsockname(c.socket.get(), reinterpret_cast<sockaddr*>(&local), &length);
  c.local_port = ntohs(local.sin_port);
  return c;
}

// Sends a GET on `c` and reads until the server closes (main closes after one response).
std::string get_and_read_all(ConnectionWithPort& c) {
  const std::string_view request = kGet;
  if (::send(c.socket.get(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    return "";
  }
  std::string received;
  const auto deadline = Clock::now() + kPatience;
  while (test_support::poll_until(c.socket.get(), POLLIN, deadline)) {
    char buffer[4096];
    const ssize_t n = ::recv(c.socket.get(), buffer, sizeof buffer, MSG_DONTWAIT);
    if (n <= 0) break;
    received.append(buffer, static_cast<std::size_t>(n));
  }
  return received;
}

TEST(Chapter03PeerAddress, PrintsEachClientsAddressAndPort) {
  ServerProcess server(solution("03-peer-address"));
  for (int i = 0; i < 2; ++i) {
    ConnectionWithPort c = connect_and_get_port(server.port());
    ASSERT_NE(c.local_port, 0) << "could not connect";
    EXPECT_TRUE(get_and_read_all(c).starts_with("HTTP/1.1 200 "));
    const std::string line = "connection from 127.0.0.1:" + std::to_string(c.local_port) + "\n";
    EXPECT_NE(wait_for_stderr_lines(server, line, 1).find(line), std::string::npos)
        << "stderr: " << server.stderr_text();
  }
}

TEST(Chapter03PeerAddress, TheUnpatchedServerDoesNotPrintIt) {
  ServerProcess server("main");
  ConnectionWithPort c = connect_and_get_port(server.port());
  EXPECT_TRUE(get_and_read_all(c).starts_with("HTTP/1.1 200 "));
  EXPECT_EQ(wait_for_stderr_lines(server, "GET / 200", 1).find("connection from"), std::string::npos);
}

// ---- chapter 4: at most 100 field lines ----

// A GET with `count` field lines in all: Host and count - 1 more ("x2: 1", "x3: 1", ...).
std::string get_with_field_lines(int count) {
  std::string request = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 2; i <= count; ++i) request += "x" + std::to_string(i) + ": 1\r\n";
  return request + "\r\n";
}

TEST(Chapter04FieldCount, Accepts100FieldLinesAndRejects101With431) {
  ServerProcess server(solution("04-field-count"));
  ASSERT_LT(get_with_field_lines(101).size(), 1024u) << "the head must fit main's buffer, or 431 says nothing";
  auto at_limit = ask(server, get_with_field_lines(100));
  ASSERT_TRUE(at_limit);
  EXPECT_EQ(at_limit->status, 200);
  auto over_limit = ask(server, get_with_field_lines(101));
  ASSERT_TRUE(over_limit);
  EXPECT_EQ(over_limit->status, 431);
}

TEST(Chapter04FieldCount, TheUnpatchedServerAccepts101) {
  ServerProcess server("main");
  auto response = ask(server, get_with_field_lines(101));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
}

// ---- chapter 5: 404 for any target but / ----

TEST(Chapter05NotFound, AnswersOnlySlashAnd404ForTheRest) {
  ServerProcess server(solution("05-not-found"));
  EXPECT_TRUE(test_support::is_hello_world(ask(server, kGet)));
  auto get = ask(server, "GET /nope HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 404);
  EXPECT_EQ(get->reason, "Not Found");

  Client client(server.port());
  client.send("HEAD /nope HTTP/1.1\r\nHost: a\r\n\r\n");
  auto head = client.read_response(kPatience, /*head_request=*/true);
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 404);
  EXPECT_EQ(client.read_until_close(kPatience), "") << "a response to HEAD has no body";
}

TEST(Chapter05NotFound, TheUnpatchedServerAnswersAnyTarget) {
  ServerProcess server("main");
  EXPECT_TRUE(test_support::is_hello_world(ask(server, "GET /nope HTTP/1.1\r\nHost: a\r\n\r\n")));
}

// ---- chapter 6: --exit-after N ----

TEST(Chapter06ExitAfter, ExitsZeroAfterTheSecondConnection) {
  ServerProcess server(solution("06-exit-after"), {"--exit-after", "2"});
  EXPECT_TRUE(test_support::is_hello_world(ask(server, kGet)));
  EXPECT_TRUE(test_support::is_hello_world(ask(server, kGet))) << "it must still serve the second";
  EXPECT_EQ(server.wait_exit(kPatience), 0);
}

TEST(Chapter06ExitAfter, RejectsABadValueWithUsageAndStatus2) {
  for (const char* bad : {"x", "0", "-1"}) {
    SCOPED_TRACE(bad);
    test_support::ExitResult result = test_support::run_to_exit(solution("06-exit-after"), {"--exit-after", bad});
    EXPECT_EQ(result.status, 2);
    EXPECT_NE(result.err.find("invalid value for --exit-after: '" + std::string(bad) + "'"), std::string::npos)
        << result.err;
    EXPECT_NE(result.err.find("usage: main "), std::string::npos) << result.err;
  }
}

TEST(Chapter06ExitAfter, TheUnpatchedServerHasNoSuchFlag) {
  EXPECT_EQ(test_support::run_to_exit("main", {"--exit-after", "2"}).status, 2);
}

// ---- chapter 7: the thread nobody joins ----

// A field of /proc/PID/status in kB ("VmSize", "VmRSS"), or -1.
long status_kb(pid_t pid, std::string_view name) {
  std::ifstream status(test_support::proc_path(pid, "status"));
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with(std::string(name) + ":")) return std::stol(line.substr(name.size() + 1));
  }
  return -1;
}

// Waits until the server has only its main thread left: every connection's thread has ended.
bool wait_for_one_thread(pid_t pid) {
  const auto deadline = Clock::now() + kPatience;
  while (test_support::thread_count(pid) != 1) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// glibc gives a thread that finds the malloc arenas busy an arena of its own: 64 MiB more
// VmSize, in some runs and not others, in either server. One arena, and VmSize moves by the
// stacks alone. (Set for the server's start only; it inherits the environment.)
struct OneMallocArena {
  OneMallocArena() { ::setenv("MALLOC_ARENA_MAX", "1", 1); }
  ~OneMallocArena() { ::unsetenv("MALLOC_ARENA_MAX"); }
};

// VmSize, in kB, that `connections` one-request connections (one after the other) add to a server
// that has served two already.
long vm_size_growth(const std::string& binary, int connections) {
  std::optional<ServerProcess> server;
  {
    OneMallocArena one_arena;
    server.emplace(binary);
  }
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(test_support::is_hello_world(ask(*server, kGetThenClose)));
  EXPECT_TRUE(wait_for_one_thread(server->pid()));
  const long before = status_kb(server->pid(), "VmSize");
  for (int i = 0; i < connections; ++i) EXPECT_TRUE(test_support::is_hello_world(ask(*server, kGetThenClose)));
  EXPECT_TRUE(wait_for_one_thread(server->pid())) << "a connection's thread did not end";
  return status_kb(server->pid(), "VmSize") - before;
}

constexpr int kStackKb = 256;  // main_async's kThreadStackSize (a guard page comes with each)

TEST(Chapter07Unreaped, VmSizeGrowsByAThreadStackPerConnection) {
  constexpr int kConnections = 50;
  const long growth = vm_size_growth(solution("07-unreaped"), kConnections);
  EXPECT_GE(growth, kConnections * kStackKb) << "VmSize grew by " << growth << " kB";
  EXPECT_LE(growth, kConnections * (kStackKb + 16)) << "VmSize grew by " << growth << " kB";
}

TEST(Chapter07Unreaped, TheUnpatchedServerStaysFlat) {
  constexpr int kConnections = 50;
  // A new thread may start before the last one's stack is free: a second stack, now and then.
  EXPECT_LE(vm_size_growth("main_async", kConnections), 2 * (kStackKb + 4));
}

// ---- chapter 8: at most 100 requests per connection ----

// Sends `count` pipelined GETs in one go (the last saying close, if `close_last`); returns the
// responses that came before the server closed.
std::vector<test_support::Response> pipelined_responses(Client& client, int count, bool close_last) {
  std::string requests;
  for (int i = 1; i < count; ++i) requests += kGet;
  requests += close_last ? kGetThenClose : kGet;
  EXPECT_TRUE(client.send(requests));
  std::vector<test_support::Response> responses;
  while (auto response = client.read_response(kPatience)) responses.push_back(*response);
  return responses;
}

TEST(Chapter08MaxRequests, The100thResponseClosesTheConnection) {
  ServerProcess server(solution("08-max-requests"));
  Client client(server.port());
  std::vector<test_support::Response> responses = pipelined_responses(client, 101, /*close_last=*/false);
  ASSERT_EQ(responses.size(), 100u);
  for (std::size_t i = 0; i < 99; ++i) {
    EXPECT_EQ(responses[i].status, 200);
    EXPECT_FALSE(responses[i].has_header("Connection")) << "response " << i + 1;
  }
  EXPECT_EQ(responses[99].header("Connection"), "close");
  EXPECT_TRUE(client.peer_closed()) << "then EOF";
  EXPECT_FALSE(client.peer_reset()) << "an orderly close, not a reset";
  EXPECT_EQ(client.unread(), "");
}

TEST(Chapter08MaxRequests, TheUnpatchedServerAnswersAll101) {
  ServerProcess server("main_async");
  Client client(server.port());
  // The last says close, so that the server closes at once instead of after its idle timeout.
  EXPECT_EQ(pipelined_responses(client, 101, /*close_last=*/true).size(), 101u);
}

// ---- chapter 9: 8192-byte buffers, and a log written in batches ----

std::string get_with_a_6000_byte_field_line() {
  const std::string name = "X-Long: ";
  return "GET / HTTP/1.1\r\nHost: a\r\n" + name + std::string(6000 - name.size(), 'a') + "\r\n\r\n";
}

TEST(Chapter09Buffers8192, AnswersAHeadWithA6000ByteFieldLine) {
  ServerProcess server(solution("09-buffers-8192"));
  EXPECT_TRUE(test_support::is_hello_world(ask(server, get_with_a_6000_byte_field_line())));
}

TEST(Chapter09Buffers8192, TheUnpatchedServerAnswers431) {
  ServerProcess server("main_async");
  auto response = ask(server, get_with_a_6000_byte_field_line());
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 431);
}

// The "syscw" line of /proc/PID/io: write system calls (write, writev...; not send) so far; -1
// where the kernel does not count them (no CONFIG_TASK_IO_ACCOUNTING).
long write_calls(pid_t pid) {
  std::ifstream io(test_support::proc_path(pid, "io"));
  for (std::string line; std::getline(io, line);) {
    if (line.starts_with("syscw:")) return std::stol(line.substr(6));
  }
  return -1;
}

struct LogRun {
  std::size_t lines = 0;  // "GET / 200" lines on stderr
  long writes = -1;       // write calls the server made meanwhile (-1: not counted here)
};

// `requests` pipelined GETs on one connection (the last says close), with --log-requests.
LogRun log_requests(const std::string& binary, int requests) {
  ServerProcess server(binary, {"--log-requests"});
  const long before = write_calls(server.pid());
  Client client(server.port());
  std::string bytes;
  for (int i = 1; i < requests; ++i) bytes += kGet;
  bytes += kGetThenClose;
  EXPECT_TRUE(client.send(bytes));
  client.read_until_close(kPatience);
  const std::string err = wait_for_stderr_lines(server, "GET / 200\n", static_cast<std::size_t>(requests));
  LogRun run;
  run.lines = occurrences(err, "GET / 200\n");
  if (before >= 0) run.writes = write_calls(server.pid()) - before;
  return run;
}

TEST(Chapter09BatchedLog, LogsEveryRequestInOneWritePer64Lines) {
  const LogRun run = log_requests(solution("09-batched-log"), 100);
  EXPECT_EQ(run.lines, 100u);
  if (run.writes < 0) GTEST_SKIP() << "/proc/PID/io has no syscw here: the lines are checked, not the writes";
  EXPECT_EQ(run.writes, 2) << "64 lines, then the other 36 as the connection ends";
}

TEST(Chapter09BatchedLog, TheUnpatchedServerWritesOncePerLine) {
  const LogRun run = log_requests("main_async", 100);
  EXPECT_EQ(run.lines, 100u);
  if (run.writes < 0) GTEST_SKIP() << "/proc/PID/io has no syscw here";
  EXPECT_EQ(run.writes, 100);
}

// ---- chapter 10: one connection, one request at a time ----

TEST(Chapter10OneConnectionClient, Gets1000ResponsesFromMainAsync) {
  ServerProcess server("main_async");
  test_support::ExitResult result = test_support::run_to_exit(
      solution("10-one-connection-client"), {"--port", std::to_string(server.port()), "--requests", "1000"}, 30s);
  EXPECT_EQ(result.status, 0) << result.err;
  unsigned long responses = 0, per_second = 0;
  char end = 0;
  EXPECT_EQ(std::sscanf(result.out.c_str(), "%lu responses, %lu requests/s%c", &responses, &per_second, &end), 3)
      << result.out;
  EXPECT_EQ(responses, 1000u) << result.out;
  EXPECT_EQ(end, '\n') << result.out;
}

TEST(Chapter10OneConnectionClient, SaysSoWhenTheServerClosesAfterOneResponse) {
  ServerProcess server("main");
  test_support::ExitResult result = test_support::run_to_exit(
      solution("10-one-connection-client"), {"--port", std::to_string(server.port()), "--requests", "1000"});
  EXPECT_EQ(result.status, 1);
  EXPECT_TRUE(result.out.starts_with("1 responses, ")) << result.out;
}

// ---- chapters 11 to 13: the event loop (main_epoll, Linux) ----

#if EXERCISES_EPOLL

TEST(Chapter11SleepingHandler, AGetSentDuringSlowWaitsForItsSleep) {
  ServerProcess server(solution("11-sleeping-handler"), {"--workers", "1"});
  Client slow(server.port());
  slow.send(kGet);  // first a quick one, so that the worker has accepted this connection
  ASSERT_TRUE(test_support::is_hello_world(slow.read_response(kPatience)));

  const auto sent = Clock::now();
  slow.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
  Client quick(server.port());  // accepted, and its GET read, only once the worker wakes
  quick.send(kGet);
  ASSERT_TRUE(test_support::is_hello_world(quick.read_response(kPatience)));
  const auto answered = Clock::now();
  EXPECT_GE(test_support::millis(answered - sent), 200) << "ms from /slow's request to GET /'s response";
  EXPECT_TRUE(test_support::is_hello_world(slow.read_response(kPatience)));
}

// Makes `count` connections of one request each, stops the server, and returns its stderr.
std::string stderr_after_connections(const std::string& binary, int count) {
  ServerProcess server(binary, {"--workers", "2"});
  for (int i = 0; i < count; ++i) EXPECT_TRUE(test_support::is_hello_world(ask(server, kGetThenClose)));
  EXPECT_EQ(server.stop(kPatience), 0);
  return server.stderr_text();
}

// The "worker N accepted M" lines: M by N, and how many lines there were.
struct WorkerCounts {
  std::map<int, int> accepted;
  int lines = 0;
};

WorkerCounts worker_counts(const std::string& err) {
  WorkerCounts counts;
  std::istringstream lines(err);
  for (std::string line; std::getline(lines, line);) {
    int worker = -1, accepted = 0;
    if (std::sscanf(line.c_str(), "worker %d accepted %d", &worker, &accepted) != 2) continue;
    counts.accepted[worker] = accepted;
    ++counts.lines;
  }
  return counts;
}

TEST(Chapter12WorkerCounts, EachWorkerSaysHowManyItAcceptedAndTheyAddUp) {
  constexpr int kConnections = 20;
  const std::string err = stderr_after_connections(solution("12-worker-counts"), kConnections);
  const WorkerCounts counts = worker_counts(err);
  EXPECT_EQ(counts.lines, 2) << err;
  ASSERT_EQ(counts.accepted.size(), 2u) << err;
  EXPECT_TRUE(counts.accepted.contains(0) && counts.accepted.contains(1)) << err;
  EXPECT_EQ(counts.accepted.begin()->second + counts.accepted.rbegin()->second, kConnections) << err;
}

TEST(Chapter12WorkerCounts, TheUnpatchedServerSaysNothing) {
  EXPECT_EQ(stderr_after_connections("main_epoll", 3).find("accepted"), std::string::npos);
}

// Sockets in LISTEN state on `port` (IPv4 and IPv6), from /proc/net/tcp and /proc/net/tcp6.
int listening_sockets(std::uint16_t port) {
  int count = 0;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream lines(table);
    std::string line;
    std::getline(lines, line);  // the column names
    while (std::getline(lines, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      fields >> slot >> local >> remote >> state;  // local is ADDRESS:PORT in hex
      const unsigned local_port = std::stoul(local.substr(local.rfind(':') + 1), nullptr, 16);
      if (local_port == port && state == "0A") ++count;  // 0A: TCP_LISTEN
    }
  }
  return count;
}

TEST(Chapter13ReusePort, TwoWorkersListenOnTwoSockets) {
  ServerProcess server(solution("13-reuseport"), {"--workers", "2"});
  EXPECT_EQ(listening_sockets(server.port()), 2);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(test_support::is_hello_world(ask(server, kGet)));
  EXPECT_EQ(server.stop(kPatience), 0);
}

// Chapter 13 has the reader apply chapter 12's counts too: the kernel's hash spreads 100
// connections over both listeners. (Fewer than 10 of 100 for either worker, at even odds, comes
// once in about 3 * 10^17 runs; main_epoll's shared listener often gives one worker all 100.)
TEST(Chapter13ReusePort, WithChapter12sCountsBothWorkersTakeAShare) {
  constexpr int kConnections = 100;
  const std::string err = stderr_after_connections(solution("12-13-counts-and-reuseport"), kConnections);
  const WorkerCounts counts = worker_counts(err);
  ASSERT_EQ(counts.accepted.size(), 2u) << err;
  const int first = counts.accepted.begin()->second, second = counts.accepted.rbegin()->second;
  EXPECT_EQ(first + second, kConnections) << err;
  EXPECT_GE(std::min(first, second), 10) << err;
}

TEST(Chapter13ReusePort, TheUnpatchedServerHasOneListener) {
  ServerProcess server("main_epoll", {"--workers", "2"});
  EXPECT_EQ(listening_sockets(server.port()), 1);
}

#endif  // EXERCISES_EPOLL

}  // namespace
