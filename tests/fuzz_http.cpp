// fuzz_http.cpp: a libFuzzer target for the HTTP layer of one server file.
//
//   make fuzz                                   # both servers, FUZZ_SECONDS (60) each
//   build/fuzz/fuzz_http_async -max_total_time=60 build/fuzz/corpus_async tests/fuzz_corpus
//   build/fuzz/fuzz_http_async crash-1234...    # replay one input
//
// Compiled once per server file: -DFUZZ_BLOCKING includes main.cpp, otherwise main_async.cpp.
// Each input is one conversation. The server's own Reader, Writer and serve_request() run the
// keep-alive loop over it, as serve_connection() does; only the other end of the socket is
// simulated, in memory: recv() hands out the client's bytes piece by piece (as much of a piece
// as fits), poll() says whether bytes wait, send() collects the response. The server's clock is
// simulated too: time passes only while the client is silent, so a deadline passes exactly
// when the client has stopped sending, however busy the machine. Then every invariant below is
// checked; a broken one aborts, which libFuzzer reports as a crash, with the input.
//
//   - The server never asks recv() to write outside its read buffer, and the method and target
//     it reports point into that buffer (AddressSanitizer watches every other byte).
//   - Every answered request gets exactly one well-formed response (maybe after a 100 Continue):
//     the status it reports, Date, Content-Type, a Content-Length that matches the body (none
//     for HEAD), and "Connection: close" exactly when the connection then closes.
//   - A rejected request gets a 4xx or 5xx, and the connection closes after it.
//   - An accepted request (200, or 405 from the application) has a consistent body framing: an
//     independent, simpler reading of its head (Content-Length or chunked, never both, never
//     two different lengths, no bare CR or LF) ends exactly where the server stopped reading,
//     and a POST's echo is exactly the body that reading decodes.
//   - The server gives up without an answer only when the client has gone: it sent everything
//     and closed or fell silent, or it stopped reading.
//
// Input layout (tests/fuzz_corpus holds examples):
//   byte 0     options: bit 0: the client closes after its last byte (else it falls silent
//              and the timeout ends the conversation); bit 1: keep-alive allowed; bit 2:
//              --max-body 64 (else 1 MiB); bit 3: the client stops reading after byte 1 * 16
//              response bytes; bit 4: the bodies of all requests may hold 32 bytes at most
//              (else 1 GiB); bit 5: send() takes a few bytes at a time;
//              bits 6-7: main_async's buffer size: 4096, 64, 100 or 1024 (main: always 1024)
//   byte 1     with bit 3: how much of the response the client reads, in 16-byte units
//   byte 2     K: how many piece lengths follow (K % 16; 0: the bytes come in one piece)
//   K bytes    piece lengths, used in turn, again and again (0 stands for 256)
//   the rest   the bytes the client sends
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

// The simulated peer, declared before the server file so that its calls can be sent here.
ssize_t fuzz_recv(int fd, void* buffer, std::size_t length, int flags);
ssize_t fuzz_send(int fd, const void* bytes, std::size_t length, int flags);
int fuzz_poll(pollfd* fds, nfds_t count, int timeout_ms);

// The simulated clock. The server's Clock is std::chrono::steady_clock, which the macro below
// turns into this one; it has to live beside the real one, in namespace std::chrono, which
// only a test harness should ever do.
namespace fuzz {
std::chrono::nanoseconds simulated_time{0};
void let_time_pass(std::chrono::nanoseconds duration) { simulated_time += duration; }
}  // namespace fuzz
namespace std::chrono {
struct fuzz_steady_clock {
  using duration = nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = chrono::time_point<fuzz_steady_clock>;
  static constexpr bool is_steady = true;
  static time_point now() { return time_point(fuzz::simulated_time); }
};
}  // namespace std::chrono

#define recv fuzz_recv
#define send fuzz_send
#define poll fuzz_poll
#define steady_clock fuzz_steady_clock
#define HTTP_SERVER_NO_MAIN
#ifdef FUZZ_BLOCKING
#include "../main.cpp"
constexpr std::size_t kServerBufferSizes[] = {kBufferSize};
#else
#include "../main_async.cpp"
constexpr std::size_t kServerBufferSizes[] = {kDefaultBufferSize, kMinBufferSize, 100, 1024};
#endif
#undef recv
#undef send
#undef poll
#undef steady_clock

// main() is compiled out; taking these addresses keeps its helpers from counting as unused.
[[maybe_unused]] static const auto kUsesParseOptions = &parse_options;
[[maybe_unused]] static const auto kUsesRunServer = &run_server;

namespace fuzz {

// ---- the simulated client ----

struct Peer {
  int connection_fd = -1;
  std::string_view sends;              // everything the client sends
  std::vector<std::size_t> pieces;     // piece lengths, used in turn
  std::size_t delivered = 0;           // bytes of `sends` recv() has handed out
  std::size_t piece_index = 0;
  std::size_t piece_left = 0;          // bytes of the current piece not yet handed out
  bool closes = true;                  // after the last byte: EOF (else silence)
  std::size_t reads_at_most = SIZE_MAX;  // the client stops reading after this many bytes
  bool short_writes = false;
  std::string received;                // what the server sent
  bool send_failed = false;
  std::span<const char> read_buffer;   // where recv() may write
  int send_calls = 0;
};

Peer peer;
bool verbose = false;  // the replay's -v: print what each conversation came to

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "\nINVARIANT BROKEN: %s\n", what);
  if (!detail.empty()) std::fprintf(stderr, "  %.*s\n", static_cast<int>(std::min<std::size_t>(detail.size(), 600)),
                                    detail.data());
  std::fprintf(stderr, "  the server sent %zu bytes: %.*s\n", peer.received.size(),
               static_cast<int>(std::min<std::size_t>(peer.received.size(), 600)), peer.received.data());
  std::abort();
}

void check(bool condition, const char* what, std::string_view detail = {}) {
  if (!condition) fail(what, detail);
}

bool more_to_send() { return peer.delivered < peer.sends.size(); }

// A silent client: the server's wait ends only by its own deadline. poll() waits out its whole
// timeout; a recv() as long as SO_RCVTIMEO might, say a second.
void wait_in_silence(int timeout_ms) { let_time_pass(std::chrono::milliseconds(timeout_ms)); }

}  // namespace fuzz

ssize_t fuzz_recv(int fd, void* buffer, std::size_t length, int) {
  using fuzz::peer;
  fuzz::check(fd == peer.connection_fd, "recv() on a descriptor that is not the connection");
  const char* at = static_cast<const char*>(buffer);
  fuzz::check(at >= peer.read_buffer.data() && length <= peer.read_buffer.size() &&
                  at + length <= peer.read_buffer.data() + peer.read_buffer.size(),
              "recv() asked to write outside the read buffer");
  if (!fuzz::more_to_send()) {
    if (peer.closes) return 0;
    fuzz::wait_in_silence(1000);  // as SO_RCVTIMEO would
    errno = EAGAIN;
    return -1;
  }
  if (peer.piece_left == 0) {
    peer.piece_left = peer.pieces.empty() ? peer.sends.size() : peer.pieces[peer.piece_index++ % peer.pieces.size()];
  }
  const std::size_t count = std::min({length, peer.piece_left, peer.sends.size() - peer.delivered});
  std::memcpy(buffer, peer.sends.data() + peer.delivered, count);
  peer.delivered += count;
  peer.piece_left -= count;
  return static_cast<ssize_t>(count);
}

ssize_t fuzz_send(int fd, const void* bytes, std::size_t length, int) {
  using fuzz::peer;
  fuzz::check(fd == peer.connection_fd, "send() on a descriptor that is not the connection");
  if (peer.received.size() >= peer.reads_at_most) {
    peer.send_failed = true;
    errno = EPIPE;
    return -1;
  }
  std::size_t count = std::min(length, peer.reads_at_most - peer.received.size());
  if (peer.short_writes) count = std::min<std::size_t>(count, 1 + peer.send_calls % 13);
  ++peer.send_calls;
  peer.received.append(static_cast<const char*>(bytes), count);
  return static_cast<ssize_t>(count);
}

int fuzz_poll(pollfd* fds, nfds_t count, int timeout_ms) {
  using fuzz::peer;
  int ready = 0;
  for (nfds_t i = 0; i < count; ++i) {
    fds[i].revents = 0;
    if (fds[i].fd == peer.connection_fd && (fuzz::more_to_send() || peer.closes)) fds[i].revents = POLLIN;
    ready += fds[i].revents != 0;  // anything else (the wake-up descriptor) never becomes ready
  }
  if (ready == 0) fuzz::wait_in_silence(timeout_ms);
  return ready;
}

namespace fuzz {

// ---- reading what the server sent ----

std::optional<std::uint64_t> decimal(std::string_view digits) {
  if (digits.empty() || digits.size() > 19) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value;
}

struct SentResponse {
  int status = 0;
  bool says_close = false;
  std::string_view body;
};

// Reads one response from the front of `bytes` (consuming it), exactly as the servers write
// them; aborts if it is anything else.
SentResponse read_response(std::string_view& bytes, bool head_request) {
  SentResponse response;
  const std::size_t head_end = bytes.find("\r\n\r\n");
  check(head_end != std::string_view::npos, "a response without the end of its head", bytes);
  std::string_view head = bytes.substr(0, head_end + 2);
  check(head.starts_with("HTTP/1.1 ") && head.size() > 13 && head[12] == ' ', "a malformed status line", head);
  auto code = decimal(head.substr(9, 3));
  check(code.has_value(), "a status code that is not three digits", head);
  response.status = static_cast<int>(*code);
  head.remove_prefix(head.find("\r\n") + 2);
  int dates = 0, content_types = 0, content_lengths = 0;
  std::uint64_t content_length = 0;
  while (!head.empty()) {
    const std::string_view line = head.substr(0, head.find("\r\n"));
    head.remove_prefix(line.size() + 2);
    const std::size_t colon = line.find(": ");
    check(colon != std::string_view::npos && colon > 0, "a malformed header field in a response", line);
    const std::string_view name = line.substr(0, colon), value = line.substr(colon + 2);
    if (name == "Date") ++dates;
    if (name == "Content-Type") ++content_types;
    if (name == "Content-Length") {
      ++content_lengths;
      auto length = decimal(value);
      check(length.has_value(), "a Content-Length that is not a number", line);
      content_length = *length;
    }
    if (name == "Connection") response.says_close = value == "close";
  }
  check(dates == 1 && content_types == 1 && content_lengths == 1,
        "a response without exactly one Date, Content-Type and Content-Length", bytes.substr(0, head_end));
  bytes.remove_prefix(head_end + 4);
  if (!head_request) {
    check(bytes.size() >= content_length, "a response body shorter than its Content-Length");
    response.body = bytes.substr(0, static_cast<std::size_t>(content_length));
    bytes.remove_prefix(static_cast<std::size_t>(content_length));
  }
  return response;
}

// ---- an independent reading of a request's framing ----

struct Framing {
  const char* problem = nullptr;  // why it cannot be framed, if it cannot
  std::size_t end = 0;            // where the message ends in the stream
  std::string body;
};

bool same_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Decodes a chunked body starting at `at`; sets framing.end past its final CRLF.
void read_chunked(std::string_view stream, std::size_t at, Framing& framing) {
  auto line_at = [&](std::size_t from) -> std::optional<std::string_view> {
    const std::size_t end = stream.find("\r\n", from);
    if (end == std::string_view::npos) return std::nullopt;
    return stream.substr(from, end - from);
  };
  for (;;) {
    auto line = line_at(at);
    if (!line) return void(framing.problem = "a chunk-size line without CRLF");
    at += line->size() + 2;
    std::uint64_t size = 0;
    std::size_t digits = 0;
    for (; digits < line->size() && std::isxdigit(static_cast<unsigned char>((*line)[digits])); ++digits) {
      if (size >> 60) return void(framing.problem = "a chunk size over 64 bits");
      const char c = static_cast<char>(std::tolower(static_cast<unsigned char>((*line)[digits])));
      size = size * 16 + static_cast<std::uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    if (digits == 0) return void(framing.problem = "a chunk without a size");
    if (size == 0) break;
    if (stream.size() - at < size + 2) return void(framing.problem = "a chunk longer than what was sent");
    framing.body.append(stream.substr(at, static_cast<std::size_t>(size)));
    at += static_cast<std::size_t>(size);
    if (stream.substr(at, 2) != "\r\n") return void(framing.problem = "chunk data not followed by CRLF");
    at += 2;
  }
  for (;;) {  // trailer fields up to an empty line
    auto line = line_at(at);
    if (!line) return void(framing.problem = "a trailer section without its empty line");
    at += line->size() + 2;
    if (line->empty()) break;
  }
  framing.end = at;
}

Framing cannot_frame(const char* problem) {
  Framing framing;
  framing.problem = problem;
  return framing;
}

// How the request starting at `from` is framed, read as simply as RFC 9112 allows.
Framing frame_request(std::string_view stream, std::size_t from) {
  Framing framing;
  while (stream.substr(from, 2) == "\r\n") from += 2;  // empty lines before a request line
  const std::size_t head_end = stream.find("\r\n\r\n", from);
  if (head_end == std::string_view::npos) return cannot_frame("a request head without its empty line");
  const std::string_view head = stream.substr(from, head_end + 2 - from);
  for (std::size_t i = 0; i < head.size(); ++i) {
    if (head[i] == '\n' && (i == 0 || head[i - 1] != '\r')) return cannot_frame("a bare LF in the head");
    if (head[i] == '\r' && (i + 1 == head.size() || head[i + 1] != '\n')) return cannot_frame("a bare CR in the head");
  }
  std::optional<std::uint64_t> content_length;
  bool transfer_encoding = false;
  std::string_view last_coding;
  std::size_t line_start = head.find("\r\n") + 2;  // after the request line
  while (line_start < head.size()) {
    const std::string_view line = head.substr(line_start, head.find("\r\n", line_start) - line_start);
    line_start += line.size() + 2;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return cannot_frame("a field line without a colon");
    const std::string_view name = line.substr(0, colon), value = trim(line.substr(colon + 1));
    if (same_ignoring_case(name, "content-length")) {
      // A list of equal numbers is one length (RFC 9112 6.3); empty elements do not count.
      bool any = false;
      for (std::string_view rest = value; !rest.empty();) {
        const std::size_t comma = rest.find(',');
        std::string_view digits = trim(rest.substr(0, comma));
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        if (digits.empty()) continue;
        while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
        auto length = decimal(digits);
        if (!length) return cannot_frame("a Content-Length that is not a number");
        if (content_length && *content_length != *length) return cannot_frame("two different Content-Lengths");
        content_length = length;
        any = true;
      }
      if (!any) return cannot_frame("a Content-Length with no number");
    } else if (same_ignoring_case(name, "transfer-encoding")) {
      transfer_encoding = true;
      for (std::string_view rest = value; !rest.empty();) {
        const std::size_t comma = rest.find(',');
        const std::string_view coding = trim(rest.substr(0, comma));
        if (!coding.empty()) last_coding = coding;
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      }
    }
  }
  const std::size_t body_start = head_end + 4;
  if (transfer_encoding) {
    if (content_length) return cannot_frame("both Transfer-Encoding and Content-Length");
    if (!same_ignoring_case(last_coding, "chunked")) return cannot_frame("a Transfer-Encoding whose last coding is not chunked");
    read_chunked(stream, body_start, framing);
    return framing;
  }
  const std::uint64_t length = content_length.value_or(0);
  if (stream.size() - body_start < length) return cannot_frame("a body shorter than its Content-Length");
  framing.body = std::string(stream.substr(body_start, static_cast<std::size_t>(length)));
  framing.end = body_start + static_cast<std::size_t>(length);
  return framing;
}

// ---- one conversation ----

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

bool points_into(std::string_view view, std::span<const char> buffer) {
  return view.empty() || (view.data() >= buffer.data() && view.data() + view.size() <= buffer.data() + buffer.size());
}

// The descriptors the server's Reader and Writer are given, made once. The connection is a real
// socket, so that setsockopt() on it works, but no byte ever crosses it. main's stop descriptor
// is a pipe's read end that never becomes readable.
struct Descriptors {
  Socket connection;
  Socket other_end;
  Socket wake;
  Socket wake_writer;
};

const Descriptors& descriptors() {
  static const Descriptors made = [] {
    int pair[2], pipe_ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0 || ::pipe2(pipe_ends, O_CLOEXEC) != 0) {
      std::perror("fuzz_http: socketpair/pipe");
      std::exit(1);
    }
    return Descriptors{Socket(pair[0]), Socket(pair[1]), Socket(pipe_ends[0]), Socket(pipe_ends[1])};
  }();
  return made;
}

void check_exchange(const Exchange& exchange, std::string_view output, std::size_t consumed_from,
                    std::size_t consumed_to, bool may_keep_alive, std::span<const char> read_buffer) {
  check(points_into(exchange.method, read_buffer) && points_into(exchange.target, read_buffer),
        "the method or target points outside the read buffer");
  const bool head_request = exchange.method == "HEAD";
  if (output.starts_with(kContinue)) output.remove_prefix(kContinue.size());

  if (!exchange.answered) {
    check(!exchange.keep_alive, "keep-alive after a request that was not answered");
    check(peer.send_failed || output.empty(), "bytes sent for a request that was not answered", output);
    check(peer.send_failed || !more_to_send(), "gave up on a client that was still sending");
    return;
  }
  check(!peer.send_failed, "answered although the client had stopped reading");
  const SentResponse response = read_response(output, head_request);
  check(output.empty(), "bytes after the response", output);
  check(response.status == static_cast<int>(exchange.status), "the status sent differs from the status reported");
  check(response.says_close == !exchange.keep_alive, "Connection: close sent, but the connection stays open (or not)");
  check(!exchange.keep_alive || may_keep_alive, "keep-alive although the server may not keep alive");
  if (response.status >= 400) check(!exchange.keep_alive, "keep-alive after an error response");

  const bool accepted = exchange.status == Status::OK || exchange.status == Status::MethodNotAllowed;
  if (!accepted) {
    check(response.status >= 400 && response.status <= 599, "a rejected request answered with neither 4xx nor 5xx");
    return;
  }
  const Framing framing = frame_request(peer.sends, consumed_from);
  if (framing.problem != nullptr) fail("accepted a request that cannot be framed:", framing.problem);
  check(framing.end == consumed_to, "the server stopped reading where the request's framing does not end",
        "framing ends at " + std::to_string(framing.end) + ", the server read up to " + std::to_string(consumed_to));
  if (exchange.method == "POST" && exchange.status == Status::OK) {
    check(response.body == framing.body, "the echo differs from the body the framing decodes", response.body);
  }
}

void converse(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return;
  const std::uint8_t options = data[0];
  const std::size_t piece_count = data[2] % 16;
  if (size < 3 + piece_count) return;

  peer = Peer();
  const Socket& connection = descriptors().connection;
  peer.connection_fd = connection.fd();
  peer.closes = (options & 1) != 0;
  peer.short_writes = (options & 32) != 0;
  if ((options & 8) != 0) peer.reads_at_most = std::size_t{data[1]} * 16;
  for (std::size_t i = 0; i < piece_count; ++i) peer.pieces.push_back(data[3 + i] == 0 ? 256 : data[3 + i]);
  peer.sends = {reinterpret_cast<const char*>(data) + 3 + piece_count, size - 3 - piece_count};

  const bool may_keep_alive = (options & 2) != 0;
  Limits limits;
  limits.max_body = (options & 4) != 0 ? 64 : 1 << 20;
  limits.timeout = std::chrono::milliseconds(5000);  // simulated: a silent client costs no real time
  const std::size_t buffer_size = kServerBufferSizes[(options >> 6) % std::size(kServerBufferSizes)];

  std::vector<char> input(buffer_size), output(buffer_size);
  peer.read_buffer = input;
  BodyBudget budget((options & 16) != 0 ? 32 : std::uint64_t{1} << 30);
  Body body(budget);
#ifdef FUZZ_BLOCKING
  Reader reader(connection, input, descriptors().wake.fd());
#else
  Reader reader(connection, input);
#endif
  Writer writer(connection, output);
  Exchange exchange;
  std::size_t consumed = 0;
  int exchanges = 0;
  do {
    const std::size_t sent_before = peer.received.size();
    exchange = serve_request(reader, writer, body, handle, limits, may_keep_alive);
    const std::size_t consumed_now = peer.delivered - reader.buffered().size();
    check(consumed_now >= consumed, "the reader went backwards");
    check_exchange(exchange, std::string_view(peer.received).substr(sent_before), consumed, consumed_now,
                   may_keep_alive, input);
    consumed = consumed_now;
    check(++exchanges <= static_cast<int>(peer.sends.size()) + 1, "more exchanges than bytes sent");
    if (verbose) std::printf(" %d", exchange.answered ? static_cast<int>(exchange.status) : 0);
  } while (exchange.keep_alive);
}

}  // namespace fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::converse(data, size);
  return 0;
}

#ifdef FUZZ_REPLAY_MAIN
// Without libFuzzer (any compiler, any sanitizer): runs every file named, or every file in
// every directory named, through the target once; -v prints each conversation's statuses.
// `make test` replays tests/fuzz_corpus so.
int main(int argc, char** argv) {
  int inputs = 0;
  auto run_file = [&inputs](const std::filesystem::path& path) {
    std::ifstream file(path, std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
    if (fuzz::verbose) std::printf("%s: statuses (0: no answer)", path.filename().c_str());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    if (fuzz::verbose) std::printf("\n");
    ++inputs;
  };
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "-v") {
      fuzz::verbose = true;
      continue;
    }
    if (std::filesystem::is_directory(argv[i])) {
      for (const auto& entry : std::filesystem::directory_iterator(argv[i])) {
        if (entry.is_regular_file()) run_file(entry.path());
      }
    } else {
      run_file(argv[i]);
    }
  }
  std::printf("%s: %d inputs, every invariant held\n", argv[0], inputs);
  return inputs > 0 ? 0 : 1;
}
#endif
