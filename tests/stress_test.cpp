// stress_test.cpp: hostile clients and faults against the real ./main, ./main_async and ./main_epoll.
//
//   make && make build/stress_tests && SERVER_DIR=$PWD build/stress_tests
//   SERVER_DIR=$PWD build/stress_tests --gtest_filter='*Scale.*'     # a subset
//   SERVER_DIR=$PWD build/stress_tests --gtest_filter='*/main_epoll'  # one server
//
// What a server meets outside a test: descriptors running out, clients that trickle (a head
// or a body), fall silent, reset, half-close or vanish, uploads that together would exhaust
// memory, memory or threads that the system will not give, heads that fill the buffer, ten
// thousand connections at once, and a SIGTERM in the middle of all that. As in
// integration_test.cpp, each rule runs against every server that has the behaviour (see
// server_tests.hpp): slow clients, faults and a clean exit against all three (AllServers/...);
// descriptor exhaustion, many connections, body memory, room in the buffer and shutdown under
// load against main_async and main_epoll (ConcurrentServers/...). What is about one server's
// design names it: main serves one connection at a time, main_async starts a thread per
// connection. Each test watches the server from outside, through /proc/PID: its open
// descriptors, threads and CPU time. Each ends by stopping the server with SIGTERM and
// expecting exit status 0, which under `make check` is also the sanitizers' verdict: a leak
// (LeakSanitizer), a data race (ThreadSanitizer) or any other report makes the exit status
// non-zero. Timeouts are short (--timeout-ms 300 to 1000), so the file runs in well under a
// minute.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "server_tests.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using test_support::Client;
using test_support::Clock;
using test_support::cpu_ticks;
using test_support::is_hello_world;
using test_support::kGet;
using test_support::kGetThenClose;
using test_support::kHelloWorld;
using test_support::millis;
using test_support::Millis;
using test_support::open_descriptors;
using test_support::post_request;
using test_support::Response;
using test_support::ServerProcess;
using test_support::send_while_reading;
using test_support::thread_count;

// How long a test waits for something that should happen at once (generous, for loaded
// machines and sanitizer builds; a passing test never waits for it). Longer than
// integration_test.cpp's 3 s: these tests load the machine themselves.
constexpr auto kPatience = 5s;

// ThreadSanitizer makes each new thread cost a millisecond or two, more as live threads add
// up, so the tests that hold a thread per connection by the thousand scale down under it:
// the sanitizer's cost, not the server, would set the pace.
constexpr bool kThreadSanitizer = test_support::kBuiltWithThreadSanitizer;

// ---- the server, seen from outside ----

// Polls `condition` every 10 ms until it holds or `timeout` passes; says which.
template <typename Condition>
bool eventually(Condition condition, Millis timeout = kPatience) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
}

// Stops the server with SIGTERM, expects exit status 0 within `grace` (a sanitizer's report
// makes it non-zero) and no sanitizer report on stderr.
void expect_clean_exit(ServerProcess& server, Millis grace = 2s) {
  const int status = server.stop(grace);
  const std::string errors = server.stderr_text();
  EXPECT_EQ(status, 0) << "stderr ends: " << errors.substr(errors.size() > 3000 ? errors.size() - 3000 : 0);
  EXPECT_EQ(errors.find("Sanitizer"), std::string::npos) << errors;
}

// The descriptors and threads an idle server has; a fault must leave it with no more.
struct IdleState {
  long descriptors = 0;
  long threads = 0;
};

IdleState idle_state_after_one_request(const ServerProcess& server, const ServerKind& kind) {
  Client client(server.port());
  client.send(kGetThenClose);
  EXPECT_TRUE(is_hello_world(client.read_response(kPatience)));
  EXPECT_TRUE(client.is_closed_by_peer(kPatience));
  client.close();
  std::this_thread::sleep_for(100ms);
  // main_async's connection thread goes away (ThreadSanitizer keeps a thread of its own). The
  // other servers' threads do not come and go with connections.
  if (kind.thread_per_connection) {
    EXPECT_TRUE(eventually([&] { return thread_count(server.pid()) <= 2; }))
        << thread_count(server.pid()) << " threads";
  }
  std::this_thread::sleep_for(100ms);
  return {open_descriptors(server.pid()), thread_count(server.pid())};
}

void expect_back_to_idle(const ServerProcess& server, const IdleState& idle) {
  long descriptors = -1, threads = -1;
  EXPECT_TRUE(eventually([&] {
    descriptors = open_descriptors(server.pid());
    threads = thread_count(server.pid());
    return descriptors == idle.descriptors && threads <= idle.threads;
  })) << descriptors << " descriptors open (" << idle.descriptors << " when idle), " << threads << " threads ("
      << idle.threads << " when idle)";
}

void expect_still_serving(const ServerProcess& server) {
  Client client(server.port());
  client.send(kGet);
  EXPECT_TRUE(is_hello_world(client.read_response(kPatience))) << "received " << client.unread();
}

// ---- fixtures ----

// What ProcessEnvironment does, after raising the test's own descriptor limit (the servers it
// starts inherit it) so that thousands of connections fit.
class StressEnvironment : public ProcessEnvironment {
 public:
  void SetUp() override {
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = std::max<rlim_t>(limit.rlim_cur, std::min<rlim_t>(limit.rlim_max, 30000));
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ProcessEnvironment::SetUp();
  }
};
[[maybe_unused]] ::testing::Environment* const kProcessEnvironment =
    ::testing::AddGlobalTestEnvironment(new StressEnvironment);

rlim_t descriptor_limit() {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}


// ---- DescriptorExhaustion (the concurrent servers) ----

class DescriptorExhaustion : public ServerTest {};
RUN_AGAINST_CONCURRENT_SERVERS(DescriptorExhaustion);

// With `ulimit -n 64`, 200 connections held open: accept() fails with EMFILE while the rest
// wait in the kernel's queue. The server must back off instead of spinning, and serve every one
// of them as descriptors come free, then go on as before.
TEST_P(DescriptorExhaustion, ServesEveryConnectionOnceDescriptorsFreeUpAndDoesNotSpin) {
  constexpr int kConnections = 200;
  ServerProcess server = start({"--timeout-ms", "20000"});
  const IdleState idle = idle_state_after_one_request(server, GetParam());
  const rlimit limit{64, 64};
  ASSERT_EQ(::prlimit(server.pid(), RLIMIT_NOFILE, &limit, nullptr), 0) << "prlimit: " << std::strerror(errno);

  std::vector<Client> clients;
  clients.reserve(kConnections);
  for (int i = 0; i < kConnections; ++i) clients.emplace_back(server.port());  // the kernel queues what is not accepted
  ASSERT_TRUE(eventually([&] { return server.stderr_text().find("Too many open files") != std::string::npos; }))
      << "the server never ran out of descriptors; it has " << open_descriptors(server.pid()) << " open";

  // Starved: only the back-off's wake-ups may cost CPU time.
  const long ticks_before = cpu_ticks(server.pid());
  const auto starved_from = Clock::now();
  std::this_thread::sleep_for(2s);
  const double cpu_share = static_cast<double>(cpu_ticks(server.pid()) - ticks_before) /
                           static_cast<double>(::sysconf(_SC_CLK_TCK)) /
                           std::chrono::duration<double>(Clock::now() - starved_from).count();
  EXPECT_LT(cpu_share, 0.10) << "the starved server used " << cpu_share * 100 << "% of a CPU";

  // Every held connection is served; each one closed frees a descriptor for the next.
  for (Client& client : clients) ASSERT_TRUE(client.send(kGetThenClose));
  int answered = 0;
  for (Client& client : clients) {
    answered += is_hello_world(client.read_response(20s));
    client.close();
  }
  EXPECT_EQ(answered, kConnections);
  clients.clear();
  expect_still_serving(server);
  expect_back_to_idle(server, idle);
  expect_clean_exit(server);
}

// ---- SlowClients ----

class SlowClients : public ServerTest {};
RUN_AGAINST_ALL_SERVERS(SlowClients);

TEST_P(SlowClients, AnswersARequestSentOneByteAtATime) {
  ServerProcess server = start({"--timeout-ms", "5000"});
  Client client(server.port());
  const std::string request = post_request("trickled body", "Connection: close\r\n");
  ASSERT_TRUE(client.send_slowly(request, 1, 2ms));
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << client.unread();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "trickled body");
  expect_clean_exit(server);
}

// A slowloris client: each byte comes before the timeout, but the head never completes. The
// timeout bounds the whole head, so the server answers 408 and closes.
TEST_P(SlowClients, CutsOffAHeadTrickledForLongerThanTheTimeout) {
  ServerProcess server = start({"--timeout-ms", "300"});
  Client client(server.port());
  const std::string head = "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + std::string(200, 'z');
  const auto started = Clock::now();
  for (char byte : head) {
    if (!client.send(std::string_view(&byte, 1)) || client.wait_for_bytes(1, 20ms)) break;
  }
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << client.unread();
  EXPECT_EQ(response->status, 408);
  EXPECT_GE(millis(Clock::now() - started), 250);
  EXPECT_LT(millis(Clock::now() - started), 3000) << "the trickle held the connection far past the timeout";
  EXPECT_TRUE(client.is_closed_by_peer(kPatience));
  expect_still_serving(server);
  expect_clean_exit(server);
}

TEST(SlowClients, MainDropsASilentConnectionAtTheTimeoutAndServesTheNextClient) {
  ServerProcess server("main", {"--timeout-ms", "500"});
  Client silent(server.port());
  std::this_thread::sleep_for(50ms);  // the silent one is accepted first
  Client next(server.port());
  const auto started = Clock::now();
  ASSERT_TRUE(next.send(kGet));
  EXPECT_TRUE(is_hello_world(next.read_response(kPatience)));
  const long long waited = millis(Clock::now() - started);
  EXPECT_GE(waited, 350) << "served before the silent client's timeout: was the silent one accepted first?";
  EXPECT_LT(waited, 2500);
  EXPECT_EQ(silent.read_until_close(kPatience), "");
  EXPECT_TRUE(silent.peer_closed());
  expect_clean_exit(server);
}

// ---- Faults: clients that misbehave ----

class Faults : public ServerTest {};
RUN_AGAINST_ALL_SERVERS(Faults);

TEST_P(Faults, AClientThatResetsMidResponseLeavesNoDescriptorBehind) {
  ServerProcess server = start({"--max-body", "33554432"});
  const IdleState idle = idle_state_after_one_request(server, GetParam());
  for (int round = 0; round < 3; ++round) {
    Client client(server.port());
    const std::string body(16 * 1024 * 1024, 'r');  // far more than the socket buffers hold
    std::atomic<bool> sent{false};
    std::thread sender([&] { sent = client.send(post_request(body), 20s); });
    const bool answering = client.wait_for_bytes(1, 20s);
    sender.join();
    ASSERT_TRUE(sent && answering) << "the server did not take the body and start answering";
    client.close_with_reset();  // mid-response: the server is still sending
  }
  expect_back_to_idle(server, idle);
  expect_still_serving(server);
  expect_clean_exit(server);
}

TEST_P(Faults, AClientThatHalfClosesAfterSendingIsAnsweredAndLeavesNoDescriptorBehind) {
  ServerProcess server = start();
  const IdleState idle = idle_state_after_one_request(server, GetParam());
  for (int round = 0; round < 3; ++round) {
    Client client(server.port());
    ASSERT_TRUE(client.send(post_request("half-closed")));
    client.shutdown_write();  // "that is all I will send": the response must still come
    const std::optional<Response> response = client.read_response(kPatience);
    ASSERT_TRUE(response) << "received " << client.unread();
    EXPECT_EQ(response->body, "half-closed");
    EXPECT_TRUE(client.is_closed_by_peer(kPatience));
    EXPECT_FALSE(client.peer_reset());
  }
  expect_back_to_idle(server, idle);
  expect_clean_exit(server);
}

TEST_P(Faults, AClientThatVanishesMidBodyLeavesNoDescriptorBehind) {
  ServerProcess server = start();
  const IdleState idle = idle_state_after_one_request(server, GetParam());
  for (int round = 0; round < 4; ++round) {
    Client client(server.port());
    ASSERT_TRUE(client.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nonly the start"));
    std::this_thread::sleep_for(20ms);  // the server is waiting for the rest of the body
    if (round % 2 == 0) {
      client.close();
    } else {
      client.close_with_reset();
    }
  }
  {
    Client client(server.port());  // and one that vanishes mid-head
    ASSERT_TRUE(client.send("GET / HTTP/1.1\r\nHo"));
    std::this_thread::sleep_for(20ms);
    client.close_with_reset();
  }
  expect_back_to_idle(server, idle);
  expect_still_serving(server);
  expect_clean_exit(server);
}

// ---- Scale (the concurrent servers) ----

class Scale : public ServerTest {};
RUN_AGAINST_CONCURRENT_SERVERS(Scale);

// True once the server holds `count` connections more than when idle: a descriptor each, and in
// main_async a thread each.
bool holds_connections(const ServerProcess& server, const IdleState& idle, long count, const ServerKind& kind) {
  return open_descriptors(server.pid()) >= idle.descriptors + count &&
         (!kind.thread_per_connection || thread_count(server.pid()) >= idle.threads + count);
}

// Reads one response on each client, in turn; how many were Hello World.
int count_hello_worlds(std::vector<Client>& clients) {
  int answered = 0;
  for (Client& client : clients) answered += is_hello_world(client.read_response(kPatience));
  return answered;
}

TEST_P(Scale, ServesTenThousandConcurrentConnections) {
  const int kConnections = kThreadSanitizer && has_thread_per_connection() ? 2000 : 10000;
  if (descriptor_limit() < static_cast<rlim_t>(kConnections) + 100) {
    GTEST_SKIP() << "needs `ulimit -n` of " << kConnections + 100 << ", have " << descriptor_limit();
  }
  ServerProcess server = start({"--timeout-ms", "20000"});
  const IdleState idle = idle_state_after_one_request(server, GetParam());
  std::vector<Client> clients;
  clients.reserve(kConnections);
  for (int i = 0; i < kConnections; ++i) clients.emplace_back(server.port());
  for (Client& client : clients) ASSERT_TRUE(client.send(kGet));
  EXPECT_EQ(count_hello_worlds(clients), kConnections);
  // Every connection is still open (kept alive): in main_async each on a thread of its own, in
  // main_epoll on the workers it had when idle.
  EXPECT_EQ(thread_count(server.pid()), idle.threads + (has_thread_per_connection() ? kConnections : 0));
  // And a second round on the same connections.
  for (Client& client : clients) ASSERT_TRUE(client.send(kGet));
  EXPECT_EQ(count_hello_worlds(clients), kConnections);
  clients.clear();
  expect_back_to_idle(server, idle);
  expect_clean_exit(server, 5s);
}

// With --max-connections 100 and 500 clients at once: exactly 100 are served, the rest wait in
// the kernel's queue; as the served ones leave, the next 100 are served, and so on.
TEST_P(Scale, ServesAtMostMaxConnectionsAtOnce) {
  constexpr int kConnections = 500;
  constexpr int kLimit = 100;
  std::vector<std::string> args = {"--max-connections", std::to_string(kLimit), "--timeout-ms", "20000"};
  if (has_workers()) args.insert(args.end(), {"--workers", "4"});  // the limit is the server's, not each worker's
  ServerProcess server = start(args);
  std::vector<Client> clients;
  clients.reserve(kConnections);
  for (int i = 0; i < kConnections; ++i) clients.emplace_back(server.port());
  for (Client& client : clients) ASSERT_TRUE(client.send(kGet));

  std::vector<bool> answered(kConnections, false);
  int total = 0;
  for (int round = 0; round < kConnections / kLimit; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::vector<int> this_round;
    auto collect = [&] {
      for (int i = 0; i < kConnections; ++i) {
        if (answered[i]) continue;
        std::optional<Response> response = clients[i].read_response(0ms);
        if (!response) continue;
        EXPECT_EQ(response->body, kHelloWorld);
        answered[i] = true;
        this_round.push_back(i);
      }
      return static_cast<int>(this_round.size()) >= kLimit;
    };
    ASSERT_TRUE(eventually(collect)) << this_round.size() << " answered";
    std::this_thread::sleep_for(200ms);  // time for a 101st, if the bound did not hold
    collect();
    EXPECT_EQ(static_cast<int>(this_round.size()), kLimit);
    if (has_thread_per_connection()) {
      EXPECT_LE(thread_count(server.pid()), kLimit + 3);  // + main, a finishing thread, ThreadSanitizer's
    }
    total += static_cast<int>(this_round.size());
    for (int i : this_round) clients[i].close();  // room for the next ones
  }
  EXPECT_EQ(total, kConnections);
  clients.clear();
  expect_clean_exit(server);
}

TEST_P(Scale, DropsAThousandIdleConnectionsAtTheTimeout) {
  constexpr int kConnections = 1000;
  // Longer than starting 1000 threads takes, in main_async under ThreadSanitizer.
  const int timeout_ms = kThreadSanitizer && has_thread_per_connection() ? 5000 : 1000;
  ServerProcess server = start({"--timeout-ms", std::to_string(timeout_ms)});
  const IdleState idle = idle_state_after_one_request(server, GetParam());
  const auto opened_from = Clock::now();
  std::vector<Client> clients;
  clients.reserve(kConnections);
  for (int i = 0; i < kConnections; ++i) clients.emplace_back(server.port());
  ASSERT_TRUE(eventually([&] { return holds_connections(server, idle, kConnections, GetParam()); }, 10s))
      << open_descriptors(server.pid()) << " descriptors, " << thread_count(server.pid())
      << " threads: the connections are not all held at once";
  const long long open_after = millis(Clock::now() - opened_from);

  int closed_early = 0, closed_silently = 0;
  for (Client& client : clients) closed_early += client.is_closed_by_peer(0ms);
  EXPECT_TRUE(open_after > timeout_ms * 7 / 10 || closed_early == 0) << closed_early << " closed before the timeout";
  for (Client& client : clients) {
    closed_silently += client.is_closed_by_peer(Millis(timeout_ms) + kPatience) && client.unread().empty();
  }
  const long long all_closed_after = millis(Clock::now() - opened_from);
  EXPECT_EQ(closed_silently, kConnections);
  EXPECT_LT(all_closed_after, open_after + timeout_ms + 2500) << "idle connections outlived the timeout";
  clients.clear();
  expect_back_to_idle(server, idle);
  expect_still_serving(server);
  expect_clean_exit(server);
}

// ---- Shutdown under load ----

class ShutdownUnderLoad : public ServerTest {};
RUN_AGAINST_CONCURRENT_SERVERS(ShutdownUnderLoad);

// One request as a load client saw it.
struct Sent {
  Clock::time_point sent_at;  // when send() had handed over the last byte
  enum Outcome { Answered, ClosedUnanswered, Truncated, Wrong } outcome;
};

// Like wrk: `kClients` keep-alive connections, each sending GET after GET, one in flight. Then
// SIGTERM. Every request sent before the signal must be answered, whole; a request sent after
// it may be answered or see the connection close, but a response is never cut short.
//
// The signal waits until every connection has been answered once, that is, accepted: a
// connection still in the kernel's accept queue at shutdown is reset, its request unread (see
// the README). Under ThreadSanitizer, where each thread start is slow, the last of the 32
// connections were at first still queued 300 ms into the load, and the test failed 3 times in 20.
TEST_P(ShutdownUnderLoad, AnswersEveryRequestSentBeforeSigtermAndExitsWithinASecond) {
  constexpr int kClients = 32;
  ServerProcess server = start();
  std::vector<std::vector<Sent>> logs(kClients);
  std::atomic<long> answered{0};
  std::atomic<int> connections_answered{0};  // connections with at least one answer
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      Client client(server.port());
      while (!stop) {
        if (!client.send(kGet)) break;  // the server closed; nothing more was sent
        Sent sent{Clock::now(), Sent::Answered};
        const std::optional<Response> response = client.read_response(kPatience);
        if (response) {
          sent.outcome = is_hello_world(response) ? Sent::Answered : Sent::Wrong;
          if (++answered, logs[i].empty()) ++connections_answered;
        } else {
          sent.outcome = client.unread().empty() ? Sent::ClosedUnanswered : Sent::Truncated;
        }
        logs[i].push_back(sent);
        if (!response || response->header("Connection") == "close") break;
      }
    });
  }
  std::this_thread::sleep_for(300ms);
  const bool loaded = eventually([&] { return answered >= 2000 && connections_answered == kClients; }, 20s);
  const auto signalled_at = Clock::now();
  server.signal(SIGTERM);
  const std::optional<int> status = server.wait_exit(1s);
  const auto exited_after = Clock::now() - signalled_at;
  stop = true;
  for (std::thread& thread : threads) thread.join();

  EXPECT_TRUE(loaded) << "the load did not get going: " << answered << " answers, on " << connections_answered
                      << " of " << kClients << " connections";
  EXPECT_EQ(status, 0) << "no exit with status 0 within 1 s of SIGTERM (took " << millis(exited_after) << " ms)";
  long before = 0, unanswered_before = 0, truncated = 0, wrong = 0;
  for (const auto& log : logs) {
    for (const Sent& sent : log) {
      const bool sent_before = sent.sent_at < signalled_at;
      before += sent_before;
      unanswered_before += sent_before && sent.outcome != Sent::Answered;
      truncated += sent.outcome == Sent::Truncated;
      wrong += sent.outcome == Sent::Wrong;
    }
  }
  EXPECT_EQ(unanswered_before, 0) << "of " << before << " requests sent before SIGTERM";
  EXPECT_EQ(truncated, 0);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(server.stderr_text().find("Sanitizer"), std::string::npos) << server.stderr_text();
}

// main serves one connection at a time; the rest wait in the kernel's queue. On SIGTERM it
// finishes the one it has, and the queued ones are refused (the kernel, not the server, had
// their bytes). No client may get half a response.
TEST(ShutdownUnderLoad, MainFinishesTheRequestItHasAndCutsNoResponseShort) {
  constexpr int kClients = 8;
  ServerProcess server("main");
  std::atomic<long> answered{0}, truncated{0}, wrong{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&] {
      while (!stop) {
        std::optional<Client> client;
        try {
          client.emplace(server.port());
        } catch (const std::system_error&) {
          break;  // refused: the server has stopped listening
        }
        if (!client->send(kGetThenClose)) continue;
        const std::optional<Response> response = client->read_response(kPatience);
        if (response) {
          ++(is_hello_world(response) ? answered : wrong);
        } else if (!client->unread().empty()) {
          ++truncated;
        }
      }
    });
  }
  std::this_thread::sleep_for(300ms);
  const bool loaded = eventually([&] { return answered >= 300; }, 20s);
  server.signal(SIGTERM);
  const std::optional<int> status = server.wait_exit(1s);
  stop = true;
  for (std::thread& thread : threads) thread.join();
  EXPECT_TRUE(loaded);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(truncated, 0);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(server.stderr_text().find("Sanitizer"), std::string::npos) << server.stderr_text();
}

// ---- CleanExit: what the sanitizers see after load ----

// Churned connections and kept-alive ones, then SIGTERM: exit status 0. Under `make check`
// the server is built with AddressSanitizer, whose LeakSanitizer checks for leaks at exit,
// or with ThreadSanitizer, which has watched every thread of the load for data races.
class CleanExit : public ServerTest {};
RUN_AGAINST_ALL_SERVERS(CleanExit);

TEST_P(CleanExit, ExitsWithStatusZeroAndNoSanitizerReportAfterLoad) {
  ServerProcess server = start();
  constexpr int kThreads = 8;
  constexpr int kRequestsEach = 100;
  std::atomic<int> answered{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::optional<Client> kept;
      for (int i = 0; i < kRequestsEach; ++i) {
        const bool churn = t % 2 == 0 || !is_concurrent();  // half the threads keep their connection
        if (churn || !kept) kept.emplace(server.port());
        if (!kept->send(churn ? kGetThenClose : kGet)) continue;
        answered += is_hello_world(kept->read_response(kPatience));
        if (churn) kept.reset();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(answered, kThreads * kRequestsEach);
  expect_clean_exit(server);
}


// A "Name:   1234 kB" line of /proc/PID/status, in KiB (-1 if there is none).
long status_field_kib(pid_t pid, std::string_view name) {
  std::ifstream status(test_support::proc_path(pid, "status"));
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with(name)) return std::stol(line.substr(name.size()));
  }
  return -1;
}
// ---- Slow bodies: a request must end within a bound that a trickle cannot stretch ----

TEST_P(SlowClients, CutsOffABodyTrickledForLongerThanItsSizeAllows) {
  // --timeout-ms 500 and a 100-byte body: the body must be in within 0.5 s (plus 1.5 ms for
  // its size). One byte every 100 ms would take 10 s; main, and the concurrent servers at
  // --max-connections 1, would serve nobody else meanwhile.
  std::vector<std::string> args = {"--timeout-ms", "500"};
  if (is_concurrent()) args.insert(args.end(), {"--max-connections", "1"});
  ServerProcess server = start(args);
  Client trickler(server.port());
  ASSERT_TRUE(trickler.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"));
  std::atomic<bool> stop{false};
  std::thread trickle([&] {
    for (int i = 0; i < 60 && !stop; ++i) {  // 6 s at most
      if (!trickler.send("x", 1s)) break;
      std::this_thread::sleep_for(100ms);
    }
  });
  const auto started = Clock::now();
  Client other(server.port());
  ASSERT_TRUE(other.send(kGetThenClose));
  const std::optional<Response> answer = other.read_response(8s);
  const long long waited = millis(Clock::now() - started);
  stop = true;
  trickle.join();
  EXPECT_TRUE(is_hello_world(answer));
  EXPECT_LT(waited, 2500) << "the trickling client held the server's only slot";
  const std::optional<Response> cut_off = trickler.read_response(kPatience);
  ASSERT_TRUE(cut_off) << "received " << trickler.unread();
  EXPECT_EQ(cut_off->status, 408);
  expect_clean_exit(server);
}

// ---- Memory: what request bodies may hold ----

// The "VmRSS:" line of /proc/PID/status, in KiB.
long resident_kib(pid_t pid) { return status_field_kib(pid, "VmRSS:"); }

class Memory : public ServerTest {};
RUN_AGAINST_CONCURRENT_SERVERS(Memory);

TEST_P(Memory, GivesALargeBodysMemoryBackAfterTheResponse) {
  // ThreadSanitizer's shadow of the unmapped bodies stays resident (54 MiB here): RSS would
  // measure the sanitizer.
  if (kThreadSanitizer) GTEST_SKIP() << "RSS under ThreadSanitizer counts its shadow memory";
  constexpr int kConnections = 40;
  ServerProcess server = start();
  const IdleState idle = idle_state_after_one_request(server, GetParam());
  const long before = resident_kib(server.pid());
  const std::string body(1 << 20, 'm');
  std::vector<Client> clients;
  for (int i = 0; i < kConnections; ++i) {
    clients.emplace_back(server.port());
    const auto [sent, echo] = send_while_reading(clients.back(), post_request(body), 20s);
    ASSERT_TRUE(sent && echo && echo->body.size() == body.size()) << "upload " << i;
  }
  // Every connection stays open and idle, after one 1 MiB upload each.
  const long grown = resident_kib(server.pid()) - before;
  EXPECT_LT(grown, 16 * 1024) << kConnections << " idle connections hold " << grown / 1024
                              << " MiB after one 1 MiB upload each";
  clients.clear();
  expect_back_to_idle(server, idle);
  expect_clean_exit(server);
}

TEST_P(Memory, Answers503WhenBodiesTogetherWouldPassBodyMemory) {
  // Room for two 1 MiB bodies at once. Two uploads are half sent and wait; a third is refused
  // at once with 503, before its body (and before a 100 Continue), and the room comes back.
  ServerProcess server = start({"--body-memory", "2097152", "--max-body", "1048576"});
  const std::string half(512 * 1024, 'h');
  const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n";
  Client first(server.port()), second(server.port());
  ASSERT_TRUE(first.send(head + half));
  ASSERT_TRUE(second.send(head + half));
  std::this_thread::sleep_for(100ms);  // both bodies are being read
  Client third(server.port());
  ASSERT_TRUE(third.send("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1048576\r\n\r\n"));
  const std::optional<Response> refused = third.read_response(kPatience);
  ASSERT_TRUE(refused) << "received " << third.unread();
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(refused->header("Retry-After"), "1");
  for (Client* client : {&first, &second}) {
    const auto [sent, echo] = send_while_reading(*client, half, 20s);
    ASSERT_TRUE(sent && echo) << "received " << client->unread().size() << " bytes";
    EXPECT_EQ(echo->status, 200);
    EXPECT_EQ(echo->body.size(), 1048576u);
  }
  Client fourth(server.port());  // the two bodies gave their room back
  const auto [sent, echo] = send_while_reading(fourth, head + half + half, 20s);
  ASSERT_TRUE(sent && echo);
  EXPECT_EQ(echo->status, 200);
  expect_clean_exit(server);
}

// RLIMIT_AS, the address space a process may map, set on a running server from outside. The
// sanitizers map terabytes of shadow memory, so these tests run in the plain build only.
constexpr bool kSanitizerMapsShadowMemory =
    test_support::kBuiltWithAddressSanitizer || test_support::kBuiltWithThreadSanitizer;

bool limit_address_space(pid_t pid, rlim_t bytes) {
  const rlimit limit{bytes, RLIM_INFINITY};
  return ::prlimit(pid, RLIMIT_AS, &limit, nullptr) == 0;
}

long mapped_kib(pid_t pid) { return status_field_kib(pid, "VmSize:"); }

TEST_P(Memory, Answers503WhenTheSystemHasNoMemoryForABody) {
  if (kSanitizerMapsShadowMemory) GTEST_SKIP() << "RLIMIT_AS and sanitizer shadow memory do not mix";
  // Only the system's limit stops this body: --body-memory and --max-body are far above it.
  ServerProcess server = start({"--max-body", "1073741824", "--body-memory", "1099511627776"});
  const IdleState idle = idle_state_after_one_request(server, GetParam());
  ASSERT_TRUE(limit_address_space(server.pid(), static_cast<rlim_t>(mapped_kib(server.pid()) + 64 * 1024) * 1024));
  Client client(server.port());
  const std::string body(256 << 20, 'z');  // its mapping must grow past the 64 MiB the limit leaves
  const std::optional<Response> response = send_while_reading(client, post_request(body), 20s).response;
  ASSERT_TRUE(response) << "no response; the server " << (server.wait_exit(0ms) ? "died" : "is alive");
  EXPECT_EQ(response->status, 503);
  ASSERT_TRUE(limit_address_space(server.pid(), RLIM_INFINITY));
  expect_back_to_idle(server, idle);
  expect_still_serving(server);
  expect_clean_exit(server);
}

// A thread per connection is main_async's design: main_epoll starts none, so this is main_async's alone.
TEST(Memory, MainAsyncAnswers503WhenNoThreadCanBeStarted) {
  if (kSanitizerMapsShadowMemory) GTEST_SKIP() << "RLIMIT_AS and sanitizer shadow memory do not mix";
  ServerProcess server("main_async");
  // No request yet: no thread has ended, so no cached stack can be reused, and a new thread
  // needs a new 256 KiB mapping, which the limit forbids.
  ASSERT_TRUE(limit_address_space(server.pid(), static_cast<rlim_t>(mapped_kib(server.pid()) + 64) * 1024));
  Client refused(server.port());
  const std::optional<Response> response = refused.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << refused.unread() << (refused.peer_closed() ? ", then EOF" : "");
  EXPECT_EQ(response->status, 503);
  EXPECT_EQ(response->header("Retry-After"), "1");
  // The line is written before the 503, but read from the pipe by another thread: wait for it.
  const auto said = [&server] { return server.stderr_text().find("cannot start a thread") != std::string::npos; };
  for (auto give_up = std::chrono::steady_clock::now() + kPatience; !said() && std::chrono::steady_clock::now() < give_up;) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(said()) << server.stderr_text();
  ASSERT_TRUE(limit_address_space(server.pid(), RLIM_INFINITY));
  std::this_thread::sleep_for(150ms);  // the accept loop's pause after a failure
  expect_still_serving(server);
  expect_clean_exit(server);
}

// ---- Room in the read buffer (the concurrent servers: pipelined requests, --buffer-size) ----

class Room : public ServerTest {};
RUN_AGAINST_CONCURRENT_SERVERS(Room);

TEST_P(Room, ReadsABodyAfterAPipelinedHeadInLargePieces) {
  // A GET of 4047 bytes, then a POST head of 48: it ends one byte before the end of the
  // 4096-byte buffer. Pinned there, the head would leave the body one byte per recv().
  const std::string post_head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4194304\r\n\r\n";
  std::string get = "GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n";
  get.insert(get.size() - 4, buffer_size() - 1 - post_head.size() - get.size(), 'a');
  ServerProcess server = start({"--max-body", "8388608"});
  Client client(server.port());
  ASSERT_TRUE(client.send(get + post_head));
  ASSERT_TRUE(is_hello_world(client.read_response(kPatience)));
  const long ticks_before = cpu_ticks(server.pid());
  const std::string body(4 << 20, 'p');
  const auto [sent, echo] = send_while_reading(client, body, 30s);
  ASSERT_TRUE(sent && echo) << "received " << client.unread().size() << " bytes";
  EXPECT_EQ(echo->body.size(), body.size());
  const long ticks = cpu_ticks(server.pid()) - ticks_before;
  EXPECT_LT(ticks, 100) << "4 MiB took " << ticks << " ticks of CPU: read in tiny pieces?";
  expect_clean_exit(server);
}

TEST_P(Room, ScansALongHeadOnceNotAfterEveryRead) {
  // A 16 MiB buffer and a 12 MiB field, in 8 KiB pieces: scanning the head again from its
  // start after every read would be 1 500 scans of megabytes (2 to 3 s of CPU here).
  // --timeout-ms 60000: what counts is CPU time, and on a busy machine (or under a sanitizer)
  // the pieces may take longer than the default 5 s to arrive, which would end in a 408.
  if (kThreadSanitizer) GTEST_SKIP() << "ThreadSanitizer makes the one scan itself cost as much";
  ServerProcess server = start({"--buffer-size", "16777216", "--timeout-ms", "60000"});
  Client client(server.port());
  const long ticks_before = cpu_ticks(server.pid());
  ASSERT_TRUE(client.send("GET / HTTP/1.1\r\nHost: a\r\nX-Long: "));
  const std::string piece(8192, 'l');
  for (int i = 0; i < 1536; ++i) {
    ASSERT_TRUE(client.send(piece)) << i;
    std::this_thread::sleep_for(1ms);  // so that the server reads 1 500 times
  }
  ASSERT_TRUE(client.send("\r\nConnection: close\r\n\r\n"));
  EXPECT_TRUE(is_hello_world(client.read_response(20s)));
  const long ticks = cpu_ticks(server.pid()) - ticks_before;
  EXPECT_LT(ticks, 60) << "a 12 MiB head took " << ticks << " ticks of CPU";
  expect_clean_exit(server);
}

}  // namespace
