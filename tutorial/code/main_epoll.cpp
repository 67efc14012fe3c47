// main_epoll.cpp: the event-loop HTTP/1.1 server, the tutorial's sixth step. Linux only (epoll).
//
// main_async.cpp gives every connection a thread, which waits in recv() until its client
// speaks; between two requests the kernel switches threads, about once per request. Here one
// thread per core (a worker) serves all of its connections: it asks epoll which of them are
// ready, does the work each one's bytes allow, and never waits on any one of them. That is how
// nginx works, and what this file adds to main_async:
//   an event loop      one per worker; epoll_wait hands it every ready connection at once;
//   non-blocking I/O   a request head or body arrives in pieces, across wake-ups, so each
//                      connection keeps where it is in a small struct (Connection), and the
//                      body decoder resumes where the last piece ended;
//   timers             every connection's deadline in one sorted list per worker; epoll_wait
//                      sleeps until the first, so timeouts cost no system call;
//   pools              an idle connection holds no buffers: they go back to its worker's pool,
//                      and the next request takes them again without allocating.
// The HTTP layer that does not wait (parsing, the response, the application) is main.cpp's,
// word for word. Flags as main_async's, plus --workers N.
//
//   g++ -std=c++20 -O2 -pthread -o main_epoll main_epoll.cpp && ./main_epoll --port 8000
//   curl -i http://127.0.0.1:8000/
//
// The cost: more code, harder to follow, and a handler that blocks stalls every connection of
// its worker. It is not a production server: no TLS, no HTTP/2, no files.

// ANCHOR: includes
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

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
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>
// ANCHOR_END: includes

namespace {

// ---- Configuration ----

// ANCHOR: config
constexpr std::size_t kDefaultBufferSize = 4096;  // as main_async: fits typical request heads
constexpr std::size_t kMinBufferSize = 64;        // --buffer-size: at least a short request line
constexpr std::size_t kResponseHeadRoom = 512;    // the output buffer's least size: any response head fits
constexpr int kListenBacklog = 1024;  // connections the kernel queues until accept() takes them
constexpr int kDefaultPort = 8000;
constexpr int kDefaultTimeoutMs = 5000;              // idle keep-alive connections close after this
constexpr std::uint64_t kDefaultMaxBody = 1 << 20;   // 1 MiB: the echo keeps the body in memory
constexpr std::uint64_t kMinBodyRate = 64 * 1024;    // bytes/s: a body's deadline grows by 1 s per 64 KiB
constexpr std::size_t kKeptBodyCapacity = 64 * 1024;  // whole pages; beyond it, body memory goes back
constexpr std::uint64_t kDefaultBodyMemory = 64 << 20;  // 64 MiB for all bodies at once; beyond it, 503
constexpr int kDefaultShutdownTimeoutMs = 3000;      // after a stop, responses under way get this long
constexpr std::size_t kDefaultMaxConnections = 10000;  // back-pressure: beyond this, accept waits
// ANCHOR: epoll_config
constexpr int kMaxEvents = 512;                // ready connections one epoll_wait may hand a worker
constexpr std::size_t kPooledBuffersKept = 1024;  // per worker; beyond it, buffers given back are freed
constexpr auto kAcceptPause = std::chrono::milliseconds(100);  // at --max-connections, or out of descriptors
constexpr auto kLingerTime = std::chrono::milliseconds(500);   // see Worker::linger()
// ANCHOR_END: epoll_config

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
// Takes one waiting connection off the listener, or an empty Socket when there is none (or the
// client is already gone; errno says which). The new socket never blocks: a recv() or send()
// that would wait says EAGAIN instead, and the worker goes on with the next connection.
Socket accept_connection(const Socket& listener) {
  Socket connection(::accept4(listener.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (connection) {
    int one = 1;
    // Each response leaves in one write; Nagle's algorithm would only hold it back.
    ::setsockopt(connection.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return connection;
}
// ANCHOR_END: accept_connection

// ANCHOR: input
// ANCHOR: input_class
// What Input::receive() brought. Again: nothing yet (the socket would have to wait); Ended:
// the client closed or reset the connection.
enum class Received { Data, Again, NoRoom, Ended };

// main's Reader without the waiting: bytes arrive at the end (receive), the parser looks at
// what is buffered and consumes from the front. receive() takes what the socket has now and
// returns at once; the worker calls it when epoll says there is something to take.
class Input {
 public:
  Input() = default;
  explicit Input(std::span<char> buffer) : buffer_(buffer) {}
  // ANCHOR_END: input_class

  std::string_view buffered() const { return {buffer_.data() + start_, end_ - start_}; }
  void consume(std::size_t n) { start_ += n; }
  std::size_t capacity() const { return buffer_.size(); }

  // As Reader::keep(): the head's bytes stay in place, at the front, until release().
  std::string_view keep(std::size_t n) {
    if (start_ > 0) {
      std::memmove(buffer_.data(), buffer_.data() + start_, end_ - start_);
      end_ -= start_;
    }
    start_ = kept_ = n;
    return {buffer_.data(), n};
  }
  void release() { kept_ = 0; }

  // ANCHOR: input_receive
  // Whether receive() could append a byte: false when kept and unconsumed bytes fill the buffer.
  bool has_room() {
    make_room();
    return end_ < buffer_.size();
  }

  Received receive(int fd) {
    if (!has_room()) return Received::NoRoom;
    for (;;) {
      ssize_t got = ::recv(fd, buffer_.data() + end_, buffer_.size() - end_, 0);
      if (got > 0) {
        end_ += static_cast<std::size_t>(got);
        return Received::Data;
      }
      if (got < 0 && errno == EINTR) continue;
      return got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? Received::Again : Received::Ended;
    }
  }
  // ANCHOR_END: input_receive

 private:
  void make_room() {  // as Reader's
    if (start_ == end_) {
      start_ = end_ = kept_;
    } else if (end_ == buffer_.size() && start_ > kept_) {
      std::memmove(buffer_.data() + kept_, buffer_.data() + start_, end_ - start_);
      end_ -= start_ - kept_;
      start_ = kept_;
    }
  }

  std::span<char> buffer_;
  std::size_t start_ = 0;  // first byte not yet consumed
  std::size_t end_ = 0;    // one past the last byte received
  std::size_t kept_ = 0;   // consumed bytes before this are kept in place
};
// ANCHOR_END: input

// ANCHOR: writer
// ANCHOR: writer_class
// What Writer::send() managed. Partly: the socket took some, the rest waits for room (EPOLLOUT).
enum class Sent { All, Partly, Failed };

// A response is assembled in a buffer the caller owns, as in main, and send() gives the socket
// as much as it takes now. A piece too large for what is left of the buffer is not copied but
// sent from where it is: only a response body can be that large (any head fits in
// kResponseHeadRoom), write_response() writes it last, and the connection keeps its body until
// the response has gone.
class Writer {
 public:
  Writer() = default;
  explicit Writer(std::span<char> buffer) : buffer_(buffer) {}

  void write(std::string_view bytes) {
    if (bytes.empty()) return;  // its data() may be null, which memcpy must not be given
    if (bytes.size() > buffer_.size() - used_) {
      tail_ = bytes;  // the body, and the last piece of the response
      return;
    }
    std::memcpy(buffer_.data() + used_, bytes.data(), bytes.size());
    used_ += bytes.size();
  }
  // ANCHOR_END: writer_class

  void write_number(std::uint64_t value) {
    char digits[20];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
    write({digits, static_cast<std::size_t>(end - digits)});
  }

  // ANCHOR: writer_send
  bool empty() const { return sent_ == used_ && tail_.empty(); }

  // One writev() of the buffered bytes and the tail, again while the socket takes everything
  // and something is left.
  Sent send(int fd) {
    while (!empty()) {
      iovec parts[2] = {{buffer_.data() + sent_, used_ - sent_}, {const_cast<char*>(tail_.data()), tail_.size()}};
      ssize_t n = ::writev(fd, parts, 2);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? Sent::Partly : Sent::Failed;
      std::size_t from_buffer = std::min(static_cast<std::size_t>(n), used_ - sent_);
      sent_ += from_buffer;
      tail_.remove_prefix(static_cast<std::size_t>(n) - from_buffer);
      if (static_cast<std::size_t>(n) < parts[0].iov_len + parts[1].iov_len) return Sent::Partly;
    }
    sent_ = used_ = 0;
    return Sent::All;
  }

 private:
  std::span<char> buffer_;
  std::size_t used_ = 0;  // bytes written into the buffer
  std::size_t sent_ = 0;  // of those, bytes the socket has taken
  std::string_view tail_;  // a body sent from where it is, after the buffer
};
// ANCHOR_END: writer_send
// ANCHOR_END: writer

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
// chunked-body = *chunk last-chunk trailer-section CRLF (RFC 9112 7.1), decoded as it arrives.
// main reads it straight through, waiting wherever a byte is missing. Here each decode() takes
// what it can from the bytes buffered now (whole lines, and chunk data as far as it goes),
// remembers where it stopped, and goes on from there when more bytes have come. The rules are
// main's: extensions are checked and ignored; trailer fields are checked and dropped, and like
// a head they must fit in the read buffer.
class ChunkedDecoder {
 public:
  // OK when the body is complete, nullopt while more bytes are needed, else the status to
  // answer with.
  std::optional<Status> decode(Input& input, Body& body, const Limits& limits) {
    for (;;) {
      if (expect_ == Expect::Data) {
        std::string_view piece = input.buffered().substr(0, static_cast<std::size_t>(
            std::min<std::uint64_t>(left_, input.buffered().size())));
        body.append(piece);
        input.consume(piece.size());
        left_ -= piece.size();
        if (left_ > 0) return more(input, Status::HeaderFieldsTooLarge);  // the head filled the buffer
        expect_ = Expect::DataEnd;
      }
      std::string_view line;
      if (std::optional<Status> taken = take_line(input, line); taken != Status::OK) {
        return taken ? taken : more(input, expect_ == Expect::Trailer ? Status::HeaderFieldsTooLarge
                                                                      : Status::BadRequest);
      }
      switch (expect_) {
        case Expect::Size: {
          std::uint64_t size = 0;
          auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
          if (ec != std::errc() || end == line.data() ||
              !is_chunk_extension({end, static_cast<std::size_t>(line.data() + line.size() - end)})) {
            return Status::BadRequest;
          }
          if (size == 0) {
            expect_ = Expect::Trailer;
            break;
          }
          if (size > limits.max_body - declared_) return Status::ContentTooLarge;
          if (!body.reserve(size)) return Status::ServiceUnavailable;
          declared_ += size;
          left_ = size;
          expect_ = Expect::Data;
          break;
        }
        case Expect::DataEnd:
          if (!line.empty()) return Status::BadRequest;  // chunk-data must be followed by CRLF
          expect_ = Expect::Size;
          break;
        case Expect::Trailer: {
          if (line.empty()) return Status::OK;
          std::string_view name, value;
          trailer_bytes_ += line.size() + 2;
          if (trailer_bytes_ > input.capacity()) return Status::HeaderFieldsTooLarge;
          if (!split_field_line(line, name, value)) return Status::BadRequest;
          break;
        }
        case Expect::Data: break;  // handled above
      }
    }
  }

  // The chunk sizes so far: they extend the body's deadline (see extended()).
  std::uint64_t declared() const { return declared_; }

 private:
  // A line ending in CRLF, without it, consumed: OK; nullopt while its end has not arrived.
  static std::optional<Status> take_line(Input& input, std::string_view& line) {
    std::string_view data = input.buffered();
    std::size_t end = data.find('\n');
    if (end == std::string_view::npos) return std::nullopt;
    if (end == 0 || data[end - 1] != '\r') return Status::BadRequest;
    line = data.substr(0, end - 1);
    if (line.find('\r') != std::string_view::npos) return Status::BadRequest;
    input.consume(end + 1);
    return Status::OK;
  }

  // More bytes are needed: nullopt, or `too_long` when the buffer has no room for them.
  static std::optional<Status> more(Input& input, Status too_long) {
    if (input.has_room()) return std::nullopt;
    return too_long;
  }

  enum class Expect { Size, Data, DataEnd, Trailer };
  Expect expect_ = Expect::Size;
  std::uint64_t left_ = 0;      // Data: bytes of this chunk still to come
  std::uint64_t declared_ = 0;  // the sum of the chunk sizes so far
  std::size_t trailer_bytes_ = 0;
};
// ANCHOR_END: chunked

// ANCHOR: assembly
// A request being read, between wake-ups: where main's read_request_head() and read_body()
// keep their place in local variables and wait, an event loop keeps it here and returns.
struct Assembly {
  enum class Step { Head, Body } step = Step::Head;
  HeadScan scan;
  bool request_line_checked = false;
  ParsedHead head;  // from Step::Body on; its views point into the input's kept head
  std::uint64_t body_left = 0;  // Content-Length bytes still to come
  ChunkedDecoder chunked;
  Deadline started;   // Step::Body: when the body began; its deadline grows from there
  Deadline deadline;  // by when the next bytes must have come
};

// Reads a request from the bytes buffered so far, as far as they go. Returns nullopt while
// more bytes are needed, else the status to answer with: OK when the head and body are
// complete. `now` starts the body's deadline. An "Expect: 100-continue" is answered into
// `writer`, for the caller to send.
std::optional<Status> assemble_request(Assembly& a, Input& input, Writer& writer, Body& body,
                                       const Limits& limits, Deadline now) {
  if (a.step == Assembly::Step::Head) {
    // RFC 9112 2.2: empty lines before a request line are ignored.
    if (a.scan.length == 0) {
      while (input.buffered().starts_with("\r\n")) input.consume(2);
    }
    a.scan = scan_request_head(input.buffered(), a.scan);
    if (a.scan.state == HeadScan::Invalid) return Status::BadRequest;
    if (a.scan.state == HeadScan::Incomplete) {
      // As in main: a request line that has ended but cannot be one is answered now.
      if (a.scan.line_start > 0 && !a.request_line_checked) {
        Request unused;
        std::string_view line = input.buffered().substr(0, input.buffered().find("\r\n"));
        if (parse_request_line(line, unused) == Status::BadRequest) return Status::BadRequest;
        a.request_line_checked = true;
      }
      if (input.has_room()) return std::nullopt;
      return a.scan.line_start > 0 ? Status::HeaderFieldsTooLarge : Status::UriTooLong;
    }
    a.head = parse_request_head(input.keep(a.scan.length));
    const Request& request = a.head.request;
    if (a.head.status != Status::OK) return a.head.status;
    // As main's read_body(), up to the first byte of the body.
    if (!request.chunked && request.content_length > limits.max_body) return Status::ContentTooLarge;
    if (!request.chunked && request.content_length == 0) return Status::OK;
    if (!request.chunked && !body.reserve(request.content_length)) return Status::ServiceUnavailable;
    if (request.expect_continue) writer.write("HTTP/1.1 100 Continue\r\n\r\n");
    a.step = Assembly::Step::Body;
    a.body_left = request.content_length;
    a.started = now + limits.timeout;
    a.deadline = extended(a.started, request.chunked ? 0 : request.content_length);
  }

  if (a.head.request.chunked) {
    std::optional<Status> decoded = a.chunked.decode(input, body, limits);
    a.deadline = extended(a.started, a.chunked.declared());
    return decoded;
  }
  std::string_view piece = input.buffered().substr(0, static_cast<std::size_t>(
      std::min<std::uint64_t>(a.body_left, input.buffered().size())));
  body.append(piece);
  input.consume(piece.size());
  a.body_left -= piece.size();
  if (a.body_left == 0) return Status::OK;
  if (input.has_room()) return std::nullopt;
  return Status::HeaderFieldsTooLarge;  // the head filled the buffer
}
// ANCHOR_END: assembly

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

// ---- Event loop ----

// ANCHOR: options
struct Options {
  std::string host = "127.0.0.1";
  int port = kDefaultPort;
  Limits limits{kDefaultMaxBody, std::chrono::milliseconds(kDefaultTimeoutMs)};
  std::size_t buffer_size = kDefaultBufferSize;
  std::size_t max_connections = kDefaultMaxConnections;
  std::uint64_t body_memory = kDefaultBodyMemory;
  std::chrono::milliseconds shutdown_timeout{kDefaultShutdownTimeoutMs};
  unsigned workers = 0;  // 0: one per online CPU
  bool keep_alive = true;
  bool log_requests = false;
};
// ANCHOR_END: options

// ANCHOR: slots
// --max-connections across the whole server: a worker takes a slot before it accepts and
// gives it back when the connection closes. (BodyBudget does the same for bytes.)
class ConnectionSlots {
 public:
  explicit ConnectionSlots(std::size_t slots) : left_(slots) {}
  bool take() {
    std::size_t left = left_.load();
    do {
      if (left == 0) return false;
    } while (!left_.compare_exchange_weak(left, left - 1));
    return true;
  }
  void give_back() { ++left_; }

 private:
  std::atomic<std::size_t> left_;
};
// ANCHOR_END: slots

// ANCHOR: buffers
// What a connection needs only while a request is under way: its input and output buffers and
// its body. A worker keeps the sets its idle connections gave back, and hands them out again.
struct Buffers {
  explicit Buffers(BodyBudget& budget) : body(budget) {}
  std::unique_ptr<char[]> input, output;
  Body body;
  Buffers* next = nullptr;  // in the pool
};

class BufferPool {
 public:
  BufferPool(std::size_t input_size, BodyBudget& budget)
      : input_size_(input_size), output_size_(std::max(input_size, kResponseHeadRoom)), budget_(budget) {}
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool() {
    while (free_ != nullptr) delete std::exchange(free_, free_->next);
  }

  // A set from the pool, or a new one; nullptr when there is no memory for one.
  Buffers* take() {
    if (free_ != nullptr) {
      --kept_;
      return std::exchange(free_, free_->next);
    }
    std::unique_ptr<Buffers> buffers(new (std::nothrow) Buffers(budget_));
    if (!buffers) return nullptr;
    // Not zero-filled: recv() and the responses write every byte before it is read.
    buffers->input.reset(new (std::nothrow) char[input_size_]);
    buffers->output.reset(new (std::nothrow) char[output_size_]);
    return buffers->input && buffers->output ? buffers.release() : nullptr;
  }
  void give_back(Buffers* buffers) {
    buffers->body.clear();
    if (kept_ == kPooledBuffersKept) return delete buffers;
    buffers->next = std::exchange(free_, buffers);
    ++kept_;
  }
  std::span<char> input(Buffers& b) const { return {b.input.get(), input_size_}; }
  std::span<char> output(Buffers& b) const { return {b.output.get(), output_size_}; }

 private:
  const std::size_t input_size_, output_size_;
  BodyBudget& budget_;
  Buffers* free_ = nullptr;
  std::size_t kept_ = 0;
};
// ANCHOR_END: buffers

// ANCHOR: connection
// Where a connection is. A thread keeps this in where it waits (in which recv(), in which
// function); an event loop returns after every piece of work, so it is written down here.
enum class Phase {
  Idle,       // between requests, nothing buffered: it holds no buffers
  Reading,    // a request is arriving (its head or body)
  Sending,    // a response is going out; the rest waits for room in the socket (EPOLLOUT)
  Lingering,  // answered and closing: discarding what the client still sends
  Closed,     // its descriptor is closed; its struct is reused after this wake-up
};

struct Connection {
  Socket socket;
  Phase phase = Phase::Idle;
  bool answered = false;             // the response to the request under way is written
  bool close_after_sending = false;  // that response is the last one
  bool linger_after_sending = false;  // and the client may still send something
  Buffers* buffers = nullptr;  // from the pool, while not Idle
  Input input;
  Writer writer;
  Assembly assembly;
  Deadline deadline;                                 // see Deadlines
  Connection* earlier = nullptr, *later = nullptr;  // in the worker's Deadlines list
};
// ANCHOR_END: connection

// ANCHOR: deadlines
// Every open connection's deadline, soonest first: a doubly linked list through the
// connections themselves, so that moving one costs no allocation and no system call. Almost
// every deadline set is "now + the timeout", later than all before it, so an insertion looks
// at the last entry and stops. Only a body's longer deadline goes further back, and the next
// "now + the timeout" walks back past it: many uploads at once make insertions slower.
class Deadlines {
 public:
  void set(Connection& c, Deadline deadline) {
    remove(c);
    c.deadline = deadline;
    Connection* before = last_;
    while (before != nullptr && before->deadline > deadline) before = before->earlier;
    c.earlier = before;
    c.later = before != nullptr ? std::exchange(before->later, &c) : std::exchange(first_, &c);
    (c.later != nullptr ? c.later->earlier : last_) = &c;
  }
  void remove(Connection& c) {
    if (c.earlier == nullptr && first_ != &c) return;  // not in the list
    (c.earlier != nullptr ? c.earlier->later : first_) = c.later;
    (c.later != nullptr ? c.later->earlier : last_) = c.earlier;
    c.earlier = c.later = nullptr;
  }
  Connection* first() const { return first_; }

 private:
  Connection* first_ = nullptr;
  Connection* last_ = nullptr;
};

// Closed connections, kept for the next ones. A closed connection is in no deadline list, so
// its `later` link is free to chain them.
class Connections {
 public:
  void push(Connection* c) { c->later = std::exchange(top_, c); }
  Connection* pop() { return top_ != nullptr ? std::exchange(top_, top_->later) : nullptr; }
  void append(Connections& other) {
    while (Connection* c = other.pop()) push(c);
  }

 private:
  Connection* top_ = nullptr;
};
// ANCHOR_END: deadlines

// ANCHOR: log_request
// One line per answered request, e.g. "GET /index.html 200"; "-" for what a bad request lacked.
void log_request(const Request& request, Status status) {
  auto shown = [](std::string_view s) { return s.empty() ? std::string_view("-") : s; };
  std::string_view method = shown(request.method), target = shown(request.target);
  std::fprintf(stderr, "%.*s %.*s %d\n", static_cast<int>(method.size()), method.data(),
               static_cast<int>(target.size()), target.data(), static_cast<int>(status));
}
// ANCHOR_END: log_request

// ANCHOR: refuse
// Answers 503 to a connection the worker has no memory for, without reading its request.
// Best effort: one send() that does not wait.
void refuse_connection(const Socket& connection) {
  std::array<char, kResponseHeadRoom> buffer;
  Writer writer(buffer);
  write_response(writer, error_response(Status::ServiceUnavailable), true, Persistence::Close);
  writer.send(connection.fd());
}
// ANCHOR_END: refuse

// ANCHOR: worker
// ANCHOR: worker_class
// One event loop on one thread: it accepts connections from the shared listener and serves
// them, each one as far as its bytes allow, never waiting on any one of them.
class Worker {
 public:
  Worker(const Options& options, const Socket& listener, BodyBudget& bodies, ConnectionSlots& slots)
      : options_(options), listener_(listener), slots_(slots), pool_(options.buffer_size, bodies) {}
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker() {
    while (Connection* c = deadlines_.first()) {  // open: the shutdown deadline passed
      deadlines_.remove(*c);
      release_buffers(*c);
      delete c;
    }
    free_.append(closed_);
    while (Connection* c = free_.pop()) delete c;
  }
  // ANCHOR_END: worker_class

  // ANCHOR: worker_run
  // How a worker's loop ended.
  enum class Ended { Stopped, ShutdownTimedOut, Failed };

  // Serves until a stop is asked for and the responses under way have gone, or until the
  // shutdown deadline passes with some still going.
  Ended run() {
    epoll_ = Socket(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_ || !watch(StopSignal::fd(), &kStopMark, EPOLLIN) || !start_accepting()) {
      std::fprintf(stderr, "epoll: %s\n", std::strerror(errno));
      return Ended::Failed;
    }
    for (;;) {
      epoll_event events[kMaxEvents];
      int ready = ::epoll_wait(epoll_.fd(), events, kMaxEvents, wait_ms());
      if (ready < 0 && errno != EINTR) {
        std::fprintf(stderr, "epoll_wait: %s\n", std::strerror(errno));
        return Ended::Failed;
      }
      now_ = Clock::now();
      for (int i = 0; i < ready; ++i) {
        void* mark = events[i].data.ptr;
        if (mark == &kListenerMark) {
          accept_one();
        } else if (mark == &kStopMark) {
          stop();
        } else {
          serve(*static_cast<Connection*>(mark));
        }
      }
      expire_deadlines();
      // Closed connections' structs are reused only now: an event later in this batch may
      // still have named one.
      free_.append(closed_);
      if (!accepting_ && !stopping_ && now_ >= resume_accepting_) start_accepting();
      if (stopping_ && open_ == 0) return Ended::Stopped;
      if (stopping_ && now_ >= shutdown_deadline_) return Ended::ShutdownTimedOut;  // ~Worker closes them
    }
  }
  // ANCHOR_END: worker_run

 private:
  // ANCHOR: watch
  static inline char kListenerMark, kStopMark;  // their addresses tag the two descriptors that are not connections

  bool watch(int fd, void* mark, std::uint32_t events, int operation = EPOLL_CTL_ADD) {
    epoll_event event{};
    event.events = events;
    event.data.ptr = mark;
    return ::epoll_ctl(epoll_.fd(), operation, fd, &event) == 0;
  }
  // ANCHOR_END: watch

  // ANCHOR: wait_ms
  // How long epoll_wait may sleep: until the first deadline (rounded up, so that it has passed
  // on waking), or while accepting is paused, at most until it resumes.
  int wait_ms() const {
    std::optional<Deadline> until;
    if (Connection* first = deadlines_.first()) until = first->deadline;
    if (!accepting_ && !stopping_) until = std::min(until.value_or(resume_accepting_), resume_accepting_);
    if (stopping_) until = std::min(until.value_or(shutdown_deadline_), shutdown_deadline_);
    if (!until) return -1;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(*until - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 24 * 3600 * 1000));
  }
  // ANCHOR_END: wait_ms

  // ANCHOR: accept
  // The listener is in every worker's epoll with EPOLLEXCLUSIVE: a new connection wakes one
  // worker that is waiting, not all of them. Not evenly, though: the first waiting worker in
  // the listener's queue wakes, so one that waits while a burst of clients arrives can take
  // them all (a listener per worker with SO_REUSEPORT would spread them; see chapter 13). One
  // accept per wake-up; if more are queued, epoll says so again.
  bool start_accepting() {
    accepting_ = watch(listener_.fd(), &kListenerMark, EPOLLIN | EPOLLEXCLUSIVE);
    return accepting_;
  }
  void pause_accepting() {  // new clients wait in the kernel's queue meanwhile
    if (accepting_) ::epoll_ctl(epoll_.fd(), EPOLL_CTL_DEL, listener_.fd(), nullptr);
    accepting_ = false;
    resume_accepting_ = now_ + kAcceptPause;
  }

  void accept_one() {
    if (stopping_) return;  // the listener's event came in the same batch as the stop
    if (!slots_.take()) return pause_accepting();  // --max-connections: until one closes
    Socket socket = accept_connection(listener_);
    if (!socket) {
      slots_.give_back();
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        std::fprintf(stderr, "accept: %s; retrying in 100 ms\n", std::strerror(errno));
        pause_accepting();
      }
      return;  // EAGAIN (another worker took it), ECONNABORTED...: nothing to do
    }
    Connection* c = free_.pop();
    if (c == nullptr) c = new (std::nothrow) Connection;
    if (c == nullptr || !watch(socket.fd(), c, EPOLLIN)) {
      if (c != nullptr) free_.push(c);
      slots_.give_back();
      return refuse_connection(socket);
    }
    c->socket = std::move(socket);
    c->phase = Phase::Idle;
    c->answered = c->close_after_sending = false;
    ++open_;
    deadlines_.set(*c, now_ + options_.limits.timeout);
  }

  // ANCHOR_END: accept

  // ANCHOR: serve
  // ANCHOR: serve_event
  // A connection is ready: it has bytes for us, or room for ours, or has gone.
  void serve(Connection& c) {
    switch (c.phase) {
      case Phase::Closed: return;  // closed earlier in this wake-up
      case Phase::Lingering: return linger(c);
      case Phase::Sending:
        send(c);
        if (c.phase == Phase::Reading) advance(c);  // the next request may be buffered already
        return;
      case Phase::Idle:
        if (!start_request(c)) return;
        break;
      case Phase::Reading: break;
    }
    switch (c.input.receive(c.socket.fd())) {
      case Received::Data: return advance(c);
      case Received::Again: return;
      case Received::NoRoom: return advance(c);  // cannot happen: advance() leaves room, or answers
      case Received::Ended: return close(c);     // nobody left to answer
    }
  }

  // Takes buffers from the pool for the request that is arriving.
  bool start_request(Connection& c) {
    c.buffers = pool_.take();
    if (c.buffers == nullptr) {
      refuse_connection(c.socket);
      close(c);
      return false;
    }
    c.input = Input(pool_.input(*c.buffers));
    c.writer = Writer(pool_.output(*c.buffers));
    c.phase = Phase::Reading;
    return true;
  }
  // ANCHOR_END: serve_event

  // ANCHOR: advance
  // Uses the bytes buffered so far: a request, or several pipelined ones, as far as they go.
  void advance(Connection& c) {
    while (c.phase == Phase::Reading) {
      Assembly& a = c.assembly;
      std::optional<Status> status =
          assemble_request(a, c.input, c.writer, c.buffers->body, options_.limits, now_);
      if (!status) {
        // A body has begun, or a chunk has made its deadline later.
        if (a.step == Assembly::Step::Body && a.deadline != c.deadline) deadlines_.set(c, a.deadline);
        if (!c.writer.empty()) send(c);  // 100 Continue
        return;
      }
      answer(c, *status);
    }
  }

  // Writes the response to the request assembled (or the error that ended it) and sends it.
  void answer(Connection& c, Status status) {
    const Request& request = c.assembly.head.request;
    const Response response = status == Status::OK ? handle(request, c.buffers->body.bytes()) : error_response(status);
    const bool keep_alive = options_.keep_alive && !stopping_ && request.keep_alive && response.status < Status::BadRequest;
    Persistence persistence = !keep_alive                 ? Persistence::Close
                              : request.minor_version == 0 ? Persistence::KeepAlive10
                                                           : Persistence::KeepAlive;
    write_response(c.writer, response, request.method != "HEAD", persistence);
    if (options_.log_requests) log_request(request, response.status);
    c.answered = true;
    c.close_after_sending = !keep_alive;
    // A client that said "close" and was answered in full sends nothing more (RFC 9112 9.6):
    // its connection closes at once, as nginx's do, without the linger's two system calls and
    // its wait. Any other close lingers.
    c.linger_after_sending = request.keep_alive || response.status >= Status::BadRequest || !c.input.buffered().empty();
    send(c);
  }
  // ANCHOR_END: advance
  // ANCHOR_END: serve

  // ANCHOR: send
  // Sends what the writer holds. When it has all gone: the next request, or the close. When
  // the socket is full: wait for EPOLLOUT, and read nothing meanwhile.
  void send(Connection& c) {
    const bool was_sending = c.phase == Phase::Sending;
    switch (c.writer.send(c.socket.fd())) {
      case Sent::Failed: return close(c);  // the client is gone
      case Sent::Partly:
        if (!was_sending) watch(c.socket.fd(), &c, EPOLLOUT, EPOLL_CTL_MOD);
        c.phase = Phase::Sending;
        deadlines_.set(c, now_ + options_.limits.timeout);  // as SO_SNDTIMEO: for each bit of progress
        return;
      case Sent::All: break;
    }
    if (was_sending) watch(c.socket.fd(), &c, EPOLLIN, EPOLL_CTL_MOD);
    if (stopping_) return close(c);
    if (!c.answered) {  // what went was a 100 Continue: the body follows
      c.phase = Phase::Reading;
      deadlines_.set(c, c.assembly.deadline);
      return;
    }
    if (c.close_after_sending) return c.linger_after_sending ? linger_start(c) : close(c);
    next_request(c);
  }

  // The keep-alive loop, one turn: the request is done. Its phase says what comes next:
  // Reading when the next request is buffered already (pipelined), else Idle.
  void next_request(Connection& c) {
    c.input.release();
    c.buffers->body.clear();
    c.assembly = Assembly();
    c.answered = false;
    deadlines_.set(c, now_ + options_.limits.timeout);
    if (c.input.buffered().empty()) {
      pool_.give_back(std::exchange(c.buffers, nullptr));  // idle: it holds nothing
      c.input = Input();
      c.writer = Writer();
      c.phase = Phase::Idle;
      return;
    }
    c.phase = Phase::Reading;
  }
  // ANCHOR_END: send

  // ANCHOR: linger
  // As main's linger_before_close(): FIN, then read and discard until the client closes too,
  // for at most kLingerTime. The buffers go back at once; what is discarded is read into a
  // buffer every lingering connection of this worker shares.
  void linger_start(Connection& c) {
    ::shutdown(c.socket.fd(), SHUT_WR);
    release_buffers(c);
    c.phase = Phase::Lingering;
    deadlines_.set(c, now_ + kLingerTime);
    linger(c);
  }
  void linger(Connection& c) {
    for (int reads = 0; reads < 16; ++reads) {  // then the others' turn; epoll says if more is left
      ssize_t got = ::recv(c.socket.fd(), discard_.data(), discard_.size(), 0);
      if (got > 0) continue;
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      return close(c);  // the client has closed too (or reset)
    }
  }
  // ANCHOR_END: linger

  // ANCHOR: expire
  // The deadlines that have passed, soonest first. A request that has begun gets 408, as in
  // main; an idle connection, or one that cannot take our bytes, just closes.
  void expire_deadlines() {
    while (Connection* c = deadlines_.first()) {
      if (c->deadline > now_) return;
      deadlines_.remove(*c);
      const bool request_begun = c->phase == Phase::Reading &&
                                 (c->assembly.step == Assembly::Step::Body || !c->input.buffered().empty());
      if (request_begun) {
        answer(*c, Status::RequestTimeout);
      } else {
        close(*c);
      }
    }
  }
  // ANCHOR_END: expire

  // ANCHOR: stop
  // SIGINT or SIGTERM: stop accepting; close every connection not sending a response now, and
  // those sending once their response has gone.
  void stop() {
    stopping_ = true;
    shutdown_deadline_ = now_ + options_.shutdown_timeout;
    ::epoll_ctl(epoll_.fd(), EPOLL_CTL_DEL, StopSignal::fd(), nullptr);  // it stays readable
    if (accepting_) ::epoll_ctl(epoll_.fd(), EPOLL_CTL_DEL, listener_.fd(), nullptr);
    accepting_ = false;
    // On Linux this ends the listening (the first worker to stop does it; the rest get ENOTCONN),
    // so that new clients are refused instead of queued while the responses finish. The
    // descriptor itself is closed by run_server, after every worker has let go of it.
    ::shutdown(listener_.fd(), SHUT_RDWR);
    for (Connection* c = deadlines_.first(); c != nullptr;) {  // every open connection is in it
      Connection* next = c->later;
      if (c->phase != Phase::Sending) close(*c);
      c = next;
    }
  }
  // ANCHOR_END: stop

  // ANCHOR: close
  void release_buffers(Connection& c) {
    if (c.buffers != nullptr) pool_.give_back(std::exchange(c.buffers, nullptr));
    c.input = Input();
    c.writer = Writer();
  }

  void close(Connection& c) {
    deadlines_.remove(c);
    release_buffers(c);
    c.assembly = Assembly();
    c.socket = Socket();  // closing the descriptor also takes it out of the epoll
    c.phase = Phase::Closed;
    closed_.push(&c);
    --open_;
    slots_.give_back();
    if (!accepting_ && !stopping_) start_accepting();  // a slot is free again
  }
  // ANCHOR_END: close

  // ANCHOR: worker_fields
  const Options& options_;
  const Socket& listener_;
  ConnectionSlots& slots_;
  BufferPool pool_;
  Socket epoll_;
  Deadlines deadlines_;
  Connections free_;    // closed before this wake-up: ready for reuse
  Connections closed_;  // closed in this wake-up
  std::size_t open_ = 0;
  Deadline now_ = Clock::now();  // read once per wake-up
  bool accepting_ = false;
  Deadline resume_accepting_;
  bool stopping_ = false;
  Deadline shutdown_deadline_;
  std::array<char, 4096> discard_;  // what lingering connections read, unread
  // ANCHOR_END: worker_fields
};
// ANCHOR_END: worker

// ---- Server ----

// ANCHOR: run_server
int run_server(const Options& options) {
  if (!StopSignal::install()) return 1;
  // A client that closes early must cost a failed send(), not the process.
  ::signal(SIGPIPE, SIG_IGN);
  Socket listener = listen_on(options.host, options.port);
  if (!listener) return 1;
  // The workers take connections as epoll says they are there: accept() must never wait.
  if (::fcntl(listener.fd(), F_SETFL, O_NONBLOCK) != 0) {
    std::fprintf(stderr, "fcntl O_NONBLOCK: %s\n", std::strerror(errno));
    return 1;
  }
  unsigned count = options.workers;
  if (count == 0) count = static_cast<unsigned>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  std::printf("Listening on %s\n", local_url(listener).c_str());
  std::fflush(stdout);

  BodyBudget bodies(options.body_memory);      // shared by every worker
  ConnectionSlots slots(options.max_connections);
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<Worker::Ended> ended(count, Worker::Ended::Stopped);
  // The workers' threads are detached and counted, as main_async's are: a second stop signal
  // ends the process (_exit) with workers still running, and a joinable thread that nobody
  // joined counts as leaked. A worker's last act is under the lock, so that once the count is
  // 0, none touches this frame again.
  std::mutex mutex;
  std::condition_variable finished;
  unsigned running = 0;
  try {
    for (unsigned i = 0; i < count; ++i) {
      workers.push_back(std::make_unique<Worker>(options, listener, bodies, slots));
      std::lock_guard lock(mutex);
      std::thread([&, i, worker = workers.back().get()] {
        const Worker::Ended end = worker->run();
        std::lock_guard lock(mutex);
        ended[i] = end;
        --running;
        finished.notify_all();
      }).detach();
      ++running;
    }
  } catch (const std::exception& e) {  // no thread or no memory, before the first request
    std::fprintf(stderr, "cannot start %u workers: %s\n", count, e.what());
    std::fflush(stdout);
    std::_Exit(1);
  }
  std::unique_lock lock(mutex);
  finished.wait(lock, [&running] { return running == 0; });
  if (std::ranges::count(ended, Worker::Ended::ShutdownTimedOut) > 0) {
    std::fprintf(stderr, "shutdown: connections still open after %lld ms; exiting without them\n",
                 static_cast<long long>(options.shutdown_timeout.count()));
  }
  return std::ranges::count(ended, Worker::Ended::Stopped) == count ? 0 : 1;
}
// ANCHOR_END: run_server

// ---- main ----

// ANCHOR: usage
constexpr std::string_view kUsage =
    "usage: main_epoll [--host ADDR] [--port N] [--timeout-ms N] [--max-body N] [--buffer-size N]\n"
    "                  [--max-connections N] [--body-memory N] [--shutdown-timeout-ms N]\n"
    "                  [--workers N] [--no-keepalive] [--log-requests]\n";

constexpr std::string_view kHelp =
    "An HTTP/1.1 server with an event loop (epoll) per worker thread, and keep-alive.\n"
    "GET and HEAD answer \"Hello World!\", POST echoes the body, other methods get 405.\n"
    "\n"
    "  --host ADDR      address to listen on (default 127.0.0.1)\n"
    "  --port N         port to listen on, 0 for any free one (default 8000)\n"
    "  --timeout-ms N   a request head must arrive within N ms (default 5000), and then its\n"
    "                   body within N ms plus 1 s per 64 KiB; else 408 and close\n"
    "  --max-body N     largest request body in bytes; larger gets 413 (default 1048576)\n"
    "  --buffer-size N  read and write buffer per connection with a request under way; a\n"
    "                   request head must fit (default 4096)\n"
    "  --max-connections N  connections served at once; more wait to be accepted (default 10000)\n"
    "  --body-memory N  bytes all request bodies together may hold; a body that finds too\n"
    "                   little left gets 503 (default 67108864)\n"
    "  --shutdown-timeout-ms N  after SIGINT/SIGTERM, how long responses under way may take\n"
    "                   before the server exits without them (default 3000); a second signal\n"
    "                   exits at once\n"
    // ANCHOR: usage_flags
    "  --workers N      event loops, one thread each (default: one per online CPU)\n"
    "  --no-keepalive   close every connection after one response\n"
    "  --log-requests   print one line per request to stderr\n"
    // ANCHOR_END: usage_flags
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
    // ANCHOR: parse_workers
    } else if (flag == "--workers") {
      auto count = take_number(1, 1024);
      if (!count) return invalid();
      options.workers = static_cast<unsigned>(*count);
      // ANCHOR_END: parse_workers
    } else if (flag == "--no-keepalive" && !has_value) {
      options.keep_alive = false;
    } else if (flag == "--log-requests" && !has_value) {
      options.log_requests = true;
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
