// load_client.cpp: the load tests/soak.sh puts on a server, on 127.0.0.1 only.
//
//   load_client churn --port N [--connections 100000] [--concurrency 100] [--seconds 600]
//   load_client keepalive --port N [--connections 50] [--seconds 60]
//
// churn:     batches of --concurrency connections opened at once; each sends one GET with
//            "Connection: close", reads the whole response and the server's close, and closes.
//            After every batch it prints "progress CHURNED FAILED", so a sampler can follow.
// keepalive: --connections connections, each sending GET after GET (one in flight), until
//            SIGTERM/SIGINT or --seconds pass. A connection the server closes (or says it will
//            close) is opened again.
// Both stop after --max-failures failed requests, at --seconds, or on SIGTERM/SIGINT.
//
// One thread, non-blocking sockets and poll(): the client stays small next to the server it
// measures. Every wait has a deadline. Exit status 0 if every request was answered with 200.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kChurnRequest = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
constexpr std::string_view kKeepAliveRequest = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
constexpr auto kExchangeTimeout = std::chrono::seconds(10);  // one request, start to finish

volatile std::sig_atomic_t g_stop = 0;

// ---- responses ----

// How many bytes of `bytes` the first response takes: 0 while it is incomplete, -1 if it is
// not a 200 with a Content-Length.
long complete_response_size(std::string_view bytes) {
  const std::size_t head_end = bytes.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return 0;
  if (!bytes.starts_with("HTTP/1.1 200 ")) return -1;
  const std::string_view head = bytes.substr(0, head_end);
  const std::size_t field = head.find("\r\nContent-Length: ");
  if (field == std::string_view::npos) return -1;
  const char* digits = head.data() + field + 18;
  std::size_t length = 0;
  auto [end, ec] = std::from_chars(digits, head.data() + head.size(), length);
  if (ec != std::errc() || (end != head.data() + head.size() && *end != '\r')) return -1;
  const std::size_t total = head_end + 4 + length;
  return bytes.size() >= total ? static_cast<long>(total) : 0;
}

// ---- connections ----

struct Connection {
  enum class Phase { Connecting, Sending, Receiving, Done };
  int fd = -1;
  Phase phase = Phase::Done;
  std::string_view request;
  std::size_t sent = 0;
  std::string received;
  Clock::time_point deadline;
};

bool open_connection(Connection& connection, std::uint16_t port, std::string_view request) {
  connection = Connection();
  connection.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (connection.fd < 0) return false;
  int one = 1;
  ::setsockopt(connection.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(connection.fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 && errno != EINPROGRESS) {
    ::close(connection.fd);
    connection.fd = -1;
    return false;
  }
  connection.phase = Connection::Phase::Connecting;
  connection.request = request;
  connection.deadline = Clock::now() + kExchangeTimeout;
  return true;
}

void close_connection(Connection& connection) {
  if (connection.fd >= 0) ::close(connection.fd);
  connection.fd = -1;
  connection.phase = Connection::Phase::Done;
}

short wanted_events(const Connection& connection) {
  switch (connection.phase) {
    case Connection::Phase::Connecting:
    case Connection::Phase::Sending: return POLLOUT;
    case Connection::Phase::Receiving: return POLLIN;
    case Connection::Phase::Done: return 0;
  }
  return 0;
}

enum class Progress { Waiting, Answered, Closed, Failed };

// Moves one connection on after poll() said it is ready. `until_close`: the response ends with
// the server's close (churn); otherwise it ends with its Content-Length (keep-alive).
Progress advance(Connection& connection, bool until_close) {
  if (connection.phase == Connection::Phase::Connecting) {
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(connection.fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) return Progress::Failed;
    connection.phase = Connection::Phase::Sending;
  }
  if (connection.phase == Connection::Phase::Sending) {
    std::string_view rest = connection.request.substr(connection.sent);
    ssize_t sent = ::send(connection.fd, rest.data(), rest.size(), MSG_NOSIGNAL);
    if (sent < 0) return errno == EAGAIN || errno == EINTR ? Progress::Waiting : Progress::Failed;
    connection.sent += static_cast<std::size_t>(sent);
    if (connection.sent == connection.request.size()) connection.phase = Connection::Phase::Receiving;
    return Progress::Waiting;
  }
  char buffer[4096];
  ssize_t got = ::recv(connection.fd, buffer, sizeof buffer, 0);
  if (got < 0) return errno == EAGAIN || errno == EINTR ? Progress::Waiting : Progress::Failed;
  if (got == 0) {
    const long size = complete_response_size(connection.received);
    if (until_close && size > 0 && static_cast<std::size_t>(size) == connection.received.size()) {
      return Progress::Answered;
    }
    return connection.received.empty() && !until_close ? Progress::Closed : Progress::Failed;
  }
  connection.received.append(buffer, static_cast<std::size_t>(got));
  if (until_close) return complete_response_size(connection.received) < 0 ? Progress::Failed : Progress::Waiting;
  const long size = complete_response_size(connection.received);
  if (size < 0) return Progress::Failed;
  if (size == 0) return Progress::Waiting;
  if (static_cast<std::size_t>(size) != connection.received.size()) return Progress::Failed;  // nothing was pipelined
  return Progress::Answered;
}

// Waits (at most 100 ms) for any connection to be ready and advances those that are. Calls
// `done(connection, progress)` for every connection that answered, closed, failed or timed out.
template <typename Done>
void poll_once(std::vector<Connection>& connections, bool until_close, Done done) {
  std::vector<pollfd> ready;
  std::vector<std::size_t> which;
  for (std::size_t i = 0; i < connections.size(); ++i) {
    if (connections[i].phase == Connection::Phase::Done) continue;
    ready.push_back({connections[i].fd, wanted_events(connections[i]), 0});
    which.push_back(i);
  }
  if (ready.empty()) return;
  if (::poll(ready.data(), ready.size(), 100) < 0 && errno != EINTR) return;
  const auto now = Clock::now();
  for (std::size_t k = 0; k < ready.size(); ++k) {
    Connection& connection = connections[which[k]];
    Progress progress = ready[k].revents != 0 ? advance(connection, until_close) : Progress::Waiting;
    if (progress == Progress::Waiting && now > connection.deadline) progress = Progress::Failed;
    if (progress != Progress::Waiting) done(connection, progress);
  }
}

// ---- the two loads ----

struct Options {
  std::string mode;
  std::uint16_t port = 0;
  long connections = -1;
  long concurrency = 100;
  long seconds = -1;
  long max_failures = 100;
};

int churn(const Options& options) {
  const long total = options.connections < 0 ? 100000 : options.connections;
  long churned = 0, failed = 0;
  const auto started = Clock::now();
  const auto end = started + std::chrono::seconds(options.seconds < 0 ? 600 : options.seconds);
  std::vector<Connection> batch;
  while (churned < total && !g_stop && failed <= options.max_failures && Clock::now() < end) {
    const long size = std::min(options.concurrency, total - churned);
    batch.assign(static_cast<std::size_t>(size), Connection());
    long open = 0;
    for (Connection& connection : batch) {
      if (open_connection(connection, options.port, kChurnRequest)) {
        ++open;
      } else {
        ++failed;
      }
    }
    while (open > 0) {  // bounded: every connection fails at its deadline
      poll_once(batch, /*until_close=*/true, [&](Connection& connection, Progress progress) {
        failed += progress != Progress::Answered;
        close_connection(connection);
        --open;
      });
    }
    churned += size;
    std::printf("progress %ld %ld\n", churned, failed);
    std::fflush(stdout);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  std::printf("churn: %ld connections, %ld failed, %.1f s, %.0f connections/s\n", churned, failed, seconds,
              seconds > 0 ? churned / seconds : 0.0);
  return failed == 0 && churned == total ? 0 : 1;
}

int keep_alive(const Options& options) {
  const long count = options.connections < 0 ? 50 : options.connections;
  const auto end = Clock::now() + std::chrono::seconds(options.seconds < 0 ? 60 : options.seconds);
  long answered = 0, reopened = 0, failed = 0;
  std::vector<Connection> connections(static_cast<std::size_t>(count));
  for (Connection& connection : connections) {
    if (!open_connection(connection, options.port, kKeepAliveRequest)) ++failed;
  }
  while (!g_stop && Clock::now() < end && failed <= options.max_failures) {
    poll_once(connections, /*until_close=*/false, [&](Connection& connection, Progress progress) {
      const bool server_closes = connection.received.find("\r\nConnection: close\r\n") != std::string::npos;
      if (progress == Progress::Answered && !server_closes) {
        ++answered;
        connection.received.clear();  // the next request on the same connection
        connection.sent = 0;
        connection.phase = Connection::Phase::Sending;
        connection.deadline = Clock::now() + kExchangeTimeout;
        return;
      }
      answered += progress == Progress::Answered;
      reopened += progress == Progress::Closed || progress == Progress::Answered;
      failed += progress == Progress::Failed;
      close_connection(connection);
      if (!open_connection(connection, options.port, kKeepAliveRequest)) ++failed;
    });
  }
  for (Connection& connection : connections) close_connection(connection);
  std::printf("keepalive: %ld connections, %ld requests answered, %ld reopened, %ld failed\n", count, answered,
              reopened, failed);
  return failed == 0 ? 0 : 1;
}

// ---- main ----

constexpr std::string_view kUsage =
    "usage: load_client churn --port N [--connections 100000] [--concurrency 100] [--seconds 600]\n"
    "                        [--max-failures 100]\n"
    "       load_client keepalive --port N [--connections 50] [--seconds 60] [--max-failures 100]\n";

std::optional<Options> parse_options(int argc, char** argv) {
  Options options;
  if (argc < 2) return std::nullopt;
  options.mode = argv[1];
  if (options.mode != "churn" && options.mode != "keepalive") return std::nullopt;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string_view flag = argv[i], text = argv[i + 1];
    long value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
    if (flag == "--port" && value > 0 && value < 65536) {
      options.port = static_cast<std::uint16_t>(value);
    } else if (flag == "--connections") {
      options.connections = value;
    } else if (flag == "--concurrency" && value > 0) {
      options.concurrency = value;
    } else if (flag == "--seconds") {
      options.seconds = value;
    } else if (flag == "--max-failures") {
      options.max_failures = value;
    } else {
      return std::nullopt;
    }
  }
  if (argc % 2 != 0 || options.port == 0) return std::nullopt;
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<Options> options = parse_options(argc, argv);
  if (!options) {
    std::fputs(kUsage.data(), stderr);
    return 2;
  }
  struct sigaction action{};
  action.sa_handler = [](int) { g_stop = 1; };
  ::sigemptyset(&action.sa_mask);
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGINT, &action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  return options->mode == "churn" ? churn(*options) : keep_alive(*options);
}
