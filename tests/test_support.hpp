// test_support.hpp: start a server binary and talk raw HTTP/1.1 to it, for the tests.
//
//   test_support::ServerProcess server("main_async", {"--timeout-ms", "300"});   // waits until it listens
//   test_support::Client client(server.port());
//   client.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
//   std::optional<test_support::Response> response = client.read_response(std::chrono::seconds(3));
//
// Also here, so that each is defined once: the requests the suites send (kGet, post_request), the
// reply they expect (is_hello_world), and what /proc says of a process (open_descriptors, ...).
//
// Header-only, Linux. Every wait has a deadline, so a broken server fails a test instead of hanging
// it: reads and writes poll() with a timeout, and a ServerProcess that goes out of scope SIGKILLs and
// reaps its child. Every descriptor is owned by an Fd and opened close-on-exec, so one test's
// sockets and pipes neither leak into the next test nor into a server it starts.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace test_support {

// Which sanitizer the tests, and so the servers they start, are built with (g++ says so with a
// macro, clang with __has_feature).
#if defined(__has_feature)
#define TEST_SUPPORT_HAS_FEATURE(x) __has_feature(x)
#else
#define TEST_SUPPORT_HAS_FEATURE(x) 0
#endif
#if defined(__SANITIZE_THREAD__) || TEST_SUPPORT_HAS_FEATURE(thread_sanitizer)
inline constexpr bool kBuiltWithThreadSanitizer = true;
#else
inline constexpr bool kBuiltWithThreadSanitizer = false;
#endif
#if defined(__SANITIZE_ADDRESS__) || TEST_SUPPORT_HAS_FEATURE(address_sanitizer)
inline constexpr bool kBuiltWithAddressSanitizer = true;
#else
inline constexpr bool kBuiltWithAddressSanitizer = false;
#endif

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

// ---- descriptors and deadlines ----

// Owns one file descriptor and closes it exactly once.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Milliseconds left until `deadline`, rounded up so that poll() does not spin; 0 once it has passed.
inline int millis_until(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<Millis>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : static_cast<int>(left);
}

// A duration in whole milliseconds, for comparisons and failure messages.
inline long long millis(Clock::duration duration) { return std::chrono::duration_cast<Millis>(duration).count(); }

// Waits until `fd` reports one of `events` (or an error or hang-up); false if the deadline came first.
inline bool poll_until(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd entry{fd, events, 0};
    const int ready = ::poll(&entry, 1, millis_until(deadline));
    if (ready > 0) return true;
    if (ready == 0) return false;
    if (errno != EINTR) return true;  // let the read or write that follows report the error
  }
}

// ---- HTTP responses ----

// Orders header names without regard to case, as HTTP compares them.
struct CaseInsensitiveLess {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](unsigned char x, unsigned char y) {
      return std::tolower(x) < std::tolower(y);
    });
  }
};

inline bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && !CaseInsensitiveLess{}(a, b) && !CaseInsensitiveLess{}(b, a);
}

struct Response {
  std::string version;  // "HTTP/1.1"
  int status = 0;
  std::string reason;
  std::multimap<std::string, std::string, CaseInsensitiveLess> headers;
  std::string body;

  // The value of the first field called `name` (in any case), or "" if there is none.
  std::string header(std::string_view name) const {
    const auto found = headers.find(name);
    return found == headers.end() ? std::string() : found->second;
  }
  bool has_header(std::string_view name) const { return headers.find(name) != headers.end(); }
  std::size_t header_count(std::string_view name) const { return headers.count(name); }
};

enum class ParseStatus { complete, incomplete, malformed };

struct ParsedResponse {
  ParseStatus status = ParseStatus::incomplete;
  Response response;
  std::size_t size = 0;  // bytes of `bytes` the response took, when complete
};

// Parses the response at the front of `bytes`. `head_request`: it answers a HEAD, so it has no body.
// `peer_closed`: no more bytes will come, so a response without Content-Length ends with `bytes`.
// Chunked responses are not decoded (the servers under test never send them): they count as malformed.
inline ParsedResponse parse_response(std::string_view bytes, bool head_request, bool peer_closed) {
  ParsedResponse parsed;
  const std::size_t head_end = bytes.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return parsed;
  const std::string_view head = bytes.substr(0, head_end);
  const std::size_t body_start = head_end + 4;
  parsed.status = ParseStatus::malformed;
  Response& response = parsed.response;

  // Status line: HTTP/1.1 200 OK
  std::size_t line_end = head.find("\r\n");
  const std::string_view status_line = head.substr(0, line_end);
  const std::size_t space = status_line.find(' ');
  if (space == std::string_view::npos || !status_line.starts_with("HTTP/")) return parsed;
  response.version = std::string(status_line.substr(0, space));
  const std::string_view code_and_reason = status_line.substr(space + 1);
  if (code_and_reason.size() < 3 || (code_and_reason.size() > 3 && code_and_reason[3] != ' ')) return parsed;
  const auto code = std::from_chars(code_and_reason.data(), code_and_reason.data() + 3, response.status);
  if (code.ec != std::errc() || code.ptr != code_and_reason.data() + 3) return parsed;
  if (code_and_reason.size() > 4) response.reason = std::string(code_and_reason.substr(4));

  // Header fields: Name: value
  while (line_end != std::string_view::npos) {
    const std::size_t line_start = line_end + 2;
    line_end = head.find("\r\n", line_start);
    const std::string_view line = head.substr(line_start, line_end - line_start);
    const std::size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return parsed;
    const std::string_view name = line.substr(0, colon);
    if (name.find_first_of(" \t") != std::string_view::npos) return parsed;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    response.headers.emplace(std::string(name), std::string(value));
  }

  // Body
  const bool has_no_body =
      head_request || response.status / 100 == 1 || response.status == 204 || response.status == 304;
  std::size_t body_size = 0;
  if (has_no_body) {
    body_size = 0;
  } else if (response.has_header("Transfer-Encoding")) {
    return parsed;
  } else if (response.has_header("Content-Length")) {
    const std::string length = response.header("Content-Length");
    const auto result = std::from_chars(length.data(), length.data() + length.size(), body_size);
    if (result.ec != std::errc() || result.ptr != length.data() + length.size()) return parsed;
  } else if (peer_closed) {
    body_size = bytes.size() - body_start;
  } else {
    parsed.status = ParseStatus::incomplete;
    return parsed;
  }
  if (bytes.size() - body_start < body_size) {
    parsed.status = ParseStatus::incomplete;
    return parsed;
  }
  response.body = std::string(bytes.substr(body_start, body_size));
  parsed.size = body_start + body_size;
  parsed.status = ParseStatus::complete;
  return parsed;
}

// ---- what the tests send, and the reply they expect ----

constexpr std::string_view kGet = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
constexpr std::string_view kGetThenClose = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
constexpr std::string_view kHelloWorld = "Hello World!";  // what both servers answer a GET with

// A chunked POST using what chunked coding allows: extensions, upper- and lower-case hex, a trailer.
constexpr std::string_view kChunkedPost =
    "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5;name=value\r\nHello\r\n"
    "9;flag\r\n, chunked\r\n"
    "1A\r\n world, in three chunks...\r\n"
    "0\r\nX-Trailer: done\r\n\r\n";
constexpr std::string_view kChunkedPostBody = "Hello, chunked world, in three chunks...";

// A POST of `body` with its Content-Length; `extra_headers` are whole lines ("Connection: close\r\n").
inline std::string post_request(std::string_view body, std::string_view extra_headers = "") {
  return "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         std::string(extra_headers) + "\r\n" + std::string(body);
}

inline bool is_hello_world(const std::optional<Response>& response) {
  return response && response->status == 200 && response->body == kHelloWorld;
}

// ---- raw TCP client ----

// One TCP connection to 127.0.0.1:port. Bytes received but not yet returned as a Response wait in
// unread(), so pipelined responses, a 100 Continue and the final response can be read one at a time.
class Client {
 public:
  // Connects at once; throws std::system_error if nothing listens.
  explicit Client(std::uint16_t port) : socket_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (!socket_) throw std::system_error(errno, std::generic_category(), "socket");
    // Each send() leaves as its own segment, so send_slowly really arrives in pieces.
    const int on = 1;
    ::setsockopt(socket_.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int result;
    do {
      result = ::connect(socket_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
    } while (result != 0 && errno == EINTR);
    if (result != 0) {
      throw std::system_error(errno, std::generic_category(), "connect to 127.0.0.1:" + std::to_string(port));
    }
  }

  // Sends every byte; false if the peer is gone or `timeout` passes first (a server that stops reading).
  // MSG_NOSIGNAL: writing to a closed connection fails with EPIPE instead of killing the test with SIGPIPE.
  bool send(std::string_view bytes, Millis timeout = std::chrono::seconds(10)) {
    const auto deadline = Clock::now() + timeout;
    while (!bytes.empty()) {
      const ssize_t sent = ::send(socket_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent > 0) {
        bytes.remove_prefix(static_cast<std::size_t>(sent));
      } else if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!poll_until(socket_.get(), POLLOUT, deadline)) return false;
      } else if (sent < 0 && errno != EINTR) {
        return false;
      }
    }
    return true;
  }

  // Sends `bytes` in pieces of `piece_size` bytes. The pause lets each piece reach the server as its own
  // read(), which is what this exercises; it orders nothing, so it is no synchronisation.
  bool send_slowly(std::string_view bytes, std::size_t piece_size, Millis pause = Millis(1)) {
    while (!bytes.empty()) {
      const std::size_t size = std::min(piece_size, bytes.size());
      if (!send(bytes.substr(0, size))) return false;
      bytes.remove_prefix(size);
      if (!bytes.empty()) std::this_thread::sleep_for(pause);
    }
    return true;
  }

  // The next complete response, or nullopt if none arrives within `timeout`, the peer closes first, or
  // what arrives is not HTTP. Whatever arrived stays in unread() then. `head_request`: it answers a HEAD.
  std::optional<Response> read_response(Millis timeout, bool head_request = false) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      ParsedResponse parsed = parse_response(unread_, head_request, peer_closed_);
      if (parsed.status == ParseStatus::complete) {
        unread_.erase(0, parsed.size);
        return std::move(parsed.response);
      }
      if (parsed.status == ParseStatus::malformed || peer_closed_) return std::nullopt;
      if (receive_some(deadline) == Received::nothing_in_time) return std::nullopt;
    }
  }

  // True once unread() holds at least `count` bytes; false if `timeout` or the peer's close comes first.
  bool wait_for_bytes(std::size_t count, Millis timeout) {
    const auto deadline = Clock::now() + timeout;
    while (unread_.size() < count) {
      if (receive_some(deadline) != Received::data) return false;
    }
    return true;
  }

  // Everything not yet read, up to the peer's close or `timeout` (then peer_closed() says which).
  std::string read_until_close(Millis timeout) {
    const auto deadline = Clock::now() + timeout;
    while (receive_some(deadline) == Received::data) {
    }
    return std::exchange(unread_, std::string());
  }

  // True if the peer closes (EOF, or a reset) within `timeout`. Bytes arriving meanwhile go to unread().
  bool is_closed_by_peer(Millis timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      switch (receive_some(deadline)) {
        case Received::data: continue;
        case Received::peer_closed: return true;
        case Received::nothing_in_time: return false;
      }
    }
  }

  void shutdown_write() { ::shutdown(socket_.get(), SHUT_WR); }
  void close() { socket_.reset(); }
  // Closes with a reset (RST) instead of FIN, as a client that crashes or is killed does:
  // SO_LINGER with a zero timeout makes close() abort the connection.
  void close_with_reset() {
    const linger abort_on_close{1, 0};
    ::setsockopt(socket_.get(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
    socket_.reset();
  }

  const std::string& unread() const { return unread_; }
  bool peer_closed() const { return peer_closed_; }
  // The peer closed with a reset (RST) rather than an orderly EOF: on a real network a reset can
  // destroy a response that has not been read yet.
  bool peer_reset() const { return peer_reset_; }

 private:
  enum class Received { data, peer_closed, nothing_in_time };

  // One recv() into unread(), waiting at most until `deadline` for something to arrive.
  Received receive_some(Clock::time_point deadline) {
    if (peer_closed_ || !socket_) return Received::peer_closed;
    for (;;) {
      if (!poll_until(socket_.get(), POLLIN, deadline)) return Received::nothing_in_time;
      std::array<char, 65536> buffer;
      const ssize_t received = ::recv(socket_.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
      if (received > 0) {
        unread_.append(buffer.data(), static_cast<std::size_t>(received));
        return Received::data;
      }
      if (received < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      peer_closed_ = true;  // EOF, or a reset: the server closed without reading all we sent
      peer_reset_ = received < 0 && errno == ECONNRESET;
      return Received::peer_closed;
    }
  }

  Fd socket_;
  std::string unread_;
  bool peer_closed_ = false;
  bool peer_reset_ = false;
};

// Sends `bytes` on another thread while this one reads the response: for a request larger than
// the socket buffers hold, since the servers echo a body only once they have read it all, and
// may answer an error before. `sent` says whether every byte went out.
struct SentAndAnswered {
  bool sent = false;
  std::optional<Response> response;
};

inline SentAndAnswered send_while_reading(Client& client, std::string_view bytes, Millis timeout) {
  SentAndAnswered result;
  std::thread sender([&] { result.sent = client.send(bytes, timeout); });
  result.response = client.read_response(timeout);
  sender.join();
  return result;
}

// ---- server process ----

// Where the server binaries are: $SERVER_DIR (the Makefile sets an absolute path), else the current dir.
inline std::string server_path(std::string_view binary) {
  const char* dir = std::getenv("SERVER_DIR");
  return std::string(dir != nullptr ? dir : ".") + "/" + std::string(binary);
}

// Runs SERVER_DIR/<binary> --port 0 <args...> as a child with stdout and stderr captured through pipes.
// A thread collects both pipes all the time, so a server that logs a lot never blocks on a full pipe.
class ServerProcess {
 public:
  enum class Readiness {
    listening_line,  // the constructor returns once stdout says "Listening on http://HOST:PORT"
    none,            // the constructor returns at once (for runs that are expected to exit)
  };

  enum class Port {
    any,      // "--port 0" goes first: the kernel picks a free port, which port() reports
    in_args,  // the arguments name it (the tutorial's first server takes a bare port number)
  };

  // Throws std::runtime_error (with what the child printed) if the Listening line is not printed
  // within `startup_timeout`.
  explicit ServerProcess(std::string_view binary, std::vector<std::string> args = {},
                         Readiness readiness = Readiness::listening_line,
                         Millis startup_timeout = std::chrono::seconds(5), Port port = Port::any)
      : binary_(binary) {
    if (port == Port::any) args.insert(args.begin(), {"--port", "0"});
    spawn(server_path(binary), args);
    collector_ = std::thread([this] { collect_output(); });
    if (readiness == Readiness::listening_line && !wait_for_listening_line(startup_timeout)) {
      const std::string out = stdout_text();
      kill_and_reap();
      stop_collector();
      throw std::runtime_error(binary_ + " did not print \"Listening on http://127.0.0.1:PORT\"; stdout: [" + out +
                               "] stderr: [" + stderr_text() + "]");
    }
  }

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  ~ServerProcess() {
    kill_and_reap();
    stop_collector();
  }

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  void signal(int signal_number) const {
    if (exit_status_) return;
    if (kBuiltWithThreadSanitizer && signal_number != SIGKILL) wait_until_asleep();
    ::kill(pid_, signal_number);
  }

  // ThreadSanitizer holds back a signal that reaches a thread outside a blocking call until
  // the thread next returns from one, so a server that then waits in poll() with no timeout
  // never runs its handler (seen: about 1 run in 8 of the shutdown tests). The tests are of
  // the server, not of that delivery: under the sanitizer they signal once the server's main
  // thread is asleep in the kernel, where the sanitizer runs a handler at once.
  void wait_until_asleep() const {
    const auto deadline = Clock::now() + std::chrono::seconds(2);
    while (Clock::now() < deadline) {
      std::ifstream wchan("/proc/" + std::to_string(pid_) + "/wchan");
      std::string where;
      wchan >> where;
      if (!where.empty() && where != "0") return;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  // The exit status once the child has exited (128 + N if signal N killed it), or nullopt if it is
  // still running after `timeout`. Once it returns a status, stdout_text() and stderr_text() are complete.
  std::optional<int> wait_exit(Millis timeout) {
    if (exit_status_) return exit_status_;
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      int status = 0;
      const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
      if (reaped == pid_) {
        exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (reaped < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "waitpid");
      if (Clock::now() >= deadline) return std::nullopt;
      if (exited_) {
        poll_until(exited_.get(), POLLIN, deadline);  // a pidfd becomes readable when the child exits
      } else {
        std::this_thread::sleep_for(Millis(5));  // kernels before 5.3 have no pidfd: look again soon
      }
    }
    wait_for_output_closed(std::chrono::seconds(1));
    return exit_status_;
  }

  // SIGTERM, then SIGKILL if it is still running after `grace`; returns the exit status. Afterwards
  // stdout_text() and stderr_text() hold everything the child printed.
  int stop(Millis grace = std::chrono::seconds(1)) {
    signal(SIGTERM);
    if (!wait_exit(grace)) {
      signal(SIGKILL);
      wait_exit(std::chrono::seconds(5));
    }
    return exit_status_.value_or(-1);
  }

  // What the child printed so far (the whole of it after wait_exit or stop); never blocks.
  std::string stdout_text() const {
    const std::lock_guard lock(mutex_);
    return stdout_text_;
  }
  std::string stderr_text() const {
    const std::lock_guard lock(mutex_);
    return stderr_text_;
  }

 private:
  static Fd open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
    return Fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
#else
    (void)pid;
    return Fd();
#endif
  }

  void spawn(const std::string& path, const std::vector<std::string>& args) {
    int out_pipe[2];
    int err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
    Fd out_read(out_pipe[0]), out_write(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
    Fd err_read(err_pipe[0]), err_write(err_pipe[1]);
    wake_collector_ = Fd(::eventfd(0, EFD_CLOEXEC));
    if (!wake_collector_) throw std::system_error(errno, std::generic_category(), "eventfd");

    // Everything the child needs is built before fork: after it, only async-signal-safe calls.
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(path.c_str()));
    for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    static constexpr char kExecFailed[] = "test_support: exec of the server binary failed\n";

    pid_ = ::fork();
    if (pid_ < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid_ == 0) {
      // The server starts with default signal handling, whatever the test process ignores or blocks,
      // and dies with the test process even if that crashes before its destructors run.
      for (int signal_number = 1; signal_number < NSIG; ++signal_number) ::signal(signal_number, SIG_DFL);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      const int null_input = ::open("/dev/null", O_RDONLY);
      if (null_input >= 0) ::dup2(null_input, STDIN_FILENO);
      ::dup2(out_write.get(), STDOUT_FILENO);
      ::dup2(err_write.get(), STDERR_FILENO);
      ::execv(path.c_str(), argv.data());
      [[maybe_unused]] const ssize_t ignored = ::write(STDERR_FILENO, kExecFailed, sizeof kExecFailed - 1);
      ::_exit(127);
    }
    exited_ = open_pidfd(pid_);
    stdout_ = std::move(out_read);
    stderr_ = std::move(err_read);
  }

  // Runs on collector_: appends both pipes to the texts until both reach EOF (or we are told to stop).
  void collect_output() {
    std::array<pollfd, 3> fds{{{stdout_.get(), POLLIN, 0}, {stderr_.get(), POLLIN, 0},
                               {wake_collector_.get(), POLLIN, 0}}};
    std::array<std::string*, 2> texts{&stdout_text_, &stderr_text_};
    int open_pipes = 2;
    while (open_pipes > 0) {
      if (::poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (fds[2].revents != 0) break;
      for (std::size_t i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        std::array<char, 4096> buffer;
        const ssize_t count = ::read(fds[i].fd, buffer.data(), buffer.size());
        if (count > 0) {
          const std::lock_guard lock(mutex_);
          texts[i]->append(buffer.data(), static_cast<std::size_t>(count));
          output_changed_.notify_all();
        } else if (count == 0 || errno != EINTR) {
          fds[i].fd = -1;  // poll() skips negative descriptors
          --open_pipes;
        }
      }
    }
    const std::lock_guard lock(mutex_);
    output_closed_ = true;
    output_changed_.notify_all();
  }

  // The readiness signal: stdout's "Listening on http://127.0.0.1:PORT" line, with the real port.
  bool wait_for_listening_line(Millis timeout) {
    std::unique_lock lock(mutex_);
    const auto has_line = [this] {
      const std::size_t start = stdout_text_.find("Listening on http://");
      return output_closed_ || (start != std::string::npos && stdout_text_.find('\n', start) != std::string::npos);
    };
    if (!output_changed_.wait_for(lock, timeout, has_line)) return false;
    const std::size_t start = stdout_text_.find("Listening on http://");
    if (start == std::string::npos) return false;  // the child exited without listening
    const std::string_view line =
        std::string_view(stdout_text_).substr(start, stdout_text_.find('\n', start) - start);
    const std::size_t colon = line.rfind(':');
    const std::string_view digits = line.substr(colon + 1);
    unsigned port = 0;
    const auto parsed = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (parsed.ec != std::errc() || port == 0 || port > 65535) return false;
    port_ = static_cast<std::uint16_t>(port);
    return true;
  }

  void wait_for_output_closed(Millis timeout) {
    std::unique_lock lock(mutex_);
    output_changed_.wait_for(lock, timeout, [this] { return output_closed_; });
  }

  void kill_and_reap() {
    if (pid_ <= 0 || exit_status_) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    exit_status_ = 128 + SIGKILL;
  }

  void stop_collector() {
    if (!collector_.joinable()) return;
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t ignored = ::write(wake_collector_.get(), &one, sizeof one);
    collector_.join();
  }

  std::string binary_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  std::uint16_t port_ = 0;
  Fd exited_;  // pidfd: readable once the child has exited
  Fd stdout_;
  Fd stderr_;
  Fd wake_collector_;

  mutable std::mutex mutex_;
  std::condition_variable output_changed_;
  std::string stdout_text_;
  std::string stderr_text_;
  bool output_closed_ = false;
  std::thread collector_;  // last: it starts after, and stops before, everything above
};

// Runs a binary that is expected to exit (e.g. --help, a bad flag): its exit status (nullopt if it
// still runs after `timeout`, then it is killed), stdout and stderr.
struct ExitResult {
  std::optional<int> status;
  std::string out;
  std::string err;
};

inline ExitResult run_to_exit(std::string_view binary, std::vector<std::string> args,
                              Millis timeout = std::chrono::seconds(2)) {
  ServerProcess process(binary, std::move(args), ServerProcess::Readiness::none);
  ExitResult result;
  result.status = process.wait_exit(timeout);
  result.out = process.stdout_text();
  result.err = process.stderr_text();
  return result;
}

// ---- a process, seen from outside ----

inline std::string proc_path(pid_t pid, std::string_view name) {
  return "/proc/" + std::to_string(pid) + "/" + std::string(name);
}

// Descriptors the process has open: the entries of /proc/PID/fd (-1 if it cannot be read).
inline long open_descriptors(pid_t pid) {
  std::error_code error;
  std::filesystem::directory_iterator entries(proc_path(pid, "fd"), error);
  return error ? -1 : std::distance(entries, std::filesystem::directory_iterator());
}

// The "Threads:" line of /proc/PID/status.
inline long thread_count(pid_t pid) {
  std::ifstream status(proc_path(pid, "status"));
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("Threads:")) return std::stol(line.substr(8));
  }
  return -1;
}

// User plus system CPU time, in clock ticks: fields 14 and 15 of /proc/PID/stat.
inline long cpu_ticks(pid_t pid) {
  std::ifstream stat(proc_path(pid, "stat"));
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));  // the name may hold spaces
  std::string field;
  long utime = 0, stime = 0;
  for (int number = 3; number <= 15 && fields >> field; ++number) {
    if (number == 14) utime = std::stol(field);
    if (number == 15) stime = std::stol(field);
  }
  return utime + stime;
}

}  // namespace test_support
