// main_async.cpp: the thread-group HTTP/1.1 server, the last step of the tutorial.
//
// main.cpp plus exactly the tutorial's lessons, each a small, visible change:
//   a thread group     every connection runs on a thread of its own, spawned into a group that
//                      lets finished threads go as they end and cancels them all on shutdown;
//   a keep-alive loop  a connection carries request after request (HTTP/1.1's default);
//   tuned buffers      4096 bytes instead of 1024;
//   no logging         nothing is printed per request (unless --log-requests).
// Flags bring each earlier step back: --no-keepalive, --buffer-size 1024, --log-requests.
// Many connections at once also need limits across the whole server: one budget for all
// request bodies (--body-memory), a 503 when no thread can be had, and a deadline for the
// responses still under way after a stop (--shutdown-timeout-ms).
//
//   g++ -std=c++20 -O2 -pthread -o main_async main_async.cpp && ./main_async --port 8000
//   curl -i http://127.0.0.1:8000/
//
// It is not a production server: no TLS, no HTTP/2, no files. `diff main.cpp main_async.cpp`
// is the concurrency chapter of the tutorial.

// ANCHOR: includes
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sys/time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
// ANCHOR_END: includes

namespace {

// ---- Configuration ----

// ANCHOR: config
// ANCHOR: buffer_size
constexpr std::size_t kDefaultBufferSize = 4096;  // tuned from 1024: fits typical request heads
constexpr std::size_t kMinBufferSize = 64;        // --buffer-size: at least a short request line
// ANCHOR_END: buffer_size
constexpr int kListenBacklog = 1024;  // connections the kernel queues until accept() takes them
constexpr int kDefaultPort = 8000;
// ANCHOR: idle_timeout
constexpr int kDefaultTimeoutMs = 5000;              // idle keep-alive connections close after this
// ANCHOR_END: idle_timeout
constexpr std::uint64_t kDefaultMaxBody = 1 << 20;   // 1 MiB: the echo keeps the body in memory
constexpr std::uint64_t kMinBodyRate = 64 * 1024;    // bytes/s: a body's deadline grows by 1 s per 64 KiB
constexpr std::size_t kKeptBodyCapacity = 64 * 1024;  // whole pages; beyond it, body memory goes back
// ANCHOR: server_limits
constexpr std::uint64_t kDefaultBodyMemory = 64 << 20;  // 64 MiB for all bodies at once; beyond it, 503
constexpr int kDefaultShutdownTimeoutMs = 3000;      // after a stop, responses under way get this long
constexpr std::size_t kDefaultMaxConnections = 10000;  // back-pressure: beyond this, accept waits
constexpr std::size_t kThreadStackSize = 256 * 1024;  // a connection uses a few KiB of stack; 8 MiB is the default
// ANCHOR_END: server_limits
constexpr auto kLingerTime = std::chrono::milliseconds(500);  // see linger_before_close()

using Clock = std::chrono::steady_clock;  // never jumps, unlike the wall clock: for timeouts
using Deadline = Clock::time_point;
// ANCHOR_END: config

// ---- TCP layer ----

// ANCHOR: socket
// Owns a file descriptor: closed exactly once, when the owner goes away. Move-only.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Socket& operator=(Socket&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }

  int fd() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};
// ANCHOR_END: socket

// ANCHOR: listen_on
// Binds and listens on host:port (port 0 lets the kernel pick). Returns an empty Socket and
// prints why on failure.
Socket listen_on(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int err = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); err != 0) {
    std::fprintf(stderr, "cannot resolve %s: %s\n", host.c_str(), ::gai_strerror(err));
    return Socket();
  }
  Socket listener(::socket(found->ai_family, found->ai_socktype, found->ai_protocol));
  int one = 1;
  // SO_REUSEADDR so that a restart does not wait out the old connections' TIME_WAIT.
  bool ok = listener && ::setsockopt(listener.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
            ::bind(listener.fd(), found->ai_addr, found->ai_addrlen) == 0 &&
            ::listen(listener.fd(), kListenBacklog) == 0;
  const int error = errno;  // before freeaddrinfo(), which may change it
  ::freeaddrinfo(found);
  if (!ok) {
    std::fprintf(stderr, "cannot listen on %s:%d: %s%s\n", host.c_str(), port, std::strerror(error),
                 error == EADDRINUSE ? " (another program has that port: choose another with --port)" : "");
    return Socket();
  }
  return listener;
}
// ANCHOR_END: listen_on

// ANCHOR: local_url
// "http://127.0.0.1:8000": the address the kernel actually bound, with the real port.
std::string local_url(const Socket& listener) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";  // what stays if either call fails
  ::getsockname(listener.fd(), reinterpret_cast<sockaddr*>(&address), &length);
  ::getnameinfo(reinterpret_cast<sockaddr*>(&address), length, host, sizeof host, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
  const bool v6 = address.ss_family == AF_INET6;  // an IPv6 address goes in brackets
  return std::string("http://") + (v6 ? "[" : "") + host + (v6 ? "]:" : ":") + port;
}
// ANCHOR_END: local_url

// ANCHOR: accept_connection
// Waits for the next connection. Returns an empty Socket once `stop_fd` becomes readable (or,
// after saying why, if poll() itself fails).
// Failures of accept() are the client's or a passing shortage (EMFILE, ENFILE, ENOBUFS): the
// server backs off briefly and goes on, instead of exiting or spinning on a full table.
Socket accept_connection(const Socket& listener, int stop_fd, std::chrono::milliseconds timeout) {
  for (;;) {
    pollfd ready[2] = {{listener.fd(), POLLIN, 0}, {stop_fd, POLLIN, 0}};
    if (::poll(ready, 2, -1) < 0 && errno != EINTR) {
      std::fprintf(stderr, "poll: %s\n", std::strerror(errno));
      return Socket();
    }
    if (ready[1].revents != 0) return Socket();
    if (ready[0].revents == 0) continue;  // EINTR

    Socket connection(::accept(listener.fd(), nullptr, nullptr));
    if (!connection) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        std::fprintf(stderr, "accept: %s; retrying in 100 ms\n", std::strerror(errno));
        pollfd stop{stop_fd, POLLIN, 0};
        ::poll(&stop, 1, 100);
      }
      continue;  // ECONNABORTED, EINTR, EPROTO...: that client is gone, take the next one
    }
    int one = 1;
    // Each response leaves in one write; Nagle's algorithm would only hold it back.
    ::setsockopt(connection.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // A client that stops reading cannot block a send() for longer than the timeout.
    timeval send_timeout{static_cast<time_t>(timeout.count() / 1000),
                         static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    ::setsockopt(connection.fd(), SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
    return connection;
  }
}
// ANCHOR_END: accept_connection

// ANCHOR: reader
// Why Reader::fill() brought no new bytes. Ended: nobody is left to answer (the client closed
// or reset the connection, or the server is stopping).
enum class Fill { Data, Timeout, NoRoom, Ended };

// Buffered reading from a connection into a buffer the caller owns. Bytes arrive at the end
// (fill), the parser looks at what is buffered and consumes from the front.
class Reader {
 public:
  // ANCHOR: reader_stop
  // A stop request reaches a thread waiting in recv() by shutting the socket's read side
  // (serve_connection), which ends the wait as the client closing would.
  Reader(const Socket& connection, std::span<char> buffer) : fd_(connection.fd()), buffer_(buffer) {}
  // ANCHOR_END: reader_stop

  std::string_view buffered() const { return {buffer_.data() + start_, end_ - start_}; }
  void consume(std::size_t n) { start_ += n; }
  std::size_t capacity() const { return buffer_.size(); }

  // Consumes the next `n` bytes (a request head) and keeps them in place until release(), so
  // that string_views into them stay valid while the body is read. They move to the front of
  // the buffer first, which leaves the body as much room as there can be.
  std::string_view keep(std::size_t n) {
    if (start_ > 0) {  // when it starts at the front already (most requests), nothing moves
      std::memmove(buffer_.data(), buffer_.data() + start_, end_ - start_);
      end_ -= start_;
    }
    start_ = kept_ = n;
    return {buffer_.data(), n};
  }
  void release() { kept_ = 0; }

  // ANCHOR: reader_fill
  // Waits until more bytes arrive (or the deadline passes) and appends them.
  Fill fill(Deadline deadline) {
    make_room();
    if (end_ == buffer_.size()) return Fill::NoRoom;
    for (;;) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= std::chrono::milliseconds(0)) return Fill::Timeout;
      // ANCHOR: reader_wait
      // recv() itself waits, for at most the time left (SO_RCVTIMEO): one system call, not two.
      if (!limit_receive_wait(left)) return Fill::Ended;
      // ANCHOR_END: reader_wait
      ssize_t got = ::recv(fd_, buffer_.data() + end_, buffer_.size() - end_, 0);
      if (got > 0) {
        end_ += static_cast<std::size_t>(got);
        return Fill::Data;
      }
      if (got == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) return Fill::Ended;
    }
  }
  // ANCHOR_END: reader_fill

 private:
  void make_room() {
    if (start_ == end_) {
      start_ = end_ = kept_;
    } else if (end_ == buffer_.size() && start_ > kept_) {
      std::memmove(buffer_.data() + kept_, buffer_.data() + start_, end_ - start_);
      end_ -= start_ - kept_;
      start_ = kept_;
    }
  }

  // ANCHOR: reader_state
  // SO_RCVTIMEO bounds how long a recv() waits. Setting it is a system call of its own, so it
  // is set only when the time left differs from what is set by more than a little: on a
  // keep-alive connection every request starts with the same full timeout, and sets nothing.
  bool limit_receive_wait(std::chrono::milliseconds left) {
    constexpr std::chrono::milliseconds kSlack(10);
    if (left <= receive_wait_ && left > receive_wait_ - kSlack) return true;
    timeval limit{static_cast<time_t>(left.count() / 1000), static_cast<suseconds_t>(left.count() % 1000 * 1000)};
    if (::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) != 0) return false;
    receive_wait_ = left;
    return true;
  }

  int fd_;
  std::chrono::milliseconds receive_wait_{0};  // the SO_RCVTIMEO now set (0: none)
  // ANCHOR_END: reader_state
  std::span<char> buffer_;
  std::size_t start_ = 0;  // first byte not yet consumed
  std::size_t end_ = 0;    // one past the last byte received
  std::size_t kept_ = 0;   // consumed bytes before this are kept in place
};
// ANCHOR_END: reader

// ANCHOR: writer
// Buffered writing to a connection from a buffer the caller owns: a response is assembled in
// the buffer and leaves in one send() on flush(); larger pieces go straight out. Errors are
// sticky: after a failed send(), writes do nothing and flush() says false, so the caller
// checks once, at the end.
class Writer {
 public:
  Writer(const Socket& connection, std::span<char> buffer) : fd_(connection.fd()), buffer_(buffer) {}

  void write(std::string_view bytes) {
    if (bytes.empty()) return;  // its data() may be null, which memcpy must not be given
    if (bytes.size() > buffer_.size() - used_) flush();
    if (bytes.size() >= buffer_.size()) return send_all(bytes);
    std::memcpy(buffer_.data() + used_, bytes.data(), bytes.size());
    used_ += bytes.size();
  }

  void write_number(std::uint64_t value) {
    char digits[20];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
    write({digits, static_cast<std::size_t>(end - digits)});
  }

  // Sends what is buffered. False once any send has failed.
  bool flush() {
    send_all({buffer_.data(), used_});
    used_ = 0;
    return !failed_;
  }

 private:
  void send_all(std::string_view bytes) {
    while (!failed_ && !bytes.empty()) {
      ssize_t sent = ::send(fd_, bytes.data(), bytes.size(), 0);
      if (sent < 0 && errno == EINTR) continue;
      failed_ = sent <= 0;  // the peer is gone, or SO_SNDTIMEO passed
      if (!failed_) bytes.remove_prefix(static_cast<std::size_t>(sent));
    }
  }

  int fd_;
  std::span<char> buffer_;
  std::size_t used_ = 0;
  bool failed_ = false;
};
// ANCHOR_END: writer

// ANCHOR: linger
// Closing a socket that still has unread input makes the kernel send a reset, which can
// destroy our last response before the client reads it. So before the server closes a
// connection it says "no more from me" (FIN) and reads and discards until the client
// closes too, for at most kLingerTime. The caller's Socket then closes the descriptor.
void linger_before_close(const Socket& connection, Reader& reader) {
  ::shutdown(connection.fd(), SHUT_WR);
  reader.release();  // the request is answered: the whole buffer may take what follows
  const Deadline deadline = Clock::now() + kLingerTime;
  do {
    reader.consume(reader.buffered().size());
  } while (reader.fill(deadline) == Fill::Data);
}
// ANCHOR_END: linger

// ---- HTTP layer ----

// ANCHOR: status
enum class Status {
  Continue = 100,
  OK = 200,
  BadRequest = 400,
  MethodNotAllowed = 405,
  RequestTimeout = 408,
  ContentTooLarge = 413,
  UriTooLong = 414,
  ExpectationFailed = 417,
  HeaderFieldsTooLarge = 431,
  NotImplemented = 501,
  ServiceUnavailable = 503,
  VersionNotSupported = 505,
};
// ANCHOR_END: status

// ANCHOR: reason_phrase
std::string_view reason_phrase(Status status) {
  switch (status) {
    case Status::Continue: return "Continue";
    case Status::OK: return "OK";
    case Status::BadRequest: return "Bad Request";
    case Status::MethodNotAllowed: return "Method Not Allowed";
    case Status::RequestTimeout: return "Request Timeout";
    case Status::ContentTooLarge: return "Content Too Large";
    case Status::UriTooLong: return "URI Too Long";
    case Status::ExpectationFailed: return "Expectation Failed";
    case Status::HeaderFieldsTooLarge: return "Request Header Fields Too Large";
    case Status::NotImplemented: return "Not Implemented";
    case Status::ServiceUnavailable: return "Service Unavailable";
    case Status::VersionNotSupported: return "HTTP Version Not Supported";
  }
  return "Unknown";
}
// ANCHOR_END: reason_phrase

// ANCHOR: request
// What the server needs to know about a request. The views point into the reader's buffer.
struct Request {
  std::string_view method;
  std::string_view target;
  int minor_version = 1;             // HTTP/1.0 or HTTP/1.1
  bool keep_alive = true;            // what the client asked for
  bool expect_continue = false;      // "Expect: 100-continue"
  bool chunked = false;              // body framed by Transfer-Encoding: chunked
  std::uint64_t content_length = 0;  // body length when not chunked
};

// The outcome of parsing: OK and a request, or the status to answer with.
struct ParsedHead {
  Status status = Status::OK;
  Request request;
};
// ANCHOR_END: request

// ANCHOR: rejected
ParsedHead rejected(Status status) {
  ParsedHead parsed;
  parsed.status = status;
  return parsed;
}
// ANCHOR_END: rejected

// ANCHOR: syntax
bool is_tchar(char c) {  // RFC 9110 5.6.2: token characters
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// A field value may hold visible characters, obs-text, spaces and tabs; no other controls.
bool is_field_value(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u == '\t' || (u >= 0x20 && u != 0x7f);
  });
}

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; }

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return ascii_lower(x) == ascii_lower(y); });
}

std::string_view trim_whitespace(std::string_view s) {  // OWS: spaces and tabs
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls `each` for every non-empty element of a comma-separated field value (RFC 9110 5.6.1).
template <typename F>
void for_each_list_element(std::string_view value, F each) {
  while (!value.empty()) {
    std::size_t comma = value.find(',');
    std::string_view element = trim_whitespace(value.substr(0, comma));
    if (!element.empty()) each(element);
    value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
  }
}

// 1*DIGIT without overflow; nullopt for anything else (a sign, spaces, a list, hex...).
std::optional<std::uint64_t> parse_decimal(std::string_view s) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

// The target forms RFC 9112 3.2 allows: origin-form "/path?q", absolute-form "http://h/p",
// asterisk-form "*" (OPTIONS only), authority-form "host:port" (CONNECT only).
bool is_valid_target(std::string_view method, std::string_view target) {
  bool visible = !target.empty() && std::all_of(target.begin(), target.end(), [](char c) {
    return c > 0x20 && c < 0x7f;
  });
  if (!visible) return false;
  if (target.front() == '/') return true;
  if (target == "*") return method == "OPTIONS";
  if (method == "CONNECT") return true;
  std::size_t colon = target.find(':');  // absolute-form: scheme ":" ...
  return colon != std::string_view::npos && colon > 0 && std::isalpha(static_cast<unsigned char>(target[0])) &&
         std::all_of(target.begin(), target.begin() + static_cast<std::ptrdiff_t>(colon), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
         });
}

// Host = uri-host [ ":" port ] (RFC 9110 7.2): a name or IPv4 address, or an IPv6 literal in
// brackets, then optionally a colon and digits. Spaces, slashes or a second colon are rejected,
// and so is an empty host: an http URI must have one (RFC 9110 4.2.1).
bool is_valid_host(std::string_view host) {
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  auto is_name_char = [](char c) {  // unreserved, pct-encoded and sub-delims of RFC 3986
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("-._~%!$&'()*+,;=").find(c) != std::string_view::npos;
  };
  auto is_ipv6_char = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.'; };
  std::size_t name_end = 0;
  if (host.starts_with('[')) {
    name_end = host.find(']');
    if (name_end == std::string_view::npos || !std::all_of(host.begin() + 1, host.begin() + name_end, is_ipv6_char)) {
      return false;
    }
    ++name_end;
  } else {
    while (name_end < host.size() && is_name_char(host[name_end])) ++name_end;
  }
  std::string_view port = host.substr(name_end);
  return name_end > (host.starts_with('[') ? 2 : 0) &&
         (port.empty() || (port.front() == ':' && std::all_of(port.begin() + 1, port.end(), is_digit)));
}
// ANCHOR_END: syntax

// ANCHOR: scan_head
// Where the head ends in the bytes received so far. Lines must end in CRLF: a bare CR or LF
// is rejected at once rather than guessed at, since two parsers guessing differently is how
// requests get smuggled. So is what can never start a request: a method is a token, which a
// NUL or a TLS handshake is not.
struct HeadScan {
  enum State { Incomplete, Complete, Invalid } state = Incomplete;
  std::size_t length = 0;      // Complete: bytes up to and including the empty line.
                               // Incomplete: bytes scanned; a scan of more bytes goes on from here
  std::size_t line_start = 0;  // where the line being scanned begins (after the request line: > 0)
  bool in_method = true;       // no space seen yet on the request line
};

// Pass the last Incomplete result back in when more bytes have arrived, so that a long head is
// scanned once, not again from its start after every read.
HeadScan scan_request_head(std::string_view data, HeadScan scan = {}) {
  for (; scan.length < data.size(); ++scan.length) {
    const std::size_t i = scan.length;
    if (data[i] == '\n') return {HeadScan::Invalid};
    if (data[i] == '\r') {
      if (i + 1 == data.size()) break;  // the LF may still come
      if (data[i + 1] != '\n') return {HeadScan::Invalid};
      if (i == scan.line_start) return {HeadScan::Complete, i + 2};
      scan.line_start = i + 2;
      ++scan.length;
    } else if (scan.in_method) {
      if (data[i] == ' ' && i > 0) {
        scan.in_method = false;
      } else if (!is_tchar(data[i])) {
        return {HeadScan::Invalid};
      }
    }
  }
  return scan;
}
// ANCHOR_END: scan_head

// ANCHOR: request_line
// request-line = method SP request-target SP HTTP-version
Status parse_request_line(std::string_view line, Request& request) {
  std::size_t first_space = line.find(' ');
  std::size_t second_space = line.find(' ', first_space + 1);
  if (first_space == std::string_view::npos || second_space == std::string_view::npos) return Status::BadRequest;
  request.method = line.substr(0, first_space);
  request.target = line.substr(first_space + 1, second_space - first_space - 1);
  std::string_view version = line.substr(second_space + 1);
  if (!is_token(request.method) || !is_valid_target(request.method, request.target)) return Status::BadRequest;

  // HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive.
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !is_digit(version[5]) || version[6] != '.' ||
      !is_digit(version[7])) {
    return Status::BadRequest;
  }
  if (version[5] != '1') return Status::VersionNotSupported;
  // RFC 9110 2.5: a later 1.x is handled as the highest 1.x we implement.
  request.minor_version = version[7] == '0' ? 0 : 1;
  return Status::OK;
}
// ANCHOR_END: request_line

// ANCHOR: field_line
// field-line = field-name ":" OWS field-value OWS. Splits one line, or says it is malformed.
bool split_field_line(std::string_view line, std::string_view& name, std::string_view& value) {
  std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return false;
  name = line.substr(0, colon);  // no whitespace allowed before the colon (RFC 9112 5.1)
  value = trim_whitespace(line.substr(colon + 1));
  return is_token(name) && is_field_value(value);
}
// ANCHOR_END: field_line

// ANCHOR: parse_head
// Parses a complete request head: the request line and field lines, each ending in CRLF, up
// to and including the empty line. Checks every rule that keeps message framing unambiguous.
ParsedHead parse_request_head(std::string_view head) {
  ParsedHead parsed;
  Request& request = parsed.request;
  auto next_line = [&head] {
    std::size_t end = head.find("\r\n");
    std::string_view line = head.substr(0, end);
    head.remove_prefix(end == std::string_view::npos ? head.size() : end + 2);
    return line;
  };
  auto fail = [&parsed](Status status) {
    parsed.status = status;
    return parsed;  // with what was parsed so far, for the log
  };

  if (Status status = parse_request_line(next_line(), request); status != Status::OK) return fail(status);

  int hosts = 0;
  int content_lengths = 0;  // values seen, in one field or several
  bool conflicting_lengths = false;
  bool transfer_encoding = false, chunked_last = false, unknown_coding = false;
  int chunked_count = 0;
  bool connection_close = false, connection_keep_alive = false;
  bool unknown_expectation = false;

  for (std::string_view line = next_line(); !line.empty(); line = next_line()) {
    // Obsolete line folding (a line starting with whitespace) is rejected (RFC 9112 5.2).
    std::string_view name, value;
    if (!split_field_line(line, name, value)) return fail(Status::BadRequest);

    if (equals_ignoring_case(name, "host")) {
      if (!is_valid_host(value)) return fail(Status::BadRequest);
      ++hosts;
    } else if (equals_ignoring_case(name, "content-length")) {
      // Repeated values, as a list or in several fields, are accepted only when they agree
      // (RFC 9112 6.3); every one must be a number, and there must be one.
      const int before = content_lengths;
      for_each_list_element(value, [&](std::string_view element) {
        auto length = parse_decimal(element);
        conflicting_lengths |= !length || (content_lengths > 0 && *length != request.content_length);
        if (length) request.content_length = *length;
        ++content_lengths;
      });
      if (conflicting_lengths || content_lengths == before) return fail(Status::BadRequest);
    } else if (equals_ignoring_case(name, "transfer-encoding")) {
      transfer_encoding = true;
      for_each_list_element(value, [&](std::string_view coding) {
        chunked_last = equals_ignoring_case(coding, "chunked");
        chunked_count += chunked_last;
        unknown_coding |= !chunked_last;
      });
    } else if (equals_ignoring_case(name, "connection")) {
      for_each_list_element(value, [&](std::string_view option) {
        connection_close |= equals_ignoring_case(option, "close");
        connection_keep_alive |= equals_ignoring_case(option, "keep-alive");
      });
    } else if (equals_ignoring_case(name, "expect")) {
      if (equals_ignoring_case(value, "100-continue")) {
        request.expect_continue = request.minor_version == 1;  // HTTP/1.0: ignored (RFC 9110 10.1.1)
      } else if (!value.empty()) {
        unknown_expectation = true;
      }
    }
  }

  // RFC 9112 3.2: exactly one Host in HTTP/1.1; never more than one.
  if (hosts > 1 || (hosts == 0 && request.minor_version == 1)) return fail(Status::BadRequest);

  // ANCHOR: framing
  // RFC 9112 6.1 and 6.3: the body's length must be unambiguous. Transfer-Encoding together
  // with Content-Length is the classic request-smuggling vector, so both is an error, as is
  // Transfer-Encoding in HTTP/1.0 or a chunked coding that is not last (or given twice). Only
  // then, for a well-framed chunked body, does a coding we do not know get 501.
  if (transfer_encoding) {
    if (content_lengths > 0 || request.minor_version == 0 || !chunked_last || chunked_count > 1) {
      return fail(Status::BadRequest);
    }
    if (unknown_coding) return fail(Status::NotImplemented);
    request.chunked = true;
  }
  // ANCHOR_END: framing
  if (unknown_expectation) return fail(Status::ExpectationFailed);

  request.keep_alive = request.minor_version == 1 ? !connection_close : connection_keep_alive && !connection_close;
  return parsed;
}
// ANCHOR_END: parse_head

// ANCHOR: read_head
// Reads a request head from the connection, by `deadline`. Returns OK and the request, an
// error status to answer with, or nullopt when the connection ended before a request began
// (nothing to say).
std::optional<ParsedHead> read_request_head(Reader& reader, Deadline deadline) {
  reader.release();  // the previous request is answered; its bytes may go
  HeadScan scan;
  bool request_line_checked = false;
  for (;;) {
    // RFC 9112 2.2: empty lines before a request line are ignored. (They come before the
    // scan has taken a step, so the scan need not start over.)
    while (reader.buffered().starts_with("\r\n")) reader.consume(2);

    scan = scan_request_head(reader.buffered(), scan);
    if (scan.state == HeadScan::Invalid) return rejected(Status::BadRequest);
    if (scan.state == HeadScan::Complete) {
      return parse_request_head(reader.keep(scan.length));  // the request's views point into it
    }
    // A request line that has ended but cannot be one is answered now, not when the head is
    // complete: after HTTP/0.9's "GET /" that never happens. (A head that arrives whole, as
    // most do, has its request line parsed once, above.)
    if (scan.line_start > 0 && !request_line_checked) {
      Request unused;
      std::string_view line = reader.buffered().substr(0, reader.buffered().find("\r\n"));
      if (parse_request_line(line, unused) == Status::BadRequest) return rejected(Status::BadRequest);
      request_line_checked = true;
    }
    switch (reader.fill(deadline)) {
      case Fill::Data: continue;
      case Fill::NoRoom: return rejected(scan.line_start > 0 ? Status::HeaderFieldsTooLarge : Status::UriTooLong);
      case Fill::Timeout:
        if (!reader.buffered().empty()) return rejected(Status::RequestTimeout);
        return std::nullopt;
      case Fill::Ended: return std::nullopt;
    }
  }
}
// ANCHOR_END: read_head

// ANCHOR: limits
// Limits the HTTP layer enforces; the server passes them from its flags.
struct Limits {
  std::uint64_t max_body = 0;
  std::chrono::milliseconds timeout{0};
};

// Why reading a body stopped early: a status to answer with, or nullopt when the
// connection went away (nobody to answer).
using BodyResult = std::optional<Status>;
// ANCHOR_END: limits

// ANCHOR: body_deadline
// A body must arrive within the timeout, plus one second for every kMinBodyRate bytes it
// declares (its Content-Length, or each chunk's size). A slow upload gets the time its size
// needs; a client that trickles cannot hold the connection for longer than that.
Deadline extended(Deadline deadline, std::uint64_t body_bytes) {
  return deadline + std::chrono::microseconds(body_bytes * 1'000'000 / kMinBodyRate);
}
// ANCHOR_END: body_deadline

// ANCHOR: body
// The memory all request bodies together may hold, across the whole server. A body takes
// room before it grows and gives it back after its response; a request that finds too little
// left is answered 503, so that many large uploads at once cannot exhaust memory.
class BodyBudget {
 public:
  explicit BodyBudget(std::uint64_t bytes) : left_(bytes) {}

  bool take(std::uint64_t bytes) {
    std::uint64_t left = left_.load();
    do {
      if (bytes > left) return false;
    } while (!left_.compare_exchange_weak(left, left - bytes));
    return true;
  }
  void give_back(std::uint64_t bytes) { left_ += bytes; }

 private:
  std::atomic<std::uint64_t> left_;
};

// A request body, held in memory for the handler. Its bytes live in a mapping of its own
// (mmap), not on the C library's heap, which keeps what is freed for later: there a connection
// that once took a 1 MiB upload would go on holding it. After each response the body gives its
// room back to the budget, and all but kKeptBodyCapacity of its mapping back to the kernel; what
// it keeps serves the next small body with no system call.
class Body {
 public:
  explicit Body(BodyBudget& budget) : budget_(budget) {}
  Body(const Body&) = delete;
  Body& operator=(const Body&) = delete;
  ~Body() {
    clear();
    if (data_ != nullptr) ::munmap(data_, capacity_);
  }

  std::string_view bytes() const { return {data_, size_}; }

  // Makes room for `count` more bytes: from the budget, then from the kernel. False when
  // either has too little to give.
  bool reserve(std::uint64_t count) {
    if (!budget_.take(count)) return false;
    reserved_ += count;
    return count <= capacity_ - size_ || grow(size_ + count);
  }
  void append(std::string_view piece) {  // within the room reserved
    std::memcpy(data_ + size_, piece.data(), piece.size());
    size_ += piece.size();
  }

  void clear() {
    // A GET reserved nothing: it leaves the shared counter alone, which every thread writes.
    if (reserved_ > 0) budget_.give_back(std::exchange(reserved_, 0));
    size_ = 0;
    if (capacity_ > kKeptBodyCapacity) {
      ::munmap(data_ + kKeptBodyCapacity, capacity_ - kKeptBodyCapacity);
      capacity_ = kKeptBodyCapacity;
    }
  }

 private:
  // Moves the bytes to a new mapping of at least `needed` bytes: at least twice the old one, so
  // that a body growing chunk by chunk is copied a few times, not once per chunk; in whole
  // kKeptBodyCapacity units, so that clear() can cut it there.
  bool grow(std::uint64_t needed) {
    std::uint64_t capacity = std::max<std::uint64_t>(needed, 2 * capacity_);
    capacity = (capacity + kKeptBodyCapacity - 1) / kKeptBodyCapacity * kKeptBodyCapacity;
    void* mapping = ::mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapping == MAP_FAILED) return false;
    if (data_ != nullptr) {
      std::memcpy(mapping, data_, size_);
      ::munmap(data_, capacity_);
    }
    data_ = static_cast<char*>(mapping);
    capacity_ = capacity;
    return true;
  }

  BodyBudget& budget_;
  char* data_ = nullptr;  // a mapping of capacity_ bytes, once there is one
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  std::uint64_t reserved_ = 0;
};
// ANCHOR_END: body

// ANCHOR: body_readers
// Appends the next `count` body bytes to `body` (which has room for them), waiting for them
// until `deadline`.
BodyResult read_exactly(Reader& reader, std::uint64_t count, Body& body, Deadline deadline) {
  while (count > 0) {
    if (reader.buffered().empty()) {
      switch (reader.fill(deadline)) {
        case Fill::Data: break;
        case Fill::Timeout: return Status::RequestTimeout;
        case Fill::NoRoom: return Status::HeaderFieldsTooLarge;  // the head filled the buffer
        case Fill::Ended: return std::nullopt;
      }
    }
    std::string_view piece = reader.buffered().substr(0, static_cast<std::size_t>(
        std::min<std::uint64_t>(count, reader.buffered().size())));
    body.append(piece);
    reader.consume(piece.size());
    count -= piece.size();
  }
  return Status::OK;
}

// Reads one line ending in CRLF (without it) into `line`, by `deadline`. A line longer than
// the room in the buffer is rejected with `too_long`.
BodyResult read_line(Reader& reader, std::string_view& line, Deadline deadline, Status too_long) {
  for (;;) {
    std::string_view data = reader.buffered();
    std::size_t end = data.find('\n');
    if (end != std::string_view::npos) {
      if (end == 0 || data[end - 1] != '\r') return Status::BadRequest;
      line = data.substr(0, end - 1);
      if (line.find('\r') != std::string_view::npos) return Status::BadRequest;
      reader.consume(end + 1);
      return Status::OK;
    }
    switch (reader.fill(deadline)) {
      case Fill::Data: break;
      case Fill::Timeout: return Status::RequestTimeout;
      case Fill::NoRoom: return too_long;
      case Fill::Ended: return std::nullopt;
    }
  }
}
// ANCHOR_END: body_readers

// ANCHOR: chunk_extension
// chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] ). Whitespace
// may only come before a ";" or "=" or after one: "5 " with nothing after the space is invalid.
bool is_chunk_extension(std::string_view s) {
  auto skip_whitespace = [&s] { s = s.substr(std::min(s.size(), s.find_first_not_of(" \t"))); };
  auto take_token = [&s] {
    std::size_t n = 0;
    while (n < s.size() && is_tchar(s[n])) ++n;
    s.remove_prefix(n);
    return n > 0;
  };
  auto take_quoted_string = [&s] {
    for (std::size_t i = 1; i < s.size(); ++i) {
      auto c = static_cast<unsigned char>(s[i]);
      if (c == '"') {
        s.remove_prefix(i + 1);
        return true;
      }
      if (c == '\\') ++i;  // quoted-pair: the next character is taken literally
      else if (c != '\t' && (c < 0x20 || c == 0x7f)) return false;
    }
    return false;
  };
  while (!s.empty()) {
    skip_whitespace();
    if (s.empty() || s.front() != ';') return false;
    s.remove_prefix(1);
    skip_whitespace();
    if (!take_token()) return false;
    std::string_view after_name = s;
    skip_whitespace();
    if (s.empty() || s.front() != '=') {
      s = after_name;  // no value: what follows the name must be the next ";"
      continue;
    }
    s.remove_prefix(1);
    skip_whitespace();
    if (s.empty() || !(s.front() == '"' ? take_quoted_string() : take_token())) return false;
  }
  return true;
}
// ANCHOR_END: chunk_extension

// ANCHOR: chunked
// chunked-body = *chunk last-chunk trailer-section CRLF (RFC 9112 7.1). Extensions are
// checked and ignored; trailer fields are checked and dropped, and like a head they must fit
// in the read buffer.
BodyResult read_chunked_body(Reader& reader, Body& body, const Limits& limits, Deadline deadline) {
  std::uint64_t size_so_far = 0;
  for (;;) {
    std::string_view line;
    if (BodyResult r = read_line(reader, line, deadline, Status::BadRequest); r != Status::OK) return r;
    std::uint64_t size = 0;
    auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
    if (ec != std::errc() || end == line.data() ||
        !is_chunk_extension({end, static_cast<std::size_t>(line.data() + line.size() - end)})) {
      return Status::BadRequest;
    }
    if (size == 0) break;
    if (size > limits.max_body - size_so_far) return Status::ContentTooLarge;
    if (!body.reserve(size)) return Status::ServiceUnavailable;
    size_so_far += size;
    deadline = extended(deadline, size);
    if (BodyResult r = read_exactly(reader, size, body, deadline); r != Status::OK) return r;
    if (BodyResult r = read_line(reader, line, deadline, Status::BadRequest); r != Status::OK) return r;
    if (!line.empty()) return Status::BadRequest;  // chunk-data must be followed by CRLF
  }
  std::size_t trailer_bytes = 0;
  for (;;) {  // trailer-section: field lines up to an empty line
    std::string_view line, name, value;
    if (BodyResult r = read_line(reader, line, deadline, Status::HeaderFieldsTooLarge); r != Status::OK) return r;
    if (line.empty()) return Status::OK;
    trailer_bytes += line.size() + 2;
    if (trailer_bytes > reader.capacity()) return Status::HeaderFieldsTooLarge;
    if (!split_field_line(line, name, value)) return Status::BadRequest;
  }
}
// ANCHOR_END: chunked

// ANCHOR: read_body
// Reads the request's body into `body` (empty: serve_request empties it after each response).
BodyResult read_body(Reader& reader, Writer& writer, const Request& request, Body& body, const Limits& limits) {
  if (!request.chunked && request.content_length > limits.max_body) return Status::ContentTooLarge;
  if (!request.chunked && request.content_length == 0) return Status::OK;
  if (!request.chunked && !body.reserve(request.content_length)) return Status::ServiceUnavailable;
  if (request.expect_continue) {  // the client waits for this before sending the body
    writer.write("HTTP/1.1 100 Continue\r\n\r\n");
    if (!writer.flush()) return std::nullopt;
  }
  const Deadline deadline = Clock::now() + limits.timeout;
  if (request.chunked) return read_chunked_body(reader, body, limits, deadline);
  return read_exactly(reader, request.content_length, body, extended(deadline, request.content_length));
}
// ANCHOR_END: read_body

// ANCHOR: http_date
// IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 5.6.7), formatted at most once
// a second per thread. strftime's day and month names are English in the "C" locale, which
// a program has until it calls setlocale().
std::string_view http_date() {
  thread_local std::time_t cached_second = -1;
  thread_local char text[32];
  thread_local std::size_t length = 0;
  const std::time_t now = std::time(nullptr);
  if (now != cached_second) {
    cached_second = now;
    std::tm utc{};
    ::gmtime_r(&now, &utc);
    length = std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &utc);
  }
  return {text, length};
}
// ANCHOR_END: http_date

// ANCHOR: write_response
struct Response {
  Status status;
  std::string_view content_type;
  std::string_view body;
  std::string_view allow;  // for 405: the methods that are allowed
};

// How the connection goes on after a response: the Connection header it gets.
enum class Persistence { Close, KeepAlive, KeepAlive10 };

// Assembles the whole response in the writer's buffer; the caller flushes.
void write_response(Writer& out, const Response& response, bool include_body, Persistence persistence) {
  out.write("HTTP/1.1 ");
  out.write_number(static_cast<int>(response.status));
  out.write(" ");
  out.write(reason_phrase(response.status));
  out.write("\r\nDate: ");
  out.write(http_date());
  out.write("\r\nContent-Type: ");
  out.write(response.content_type);
  out.write("\r\nContent-Length: ");
  out.write_number(response.body.size());
  out.write("\r\n");
  if (!response.allow.empty()) {
    out.write("Allow: ");
    out.write(response.allow);
    out.write("\r\n");
  }
  if (response.status == Status::ServiceUnavailable) out.write("Retry-After: 1\r\n");
  if (persistence == Persistence::Close) out.write("Connection: close\r\n");
  if (persistence == Persistence::KeepAlive10) out.write("Connection: keep-alive\r\n");
  out.write("\r\n");
  if (include_body) out.write(response.body);
}
// ANCHOR_END: write_response

// ANCHOR: error_response
Response error_response(Status status) {
  return {status, "text/plain", reason_phrase(status), {}};
}
// ANCHOR_END: error_response

// ANCHOR: serve_request
// The application: from a complete request and its body to a response.
using Handler = Response (*)(const Request& request, std::string_view body);

// One request/response exchange, as seen by the server loop and the log.
struct Exchange {
  bool answered = false;    // a response was sent (false: the connection just ended)
  bool keep_alive = false;  // the connection may carry another request
  Status status = Status::OK;
  std::string_view method, target;  // valid until the next exchange on this reader
};

// Reads one request, lets `handler` answer it, writes the response. After an error response
// the connection closes: after most errors the rest of the stream can no longer be trusted to
// be framed, and one rule for every error status is simpler to check than a list of exceptions.
Exchange serve_request(Reader& reader, Writer& writer, Body& body, Handler handler, const Limits& limits,
                       bool may_keep_alive) {
  Exchange exchange;
  std::optional<ParsedHead> head = read_request_head(reader, Clock::now() + limits.timeout);
  if (!head) return exchange;
  const Request& request = head->request;
  exchange.method = request.method;
  exchange.target = request.target;

  Response response = error_response(head->status);
  if (head->status == Status::OK) {
    BodyResult body_result = read_body(reader, writer, request, body, limits);
    if (!body_result) return exchange;
    response = *body_result == Status::OK ? handler(request, body.bytes()) : error_response(*body_result);
  }

  exchange.status = response.status;
  exchange.keep_alive = may_keep_alive && request.keep_alive && response.status < Status::BadRequest;
  Persistence persistence = !exchange.keep_alive       ? Persistence::Close
                            : request.minor_version == 0 ? Persistence::KeepAlive10
                                                         : Persistence::KeepAlive;
  write_response(writer, response, request.method != "HEAD", persistence);
  exchange.answered = writer.flush();
  exchange.keep_alive &= exchange.answered;
  body.clear();  // its memory goes back before the connection waits for another request
  return exchange;
}
// ANCHOR_END: serve_request

// ---- Application ----

// ANCHOR: handle
Response handle(const Request& request, std::string_view body) {
  if (request.method == "GET" || request.method == "HEAD") return {Status::OK, "text/plain", "Hello World!", {}};
  if (request.method == "POST") return {Status::OK, "application/octet-stream", body, {}};
  return {Status::MethodNotAllowed, "text/plain", "Method Not Allowed", "GET, HEAD, POST"};
}
// ANCHOR_END: handle

// ---- Stopping ----

// ANCHOR: stop_signal
// SIGINT and SIGTERM ask the server to stop. A signal handler may do almost nothing safely,
// so it writes one byte to a pipe (the "self-pipe trick"); whoever waits in poll() on the
// pipe's read end wakes up. The byte is never read: the pipe stays readable, for everyone.
// A second signal finds the pipe readable already, and ends the process at once.
class StopSignal {
 public:
  static bool install() {
    int fds[2];
    if (::pipe(fds) != 0) return false;
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    ::fcntl(write_fd_, F_SETFL, O_NONBLOCK);
    struct sigaction action{};
    action.sa_handler = [](int) {
      if (requested()) {
        constexpr std::string_view kMessage = "second stop signal: exiting now\n";
        [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, kMessage.data(), kMessage.size());
        ::_exit(1);
      }
      int saved = errno;
      [[maybe_unused]] ssize_t n = ::write(write_fd_, "x", 1);
      errno = saved;
    };
    ::sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    return true;
  }
  static int fd() { return read_fd_; }
  // Whether a stop was asked for, waiting up to `wait` for one.
  static bool requested(std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
    pollfd stop{read_fd_, POLLIN, 0};
    return ::poll(&stop, 1, static_cast<int>(wait.count())) > 0;
  }

 private:
  static inline int read_fd_ = -1;
  static inline int write_fd_ = -1;
};
// ANCHOR_END: stop_signal

// ---- Thread group ----

// ANCHOR: thread_group
// ANCHOR: group_class
// Runs each task on a thread of its own, like Zig's std.Io.Group: spawn() starts one,
// cancel() asks them all to stop, wait_for() waits for them to finish.
//
// A thread that has ended still holds its stack until it is joined or, if it was created
// detached, until it ends. A group that kept its threads to join them at the end would grow
// with every connection it ever served; one whose threads join each other would make each
// ending wait for the one before it. So the threads start detached and free their own stacks
// as they end; the group only counts the tasks still running, to wait for them.
//
// POSIX threads rather than std::thread, because std::thread cannot choose its stack size,
// and the default (8 MiB) makes every new thread cost more than the connection it serves.
class ThreadGroup {
 public:
  explicit ThreadGroup(std::size_t limit) : limit_(limit) {}
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;
  ~ThreadGroup() {  // never gone while a task may still touch it
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return running_ == 0; });
  }
// ANCHOR_END: group_class

  // ANCHOR: wait_for_room
  // Back-pressure: waits up to `timeout` for fewer than `limit` tasks to be running.
  bool wait_for_room(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [this] { return running_ < limit_; });
  }
  // ANCHOR_END: wait_for_room

  // ANCHOR: spawn
  // Starts task(stop_token) on a new thread. False when the system has no thread, or no
  // memory, to give; the task is then handed back unrun, in `task`.
  template <typename Task>
  bool spawn(Task& task) {
    struct Start {
      ThreadGroup* group;
      Task task;
    };
    std::unique_ptr<Start> start(new (std::nothrow) Start{this, std::move(task)});
    if (!start) return false;
    auto run = [](void* argument) -> void* {
      std::unique_ptr<Start> start(static_cast<Start*>(argument));
      ThreadGroup* group = start->group;
      start->task(group->stop_.get_token());
      start.reset();  // the task, and the connection it owns, end before the thread counts as finished
      group->finish();
      return nullptr;
    };
    {
      std::lock_guard lock(mutex_);
      ++running_;
    }
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, kThreadStackSize);
    // Nobody joins these threads, so they are created detached: each one's stack is freed the
    // moment it ends. (Created joinable and never joined, every stack would stay.)
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int error = pthread_create(&thread, &attributes, run, start.get());
    pthread_attr_destroy(&attributes);
    if (error == 0) {
      start.release();  // the new thread owns it now
      return true;
    }
    task = std::move(start->task);
    finish();
    return false;
  }
  // ANCHOR_END: spawn

  // ANCHOR: cancel_wait
  // Asks every task, running or spawned later, to stop: its stop_token says so, and its
  // std::stop_callbacks run now, on this thread.
  void cancel() { stop_.request_stop(); }

  // Waits up to `timeout` for every task to finish. False if some are still running.
  bool wait_for(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [this] { return running_ == 0; });
  }
  // ANCHOR_END: cancel_wait

 private:
  // ANCHOR: finish
  // A thread's last act. Under the lock: once the destructor has seen running_ reach 0, no
  // thread touches the group again.
  void finish() {
    std::lock_guard lock(mutex_);
    --running_;
    changed_.notify_all();
  }
  // ANCHOR_END: finish

  // ANCHOR: group_state
  const std::size_t limit_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::size_t running_ = 0;  // tasks started and not yet finished
  std::stop_source stop_;
};
// ANCHOR_END: group_state
// ANCHOR_END: thread_group

// ---- Server ----

// ANCHOR: options
struct Options {
  std::string host = "127.0.0.1";
  int port = kDefaultPort;
  Limits limits{kDefaultMaxBody, std::chrono::milliseconds(kDefaultTimeoutMs)};
  std::size_t buffer_size = kDefaultBufferSize;
  std::size_t max_connections = kDefaultMaxConnections;
  std::uint64_t body_memory = kDefaultBodyMemory;
  std::chrono::milliseconds shutdown_timeout{kDefaultShutdownTimeoutMs};
  bool keep_alive = true;
  bool log_requests = false;
};
// ANCHOR_END: options

// ANCHOR: log_request
// One line per answered request, e.g. "GET /index.html 200"; "-" for what a bad request lacked.
void log_request(const Exchange& exchange) {
  auto shown = [](std::string_view s) { return s.empty() ? std::string_view("-") : s; };
  std::string_view method = shown(exchange.method), target = shown(exchange.target);
  std::fprintf(stderr, "%.*s %.*s %d\n", static_cast<int>(method.size()), method.data(),
               static_cast<int>(target.size()), target.data(), static_cast<int>(exchange.status));
}
// ANCHOR_END: log_request

// ANCHOR: refuse
// Answers 503 to a connection the server has no thread or memory for, without reading its
// request, from a buffer on the stack. Best effort: a client whose request arrives after the
// close may see a reset instead.
void refuse_connection(const Socket& connection) {
  std::array<char, 256> buffer;
  Writer writer(connection, buffer);
  write_response(writer, error_response(Status::ServiceUnavailable), true, Persistence::Close);
  writer.flush();
}
// ANCHOR_END: refuse

// ANCHOR: serve_connection
// The keep-alive loop: request after request on one connection, on the connection's own thread.
void serve_connection(Socket connection, const Options& options, BodyBudget& budget, std::stop_token stop) {
  // Cancelling the group shuts the read side: a wait for the next request ends at once, while
  // a response already being written still goes out. (Declared after `connection`, so it is
  // unregistered before the descriptor closes.)
  std::stop_callback on_cancel(stop, [&connection] { ::shutdown(connection.fd(), SHUT_RD); });
  // Not zero-filled: recv() and the responses write every byte before it is read.
  std::unique_ptr<char[]> input(new (std::nothrow) char[options.buffer_size]);
  std::unique_ptr<char[]> output(new (std::nothrow) char[options.buffer_size]);
  if (!input || !output) return refuse_connection(connection);
  Body body(budget);
  Reader reader(connection, {input.get(), options.buffer_size});
  Writer writer(connection, {output.get(), options.buffer_size});
  Exchange exchange;
  do {
    bool may_keep_alive = options.keep_alive && !stop.stop_requested();
    exchange = serve_request(reader, writer, body, handle, options.limits, may_keep_alive);
    if (exchange.answered && options.log_requests) log_request(exchange);
  } while (exchange.keep_alive);
  if (exchange.answered) linger_before_close(connection, reader);
}
// ANCHOR_END: serve_connection

// ANCHOR: connection_task
// What a connection's thread runs. A struct rather than a lambda, so that spawn() can hand
// it back, connection and all, when no thread can be had.
struct ConnectionTask {
  Socket connection;
  const Options* options;
  BodyBudget* budget;
  void operator()(std::stop_token stop) { serve_connection(std::move(connection), *options, *budget, stop); }
};
// ANCHOR_END: connection_task

// ANCHOR: run_server
int run_server(const Options& options) {
  if (!StopSignal::install()) return 1;
  // A client that closes early must cost a failed send(), not the process.
  ::signal(SIGPIPE, SIG_IGN);
  Socket listener = listen_on(options.host, options.port);
  if (!listener) return 1;
  std::printf("Listening on %s\n", local_url(listener).c_str());
  std::fflush(stdout);

  BodyBudget budget(options.body_memory);  // shared by every connection
  ThreadGroup group(options.max_connections);
  for (;;) {
    // Back-pressure: at the limit, new clients wait in the kernel's queue. The wait is cut
    // short now and then to notice a stop request.
    if (!group.wait_for_room(std::chrono::milliseconds(100))) {
      if (StopSignal::requested()) break;
      continue;
    }
    Socket connection = accept_connection(listener, StopSignal::fd(), options.limits.timeout);
    if (!connection) break;  // a stop was requested (or poll() failed)
    ConnectionTask task{std::move(connection), &options, &budget};
    if (!group.spawn(task)) {
      std::fprintf(stderr, "cannot start a thread: answered 503, retrying in 100 ms\n");
      refuse_connection(task.connection);
      StopSignal::requested(std::chrono::milliseconds(100));
    }
  }
  listener = Socket();  // stop accepting: new clients are refused instead of queued
  group.cancel();       // idle connections close now; responses under way are finished
  if (!group.wait_for(options.shutdown_timeout)) {
    // The group cannot be destroyed while its threads run, so the process ends around them.
    std::fprintf(stderr, "shutdown: connections still open after %lld ms; exiting without them\n",
                 static_cast<long long>(options.shutdown_timeout.count()));
    std::fflush(stdout);
    std::_Exit(1);
  }
  return StopSignal::requested() ? 0 : 1;  // the loop ends on a stop, or when poll() fails
}
// ANCHOR_END: run_server

// ---- main ----

// ANCHOR: usage
constexpr std::string_view kUsage =
    "usage: main_async [--host ADDR] [--port N] [--timeout-ms N] [--max-body N] [--buffer-size N]\n"
    "                  [--max-connections N] [--body-memory N] [--shutdown-timeout-ms N]\n"
    "                  [--no-keepalive] [--log-requests]\n";

constexpr std::string_view kHelp =
    "An HTTP/1.1 server with a thread per connection and keep-alive.\n"
    "GET and HEAD answer \"Hello World!\", POST echoes the body, other methods get 405.\n"
    "\n"
    "  --host ADDR      address to listen on (default 127.0.0.1)\n"
    "  --port N         port to listen on, 0 for any free one (default 8000)\n"
    "  --timeout-ms N   a request head must arrive within N ms (default 5000), and then its\n"
    "                   body within N ms plus 1 s per 64 KiB; else 408 and close\n"
    "  --max-body N     largest request body in bytes; larger gets 413 (default 1048576)\n"
    "  --buffer-size N  read and write buffer per connection; a request head must fit\n"
    "                   (default 4096, the tutorial's untuned step is 1024)\n"
    "  --max-connections N  connections served at once; more wait to be accepted (default 10000)\n"
    "  --body-memory N  bytes all request bodies together may hold; a body that finds too\n"
    "                   little left gets 503 (default 67108864)\n"
    "  --shutdown-timeout-ms N  after SIGINT/SIGTERM, how long responses under way may take\n"
    "                   before the server exits without them (default 3000); a second signal\n"
    "                   exits at once\n"
    "  --no-keepalive   close every connection after one response (the tutorial's step before)\n"
    "  --log-requests   print one line per request to stderr (the tutorial's step before)\n"
    "  --help           show this help\n";
// ANCHOR_END: usage

// ANCHOR: parse_options
// Parses "--flag value" and "--flag=value". On a bad flag or value: says which, returns nullopt.
std::optional<Options> parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i], value;
    bool has_value = false;
    if (std::size_t equals = flag.find('='); flag.starts_with("--") && equals != std::string_view::npos) {
      value = flag.substr(equals + 1);
      flag = flag.substr(0, equals);
      has_value = true;
    }
    auto take_value = [&] {
      if (!has_value && i + 1 < argc) {
        value = argv[++i];
        has_value = true;
      }
      return has_value;
    };
    auto take_number = [&](std::uint64_t low, std::uint64_t high) -> std::optional<std::uint64_t> {
      if (!take_value()) return std::nullopt;
      auto number = parse_decimal(value);
      if (!number || *number < low || *number > high) return std::nullopt;
      return number;
    };
    auto invalid = [&] {
      if (has_value) {
        std::fprintf(stderr, "invalid value for %.*s: '%.*s'\n", static_cast<int>(flag.size()), flag.data(),
                     static_cast<int>(value.size()), value.data());
      } else {
        std::fprintf(stderr, "missing value for %.*s\n", static_cast<int>(flag.size()), flag.data());
      }
      return std::nullopt;
    };

    if (flag == "--help") {
      std::fputs(kUsage.data(), stdout);
      std::fputs(kHelp.data(), stdout);
      std::exit(0);
    } else if (flag == "--host") {
      if (!take_value() || value.empty()) return invalid();
      options.host = value;
    } else if (flag == "--port") {
      auto port = take_number(0, 65535);
      if (!port) return invalid();
      options.port = static_cast<int>(*port);
    } else if (flag == "--timeout-ms") {
      auto ms = take_number(1, 24 * 3600 * 1000);
      if (!ms) return invalid();
      options.limits.timeout = std::chrono::milliseconds(*ms);
    } else if (flag == "--max-body") {
      auto bytes = take_number(0, std::uint64_t{1} << 40);
      if (!bytes) return invalid();
      options.limits.max_body = *bytes;
    // ANCHOR: async_flags
    } else if (flag == "--buffer-size") {
      auto bytes = take_number(kMinBufferSize, std::size_t{1} << 24);
      if (!bytes) return invalid();
      options.buffer_size = static_cast<std::size_t>(*bytes);
    } else if (flag == "--max-connections") {
      auto count = take_number(1, 1000000);
      if (!count) return invalid();
      options.max_connections = static_cast<std::size_t>(*count);
    } else if (flag == "--body-memory") {
      auto bytes = take_number(0, std::uint64_t{1} << 40);
      if (!bytes) return invalid();
      options.body_memory = *bytes;
    } else if (flag == "--shutdown-timeout-ms") {
      auto ms = take_number(0, 24 * 3600 * 1000);
      if (!ms) return invalid();
      options.shutdown_timeout = std::chrono::milliseconds(*ms);
    } else if (flag == "--no-keepalive" && !has_value) {
      options.keep_alive = false;
    } else if (flag == "--log-requests" && !has_value) {
      options.log_requests = true;
      // ANCHOR_END: async_flags
    } else {
      std::fprintf(stderr, "unknown option: %s\n", argv[i]);
      return std::nullopt;
    }
  }
  return options;
}
// ANCHOR_END: parse_options

}  // namespace

#ifndef HTTP_SERVER_NO_MAIN
// ANCHOR: main
int main(int argc, char** argv) {
  std::optional<Options> options = parse_options(argc, argv);
  if (!options) {
    std::fputs(kUsage.data(), stderr);
    return 2;
  }
  return run_server(*options);
}
// ANCHOR_END: main
#endif
