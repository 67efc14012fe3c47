// integration_test.cpp: starts the real ./main, ./main_async and ./main_epoll on port 0 and speaks raw
// HTTP/1.1 to them.
//
//   make && make build/integration_tests && SERVER_DIR=$PWD build/integration_tests
//   SERVER_DIR=$PWD build/integration_tests --gtest_filter='*KeepAlive.*/main_epoll'   # a subset
//
// Each rule runs against every server that has the behaviour (value-parameterised, see server_tests.hpp):
// what all three share (routes, errors, timeouts, flags, shutdown) as AllServers/..., what only the
// servers that hold many connections at once have (keep-alive, concurrency, --log-requests, shutdown
// with connections open) as ConcurrentServers/... against main_async and main_epoll. The rest names
// the server it is about: one request per connection is main's. Every test starts its own server,
// every read has a deadline, and timeout tests use --timeout-ms 300, so the whole file runs in seconds.
#include <gtest/gtest.h>

#include <signal.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <mutex>
#include <optional>
#include <set>
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
using test_support::equals_ignoring_case;
using test_support::kGet;
using test_support::kChunkedPost;
using test_support::kChunkedPostBody;
using test_support::kGetThenClose;
using test_support::kHelloWorld;
using test_support::millis;
using test_support::Millis;
using test_support::post_request;
using test_support::Response;
using test_support::ServerProcess;

// How long a test waits for something that should happen at once. Generous, so that a loaded machine
// or a sanitizer build does not fail a test; a passing test never waits for it.
constexpr auto kPatience = 3s;

// ---- requests ----


// `size` bytes of every value 0..255, CR, LF and NUL included, in a pattern that shows misplaced bytes.
std::string binary_bytes(std::size_t size) {
  std::string bytes(size, '\0');
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 7 + i / 256) & 0xff);
  return bytes;
}

// ---- reporting ----

// `bytes` as a C string literal, cut short if long: what a failure message shows of a request or reply.
std::string printable(std::string_view bytes, std::size_t limit = 400) {
  std::string out = "\"";
  for (std::size_t i = 0; i < bytes.size() && i < limit; ++i) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += "\"";
  if (bytes.size() > limit) out += "... (" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

// Where two long strings first differ, for comparisons too big to print.
std::string first_difference(std::string_view expected, std::string_view actual) {
  const auto mismatch = std::mismatch(expected.begin(), expected.end(), actual.begin(), actual.end());
  return "expected " + std::to_string(expected.size()) + " bytes, got " + std::to_string(actual.size()) +
         "; first difference at byte " + std::to_string(mismatch.first - expected.begin());
}

// ---- checks every response must pass ----

// True if `date` is an IMF-fixdate ("Sat, 21 Nov 2026 22:31:56 GMT") within a minute of now: it must
// parse, and printing the parsed time in the same format must give back exactly the same text (which
// also checks the weekday and the two-digit fields).
::testing::AssertionResult is_current_imf_fixdate(const std::string& date) {
  static constexpr const char* kImfFixdate = "%a, %d %b %Y %H:%M:%S GMT";
  std::tm parts{};
  const char* end = ::strptime(date.c_str(), kImfFixdate, &parts);
  if (end == nullptr || *end != '\0') return ::testing::AssertionFailure() << printable(date) << " is no IMF-fixdate";
  const std::time_t time = ::timegm(&parts);
  std::tm normalised{};
  ::gmtime_r(&time, &normalised);
  std::array<char, 64> printed{};
  std::strftime(printed.data(), printed.size(), kImfFixdate, &normalised);
  if (date != printed.data()) {
    return ::testing::AssertionFailure() << printable(date) << " is no IMF-fixdate (expected " << printed.data() << ")";
  }
  const long long skew = static_cast<long long>(time) - static_cast<long long>(std::time(nullptr));
  if (skew < -60 || skew > 60) return ::testing::AssertionFailure() << printable(date) << " is " << skew << " s from now";
  return ::testing::AssertionSuccess();
}

bool contains_ignoring_case(std::string_view text, std::string_view word) {
  return std::search(text.begin(), text.end(), word.begin(), word.end(), [](unsigned char a, unsigned char b) {
           return std::tolower(a) == std::tolower(b);
         }) != text.end();
}

// Every response: HTTP/1.1 status line, Date, Content-Length (matching the body unless it answers a
// HEAD), Content-Type.
void expect_required_headers(const Response& response, bool head_request = false) {
  EXPECT_EQ(response.version, "HTTP/1.1");
  EXPECT_FALSE(response.reason.empty()) << "status " << response.status << " has no reason phrase";
  EXPECT_TRUE(is_current_imf_fixdate(response.header("Date")));
  EXPECT_EQ(response.header_count("Content-Length"), 1u);
  if (!head_request) {
    EXPECT_EQ(response.header("Content-Length"), std::to_string(response.body.size()));
  }
  EXPECT_TRUE(response.has_header("Content-Type"));
}

void expect_hello_world(const std::optional<Response>& response) {
  ASSERT_TRUE(response) << "no complete response";
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, kHelloWorld);
}

bool says_close(const Response& response) { return equals_ignoring_case(response.header("Connection"), "close"); }

// Sends `request` on a new connection and expects `status` (and `body`, when given) with
// Connection: close, then the server closing.
void expect_status_then_close(std::uint16_t port, std::string_view request, int status,
                              std::optional<std::string_view> body = std::nullopt) {
  SCOPED_TRACE("request: " + printable(request));
  Client client(port);
  client.send(request);  // may fail part way when the server rejects early; the response still counts
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "no complete response; received " << printable(client.unread())
                        << (client.peer_closed() ? " then EOF" : " and the connection is still open");
  EXPECT_EQ(response->status, status) << "reason: " << response->reason << ", body: " << printable(response->body);
  if (body) {
    EXPECT_EQ(response->body, *body);
  }
  expect_required_headers(*response);
  EXPECT_TRUE(says_close(*response)) << "Connection: " << printable(response->header("Connection"));
  EXPECT_TRUE(client.is_closed_by_peer(kPatience)) << "the connection stays open after " << status;
  EXPECT_FALSE(client.peer_reset()) << "closed with a reset, not EOF: a reset can destroy the response in transit";
  EXPECT_EQ(client.unread(), "") << "bytes after the " << status << " response";
}

// ---- fixtures ----

[[maybe_unused]] ::testing::Environment* const kProcessEnvironment =
    ::testing::AddGlobalTestEnvironment(new ProcessEnvironment);


// ---- Cli ----

class Cli : public ServerTest {};
RUN_AGAINST_ALL_SERVERS(Cli);

TEST_P(Cli, PrintsListeningLineWithTheRealPort) {
  ServerProcess server = start();
  EXPECT_NE(server.port(), 0);
  EXPECT_EQ(server.stdout_text(), "Listening on http://127.0.0.1:" + std::to_string(server.port()) + "\n");
  Client client(server.port());
  client.send(kGetThenClose);
  expect_hello_world(client.read_response(kPatience));
}

TEST_P(Cli, HelpPrintsUsageOnStdoutAndExitsZero) {
  const test_support::ExitResult run = test_support::run_to_exit(binary(), {"--help"});
  EXPECT_EQ(run.status, 0);
  EXPECT_NE(run.out.find("--port"), std::string::npos) << "stdout: " << printable(run.out);
  EXPECT_TRUE(contains_ignoring_case(run.out, "usage")) << "stdout: " << printable(run.out);
  EXPECT_EQ(run.out.find("Listening"), std::string::npos) << "--help must not start the server";
}

TEST_P(Cli, AcceptsEveryDocumentedFlag) {
  std::vector<std::string> args = {"--host", "127.0.0.1", "--timeout-ms", "1000", "--max-body", "100"};
  if (is_concurrent()) {
    args.insert(args.end(), {"--buffer-size", "8192", "--no-keepalive", "--log-requests", "--max-connections", "50",
                             "--body-memory", "1000000", "--shutdown-timeout-ms", "100"});
  }
  if (has_workers()) args.insert(args.end(), {"--workers", "3"});
  ServerProcess server = start(args);
  Client client(server.port());
  client.send(kGet);
  expect_hello_world(client.read_response(kPatience));
}

TEST_P(Cli, RejectsUnknownFlagsAndBadValuesWithUsageOnStderrAndStatus2) {
  std::vector<std::vector<std::string>> bad_arguments = {
      {"--port", "abc"}, {"--port", "70000"}, {"--port", "65536"},      {"--port", "-1"},
      {"--port", "80x"}, {"--port"},          {"--timeout-ms", "abc"},  {"--max-body", "abc"},
      {"--host"},        {"--bogus"},         {"extra-positional-word"},
  };
  if (is_concurrent()) {
    bad_arguments.insert(bad_arguments.end(), {{"--buffer-size", "abc"}, {"--max-connections", "abc"},
                                               {"--body-memory", "-1"}, {"--shutdown-timeout-ms", "1s"}});
  } else {  // the blocking server has none of the concurrent servers' flags
    bad_arguments.insert(bad_arguments.end(), {{"--buffer-size", "4096"}, {"--no-keepalive"}, {"--log-requests"},
                                               {"--max-connections", "5"}, {"--body-memory", "5"},
                                               {"--shutdown-timeout-ms", "5"}});
  }
  if (has_workers()) {
    bad_arguments.insert(bad_arguments.end(), {{"--workers", "abc"}, {"--workers", "-1"}, {"--workers"}});
  } else {  // an event loop per worker is main_epoll's alone
    bad_arguments.push_back({"--workers", "2"});
  }
  for (const std::vector<std::string>& arguments : bad_arguments) {
    std::string command_line = binary();
    for (const std::string& argument : arguments) command_line += " " + argument;
    SCOPED_TRACE(command_line);
    const test_support::ExitResult run = test_support::run_to_exit(binary(), arguments);
    EXPECT_EQ(run.status, 2) << "stderr: " << printable(run.err);
    EXPECT_TRUE(contains_ignoring_case(run.err, "usage")) << "stderr: " << printable(run.err);
    EXPECT_EQ(run.out.find("Listening"), std::string::npos) << "it started anyway";
  }
}

// The flags that only the concurrent servers have.
class ConcurrentCli : public ServerTest {};
RUN_AGAINST_CONCURRENT_SERVERS(ConcurrentCli);

TEST_P(ConcurrentCli, BufferSizeLimitsTheRequestHead) {
  // A 2000-byte head fits the default 4096-byte buffer but not a 1024-byte one.
  const std::string head = "GET / HTTP/1.1\r\nHost: a\r\nX-Filler: " + std::string(1950, 'x') + "\r\n\r\n";
  {
    ServerProcess server = start();
    Client client(server.port());
    client.send(head);
    expect_hello_world(client.read_response(kPatience));
  }
  ServerProcess server = start({"--buffer-size", "1024"});
  expect_status_then_close(server.port(), head, 431);
}

// ---- Routes ----

class Routes : public ServerTest {};
RUN_AGAINST_ALL_SERVERS(Routes);

TEST_P(Routes, GetAnswersHelloWorldWithEveryRequiredHeader) {
  ServerProcess server = start();
  Client client(server.port());
  client.send(kGet);
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, kHelloWorld);
  EXPECT_EQ(response->header("Content-Length"), "12");
  EXPECT_TRUE(response->header("Content-Type").starts_with("text/plain")) << response->header("Content-Type");
  expect_required_headers(*response);
}

TEST_P(Routes, GetAnswersHelloWorldForAnyTarget) {
  ServerProcess server = start();
  for (const std::string_view target : {"/", "/index.html", "/a/b/c/", "/search?q=1&r=%20x", "http://a/absolute-form"}) {
    SCOPED_TRACE(target);
    Client client(server.port());
    client.send("GET " + std::string(target) + " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    expect_hello_world(client.read_response(kPatience));
  }
}

TEST_P(Routes, HeadHasTheHeadersOfGetButNoBody) {
  ServerProcess server = start();
  Client get_client(server.port());
  get_client.send(kGetThenClose);
  const std::optional<Response> get = get_client.read_response(kPatience);
  ASSERT_TRUE(get);

  Client client(server.port());
  client.send("HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  const std::optional<Response> head = client.read_response(kPatience, /*head_request=*/true);
  ASSERT_TRUE(head) << "received " << printable(client.unread());
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->header("Content-Length"), "12");
  EXPECT_EQ(head->header("Content-Type"), get->header("Content-Type"));
  expect_required_headers(*head, /*head_request=*/true);
  std::set<std::string, test_support::CaseInsensitiveLess> get_names, head_names;
  for (const auto& [name, value] : get->headers) get_names.insert(name);
  for (const auto& [name, value] : head->headers) head_names.insert(name);
  EXPECT_EQ(head_names, get_names);
  EXPECT_EQ(client.read_until_close(kPatience), "") << "HEAD must send no body";
  EXPECT_TRUE(client.peer_closed());
}

TEST_P(Routes, PostEchoesContentLengthBody) {
  ServerProcess server = start();
  Client client(server.port());
  client.send(post_request("hello, server"));
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "hello, server");
  expect_required_headers(*response);
}

TEST_P(Routes, PostEchoesEmptyBody) {
  ServerProcess server = start();
  Client client(server.port());
  client.send(post_request(""));
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "");
  EXPECT_EQ(response->header("Content-Length"), "0");
}

TEST_P(Routes, PostEchoesEveryByteValue) {
  ServerProcess server = start();
  const std::string body = binary_bytes(1000) + "\r\n\r\n" + std::string(3, '\0');
  Client client(server.port());
  client.send(post_request(body));
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_TRUE(response->body == body) << first_difference(body, response->body);
}

TEST_P(Routes, PostEchoesBodyMuchLargerThanTheReadBuffer) {
  ServerProcess server = start();
  const std::string body = binary_bytes(100'000);
  Client client(server.port());
  client.send(post_request(body));
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(response->body == body) << first_difference(body, response->body);
}

TEST_P(Routes, PostEchoesBodyOfExactlyMaxBody) {
  ServerProcess server = start({"--max-body", "16"});
  Client client(server.port());
  client.send(post_request("0123456789abcdef"));
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "0123456789abcdef");
}

TEST_P(Routes, PostEchoesChunkedBodySentInOneWrite) {
  ServerProcess server = start();
  Client client(server.port());
  client.send(kChunkedPost);
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, kChunkedPostBody);
  expect_required_headers(*response);
}

TEST_P(Routes, PostEchoesChunkedBodySentByteByByte) {
  ServerProcess server = start();
  Client client(server.port());
  ASSERT_TRUE(client.send_slowly(kChunkedPost, 1));
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, kChunkedPostBody);
}

TEST_P(Routes, PostEchoesChunkedBodyInPiecesOfSevenBytes) {
  ServerProcess server = start();
  Client client(server.port());
  ASSERT_TRUE(client.send_slowly(kChunkedPost, 7));
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_EQ(response->body, kChunkedPostBody);
}

TEST_P(Routes, PostEchoesChunkedBodyLargerThanTheReadBuffer) {
  ServerProcess server = start();
  const std::string first = binary_bytes(10'000);
  const std::string second = binary_bytes(3'000);
  std::string request = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  request += "2710\r\n" + first + "\r\nbb8\r\n" + second + "\r\n0\r\n\r\n";
  Client client(server.port());
  client.send(request);
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(response->body == first + second) << first_difference(first + second, response->body);
}

TEST_P(Routes, AnswersARequestSplitInTwoAtEveryByte) {
  ServerProcess server = start();
  const std::string request = post_request("hello", "Connection: close\r\n");
  for (std::size_t split = 1; split < request.size(); ++split) {
    SCOPED_TRACE("split after " + printable(request.substr(0, split)));
    Client client(server.port());
    client.send(request.substr(0, split));
    std::this_thread::sleep_for(2ms);  // so the two halves arrive as two reads (see send_slowly)
    client.send(request.substr(split));
    const std::optional<Response> response = client.read_response(kPatience);
    ASSERT_TRUE(response) << "received " << printable(client.unread());
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "hello");
  }
}

TEST_P(Routes, AnswersAHeadThatAlmostFillsTheReadBuffer) {
  ServerProcess server = start();
  const std::string head =
      "GET / HTTP/1.1\r\nHost: a\r\nX-Filler: " + std::string(buffer_size() - 100, 'x') + "\r\n\r\n";
  Client client(server.port());
  client.send(head);
  expect_hello_world(client.read_response(kPatience));
}

TEST_P(Routes, ReadsHeaderNamesInAnyLetterCase) {
  ServerProcess server = start();
  Client client(server.port());
  client.send("POST / HTTP/1.1\r\nhOST: a\r\ncontent-LENGTH: 5\r\n\r\nhello");
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "hello");
}

TEST_P(Routes, AnswersOtherMethodsWith405AndAllow) {
  ServerProcess server = start();
  for (const std::string_view request_line : {"DELETE / HTTP/1.1", "PUT / HTTP/1.1", "OPTIONS * HTTP/1.1",
                                              "PATCH / HTTP/1.1", "TRACE / HTTP/1.1"}) {
    const std::string request = std::string(request_line) + "\r\nHost: a\r\nConnection: close\r\n\r\n";
    SCOPED_TRACE(printable(request));
    Client client(server.port());
    client.send(request);
    const std::optional<Response> response = client.read_response(kPatience);
    ASSERT_TRUE(response) << "received " << printable(client.unread());
    EXPECT_EQ(response->status, 405);
    EXPECT_EQ(response->header("Allow"), "GET, HEAD, POST");
    expect_required_headers(*response);
  }
}

TEST_P(Routes, SendsContinueBeforeReadingTheBody) {
  ServerProcess server = start();
  Client client(server.port());
  client.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  const std::optional<Response> interim = client.read_response(kPatience);
  ASSERT_TRUE(interim) << "no 100 Continue before the body was sent; received " << printable(client.unread());
  EXPECT_EQ(interim->status, 100);
  EXPECT_EQ(interim->reason, "Continue");
  EXPECT_TRUE(interim->headers.empty());
  client.send("hello");
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "hello");
}

TEST_P(Routes, IgnoresExpectContinueFromAnHttp10Client) {
  ServerProcess server = start();
  Client client(server.port());
  client.send("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello");
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_EQ(response->status, 200) << "HTTP/1.0 clients do not know 100 Continue (RFC 9110 10.1.1)";
  EXPECT_EQ(response->body, "hello");
}

// ---- Errors ----

// Each rule: the exact request, the status, then the server closing the connection.
class Errors : public ServerTest {
 protected:
  // A short timeout, so that a server that waits instead of rejecting answers 408 quickly.
  ServerProcess start_for_errors() const { return start({"--timeout-ms", "1000"}); }
  void expect_rejection(std::string_view request, int status) const {
    ServerProcess server = start_for_errors();
    expect_status_then_close(server.port(), request, status);
  }
};
RUN_AGAINST_ALL_SERVERS(Errors);

TEST_P(Errors, RejectsWhitespaceBeforeTheColonWith400) {
  expect_rejection("GET / HTTP/1.1\r\nHost: a\r\nBad Header : x\r\n\r\n", 400);
}

TEST_P(Errors, RejectsObsoleteLineFoldingWith400) {
  expect_rejection("GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n", 400);
}

TEST_P(Errors, RejectsHttp11RequestWithoutHostWith400) { expect_rejection("GET / HTTP/1.1\r\n\r\n", 400); }

TEST_P(Errors, RejectsTwoHostFieldsWith400) {
  expect_rejection("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
}

TEST_P(Errors, RejectsNonNumericContentLengthWith400) {
  expect_rejection("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400);
}

TEST_P(Errors, RejectsNegativeContentLengthWith400) {
  expect_rejection("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400);
}

TEST_P(Errors, RejectsTwoDifferentContentLengthsWith400) {
  expect_rejection("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400);
}

TEST_P(Errors, RejectsTransferEncodingWithContentLengthWith400) {
  expect_rejection("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400);
}

TEST_P(Errors, RejectsBareLfLineEndingsWith400) { expect_rejection("GET / HTTP/1.1\nHost: a\n\n", 400); }

TEST_P(Errors, RejectsABareLfInsideAnOtherwiseCrlfHeadWith400) {
  expect_rejection("GET / HTTP/1.1\r\nHost: a\nX-Other: b\r\n\r\n", 400);
}

TEST_P(Errors, RejectsRequestLineWithoutVersionWith400) { expect_rejection("GET /\r\nHost: a\r\n\r\n", 400); }

TEST_P(Errors, RejectsInvalidChunkSizeWith400) {
  expect_rejection("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400);
}

TEST_P(Errors, RejectsHeadLargerThanTheReadBufferWith431) {
  std::string request = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 60; ++i) request += "X-Filler-" + std::to_string(i) + ": " + std::string(80, 'x') + "\r\n";
  request += "\r\n";  // about 6000 bytes: more than either server's buffer (1024, 4096)
  expect_rejection(request, 431);
}

TEST_P(Errors, RejectsRequestLineLongerThanTheReadBufferWith414) {
  expect_rejection("GET /" + std::string(5000, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", 414);
}

TEST_P(Errors, RejectsContentLengthOverMaxBodyWith413WithoutWaitingForTheBody) {
  const auto started = Clock::now();
  expect_rejection("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n", 413);  // --max-body default 1048576
  EXPECT_LT(millis(Clock::now() - started), 900) << "the 413 must come with the head, not after the 1 s timeout";
}

TEST_P(Errors, RejectsContentLengthOverMaxBodyWith413InsteadOf100Continue) {
  expect_rejection("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1048577\r\n\r\n", 413);
}

TEST_P(Errors, RejectsChunkedBodyOverMaxBodyWith413) {
  ServerProcess server = start({"--timeout-ms", "1000", "--max-body", "16"});
  expect_status_then_close(
      server.port(),
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
      413);
}

TEST_P(Errors, RejectsTransferCodingsOtherThanChunkedWith501) {
  expect_rejection("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
}

TEST_P(Errors, RejectsHttpVersionOtherThan1xWith505) { expect_rejection("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505); }

TEST_P(Errors, RejectsExpectationOtherThan100ContinueWith417) {
  expect_rejection("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: something-else\r\n\r\n", 417);
}

// ---- OneRequestPerConnection (main) ----

TEST(OneRequestPerConnection, EveryResponseSaysConnectionClose) {
  ServerProcess server("main");
  const std::vector<std::pair<std::string, bool>> requests = {
      {std::string(kGet), false},
      {"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", true},
      {post_request("hi"), false},
      {"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n", false},
  };
  for (const auto& [request, is_head] : requests) {
    SCOPED_TRACE(printable(request));
    Client client(server.port());
    client.send(request);
    const std::optional<Response> response = client.read_response(kPatience, is_head);
    ASSERT_TRUE(response) << "received " << printable(client.unread());
    EXPECT_TRUE(says_close(*response)) << "Connection: " << printable(response->header("Connection"));
    EXPECT_TRUE(client.is_closed_by_peer(kPatience));
  }
}

TEST(OneRequestPerConnection, ClosesAfterTheResponseEvenWhenAskedToKeepAlive) {
  ServerProcess server("main");
  Client client(server.port());
  client.send("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_TRUE(says_close(*response));
  EXPECT_EQ(client.read_until_close(kPatience), "");
  EXPECT_TRUE(client.peer_closed());
}

TEST(OneRequestPerConnection, AnswersOnlyTheFirstOfPipelinedRequests) {
  ServerProcess server("main");
  Client client(server.port());
  client.send(std::string(kGet) + std::string(kGet));
  expect_hello_world(client.read_response(kPatience));
  EXPECT_EQ(client.read_until_close(kPatience), "");
  EXPECT_TRUE(client.peer_closed());
}

// ---- KeepAlive (the concurrent servers) ----

class KeepAlive : public ServerTest {};
RUN_AGAINST_CONCURRENT_SERVERS(KeepAlive);

TEST_P(KeepAlive, AnswersSeveralRequestsOnOneConnection) {
  ServerProcess server = start();
  Client client(server.port());
  for (int i = 0; i < 3; ++i) {
    client.send(kGet);
    const std::optional<Response> get = client.read_response(kPatience);
    ASSERT_TRUE(get) << "request " << i << ": received " << printable(client.unread());
    EXPECT_EQ(get->body, kHelloWorld);
    EXPECT_FALSE(says_close(*get));

    const std::string body = "body " + std::to_string(i);
    client.send(post_request(body));
    const std::optional<Response> post = client.read_response(kPatience);
    ASSERT_TRUE(post) << "request " << i << ": received " << printable(client.unread());
    EXPECT_EQ(post->body, body);
    EXPECT_FALSE(says_close(*post));
  }
}

TEST_P(KeepAlive, ClosesAnHttp10ConnectionByDefault) {
  ServerProcess server = start();
  Client client(server.port());
  client.send("GET / HTTP/1.0\r\n\r\n");
  const std::optional<Response> response = client.read_response(kPatience);
  expect_hello_world(response);
  ASSERT_TRUE(response);
  EXPECT_TRUE(says_close(*response)) << "Connection: " << printable(response->header("Connection"));
  EXPECT_TRUE(client.is_closed_by_peer(kPatience));
}

TEST_P(KeepAlive, KeepsAnHttp10ConnectionThatAsksForKeepAlive) {
  ServerProcess server = start();
  Client client(server.port());
  for (int i = 0; i < 2; ++i) {
    client.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    const std::optional<Response> response = client.read_response(kPatience);
    expect_hello_world(response);
    ASSERT_TRUE(response) << "request " << i;
    EXPECT_TRUE(equals_ignoring_case(response->header("Connection"), "keep-alive"))
        << "Connection: " << printable(response->header("Connection"));
  }
}

TEST_P(KeepAlive, HonoursConnectionClose) {
  ServerProcess server = start();
  expect_status_then_close(server.port(), kGetThenClose, 200, kHelloWorld);
}

TEST_P(KeepAlive, HonoursConnectionCloseInAnyLetterCase) {
  ServerProcess server = start();
  expect_status_then_close(server.port(), "GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n", 200, kHelloWorld);
}

TEST_P(KeepAlive, AnswersPipelinedRequestsInOrder) {
  ServerProcess server = start();
  Client client(server.port());
  client.send(std::string(kGet) + post_request("pipelined body") + "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n" +
              std::string(kGet));
  expect_hello_world(client.read_response(kPatience));
  const std::optional<Response> post = client.read_response(kPatience);
  ASSERT_TRUE(post) << "received " << printable(client.unread());
  EXPECT_EQ(post->body, "pipelined body");
  const std::optional<Response> head = client.read_response(kPatience, /*head_request=*/true);
  ASSERT_TRUE(head) << "received " << printable(client.unread());
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->header("Content-Length"), "12");
  expect_hello_world(client.read_response(kPatience));
  EXPECT_EQ(client.unread(), "");
}

TEST_P(KeepAlive, AnswersARequestPipelinedAfterAChunkedPostWithTrailer) {
  ServerProcess server = start();
  Client client(server.port());
  client.send(std::string(kChunkedPost) + std::string(kGet));
  const std::optional<Response> post = client.read_response(kPatience);
  ASSERT_TRUE(post) << "received " << printable(client.unread());
  EXPECT_EQ(post->body, kChunkedPostBody);
  expect_hello_world(client.read_response(kPatience));
}

TEST_P(KeepAlive, ClosesAfterAnErrorOnAKeptAliveConnection) {
  ServerProcess server = start();
  Client client(server.port());
  client.send(std::string(kGet) + "GET / HTTP/1.1\r\nHost: a\r\nBad Header : x\r\n\r\n" + std::string(kGet));
  expect_hello_world(client.read_response(kPatience));
  const std::optional<Response> error = client.read_response(kPatience);
  ASSERT_TRUE(error) << "received " << printable(client.unread());
  EXPECT_EQ(error->status, 400);
  EXPECT_TRUE(says_close(*error));
  EXPECT_EQ(client.read_until_close(kPatience), "") << "answered a request after the 400";
  EXPECT_TRUE(client.peer_closed());
}

TEST_P(KeepAlive, NoKeepaliveFlagClosesAfterEveryResponse) {
  ServerProcess server = start({"--no-keepalive"});
  expect_status_then_close(server.port(), kGet, 200, kHelloWorld);
}

TEST_P(KeepAlive, ClosesAnIdleConnectionAfterTheTimeout) {
  ServerProcess server = start({"--timeout-ms", "300"});
  Client client(server.port());
  client.send(kGet);
  expect_hello_world(client.read_response(kPatience));
  const auto idle_since = Clock::now();
  EXPECT_TRUE(client.is_closed_by_peer(kPatience));
  const long long idle_ms = millis(Clock::now() - idle_since);
  EXPECT_GE(idle_ms, 150) << "closed long before --timeout-ms 300";
  EXPECT_LT(idle_ms, 3000);
  EXPECT_EQ(client.unread(), "") << "an idle connection is closed without a response";
}

TEST_P(KeepAlive, KeepsAConnectionThatIsNeverIdleForTheWholeTimeout) {
  ServerProcess server = start({"--timeout-ms", "400"});
  Client client(server.port());
  for (int i = 0; i < 4; ++i) {  // 4 requests 200 ms apart: 600 ms in all, but never 400 ms idle
    if (i > 0) std::this_thread::sleep_for(200ms);  // being idle is what this tests
    ASSERT_TRUE(client.send(kGet)) << "request " << i;
    const std::optional<Response> response = client.read_response(kPatience);
    ASSERT_TRUE(response) << "request " << i << ": received " << printable(client.unread());
    EXPECT_EQ(response->body, kHelloWorld);
  }
}

// ---- Timeouts ----

class Timeouts : public ServerTest {};
RUN_AGAINST_ALL_SERVERS(Timeouts);

TEST_P(Timeouts, AnswersAPartialHeadFollowedBySilenceWith408) {
  ServerProcess server = start({"--timeout-ms", "300"});
  Client client(server.port());
  client.send("GET / HTTP/1.1\r\nHost: a\r\n");
  const auto started = Clock::now();
  const std::optional<Response> response = client.read_response(kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread());
  EXPECT_EQ(response->status, 408);
  EXPECT_GE(millis(Clock::now() - started), 150) << "408 long before --timeout-ms 300";
  EXPECT_TRUE(says_close(*response));
  EXPECT_TRUE(client.is_closed_by_peer(kPatience));
}

TEST_P(Timeouts, ClosesAConnectionWhoseBodyStopsHalfway) {
  ServerProcess server = start({"--timeout-ms", "300"});
  Client client(server.port());
  client.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel");
  const std::optional<Response> response = client.read_response(kPatience);  // a 408, or nothing at all
  if (response) {
    EXPECT_EQ(response->status, 408);
  }
  EXPECT_TRUE(client.is_closed_by_peer(kPatience)) << "the server waits for the rest of the body forever";
}

TEST_P(Timeouts, ClosesASilentConnectionWithoutAResponse) {
  ServerProcess server = start({"--timeout-ms", "300"});
  Client client(server.port());
  const auto started = Clock::now();
  EXPECT_EQ(client.read_until_close(kPatience), "");
  EXPECT_TRUE(client.peer_closed()) << "still open after " << millis(Clock::now() - started) << " ms";
  EXPECT_GE(millis(Clock::now() - started), 150) << "closed long before --timeout-ms 300";
}

TEST_P(Timeouts, ASilentClientDelaysTheNextOneByAtMostTheTimeout) {
  ServerProcess server = start({"--timeout-ms", "300"});
  Client silent(server.port());
  Client next(server.port());
  const auto started = Clock::now();
  next.send(kGet);
  expect_hello_world(next.read_response(kPatience));
  EXPECT_LT(millis(Clock::now() - started), 1500);
  EXPECT_EQ(silent.read_until_close(kPatience), "");
  EXPECT_TRUE(silent.peer_closed());
}

// ---- Concurrency (the concurrent servers) ----

class Concurrency : public ServerTest {};
RUN_AGAINST_CONCURRENT_SERVERS(Concurrency);

TEST_P(Concurrency, AnswersTwoHundredClientsWithOpenConnectionsAtOnce) {
  ServerProcess server = start();
  constexpr int kClients = 200;
  constexpr int kRounds = 5;
  std::vector<Client> clients;
  clients.reserve(kClients);
  for (int i = 0; i < kClients; ++i) clients.emplace_back(server.port());
  // Each round: a request in flight on every connection at once, then every answer.
  for (int round = 0; round < kRounds; ++round) {
    for (Client& client : clients) ASSERT_TRUE(client.send(kGet)) << "round " << round;
    for (int i = 0; i < kClients; ++i) {
      const std::optional<Response> response = clients[i].read_response(kPatience);
      ASSERT_TRUE(response) << "round " << round << ", client " << i << ": received " << printable(clients[i].unread());
      ASSERT_EQ(response->body, kHelloWorld);
    }
  }
}

TEST_P(Concurrency, ASilentClientDoesNotDelayOthers) {
  ServerProcess server = start();  // --timeout-ms 5000
  Client silent(server.port());
  Client other(server.port());
  const auto started = Clock::now();
  other.send(kGet);
  expect_hello_world(other.read_response(kPatience));
  EXPECT_LT(millis(Clock::now() - started), 1000);
}

TEST_P(Concurrency, MaxConnectionsHoldsASecondClientUntilTheFirstCloses) {
  std::vector<std::string> args = {"--max-connections", "1"};
  if (has_workers()) args.insert(args.end(), {"--workers", "4"});  // the limit is the server's, not each worker's
  ServerProcess server = start(args);
  Client first(server.port());
  first.send(kGet);
  expect_hello_world(first.read_response(kPatience));  // the first connection is being served

  Client second(server.port());
  second.send(kGet);
  EXPECT_FALSE(second.read_response(300ms)) << "answered while the first connection was open";
  EXPECT_EQ(second.unread(), "");
  EXPECT_FALSE(second.peer_closed()) << "refused instead of held";

  first.close();
  expect_hello_world(second.read_response(kPatience));
}

// ---- Logging ----

// How many lines the server writes to stderr beyond its own start and stop when it answers `requests` GETs.
long stderr_lines_per_requests(std::string_view binary, std::vector<std::string> args, int requests) {
  const auto lines_after = [&](int count) -> long {
    ServerProcess server(binary, args);
    for (int i = 0; i < count; ++i) {
      Client client(server.port());
      client.send("GET /logged-" + std::to_string(i) + " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
      EXPECT_TRUE(client.read_response(kPatience));
    }
    server.stop();  // afterwards stderr_text() holds everything it printed
    const std::string text = server.stderr_text();
    return std::count(text.begin(), text.end(), '\n');
  };
  return lines_after(requests) - lines_after(0);
}

TEST(Logging, BlockingServerLogsOneLinePerRequest) { EXPECT_EQ(stderr_lines_per_requests("main", {}, 3), 3); }

// The concurrent servers log per request only when asked: a line per request costs throughput.
class Logging : public ServerTest {};
RUN_AGAINST_CONCURRENT_SERVERS(Logging);

TEST_P(Logging, LogsOneLinePerRequestWithLogRequests) {
  EXPECT_EQ(stderr_lines_per_requests(binary(), {"--log-requests"}, 3), 3);
}

TEST_P(Logging, LogsNothingPerRequestByDefault) { EXPECT_EQ(stderr_lines_per_requests(binary(), {}, 3), 0); }

// ---- Shutdown ----

class Shutdown : public ServerTest {};
RUN_AGAINST_ALL_SERVERS(Shutdown);

TEST_P(Shutdown, ExitsZeroWithinASecondOnSigterm) {
  ServerProcess server = start();
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait_exit(1s), 0);
}

TEST_P(Shutdown, ExitsZeroWithinASecondOnSigint) {
  ServerProcess server = start();
  server.signal(SIGINT);
  EXPECT_EQ(server.wait_exit(1s), 0);
}

TEST_P(Shutdown, ClosesAConnectionThatSentNothingAndExitsOnSigterm) {
  ServerProcess server = start();  // --timeout-ms 5000: the exit must not wait for it
  Client client(server.port());
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait_exit(1s), 0);
  EXPECT_TRUE(client.is_closed_by_peer(1s));
  EXPECT_EQ(client.unread(), "");
}

TEST_P(Shutdown, FinishesALargeResponseAlreadyInFlight) {
  ServerProcess server = start({"--max-body", "33554432"});
  const std::string body = binary_bytes(16 * 1024 * 1024);
  Client client(server.port());
  // A thread sends, so that a server that echoes while it reads cannot deadlock the test.
  std::atomic<bool> sent{false};
  std::thread sender([&] { sent = client.send(post_request(body), 20s); });
  const bool answering = client.wait_for_bytes(1, 20s);  // the server has read the request, it answers
  sender.join();
  ASSERT_TRUE(sent) << "the server did not read the 16 MiB body";
  ASSERT_TRUE(answering) << "no response to the 16 MiB POST";

  server.signal(SIGTERM);
  const std::optional<Response> response = client.read_response(20s);
  const auto finished_reading = Clock::now();
  ASSERT_TRUE(response) << "the response was cut short: received " << client.unread().size() << " bytes, starting "
                        << printable(client.unread(), 200);
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(response->body == body) << first_difference(body, response->body);
  EXPECT_EQ(server.wait_exit(1s), 0);
  EXPECT_LT(millis(Clock::now() - finished_reading), 1000);
}

// ---- ConcurrentShutdown: with many connections open ----

class ConcurrentShutdown : public ServerTest {};
RUN_AGAINST_CONCURRENT_SERVERS(ConcurrentShutdown);

TEST_P(ConcurrentShutdown, ClosesAnIdleKeepAliveConnectionAndExitsOnSigterm) {
  ServerProcess server = start();
  Client client(server.port());
  client.send(kGet);
  expect_hello_world(client.read_response(kPatience));  // now idle, kept alive for 5 s
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait_exit(1s), 0);
  EXPECT_TRUE(client.is_closed_by_peer(1s));
  EXPECT_EQ(client.unread(), "");
}

// Counts answered requests across threads, and lets the test wait for a number of them.
class AnswerCounter {
 public:
  void add_one() {
    const std::lock_guard lock(mutex_);
    ++count_;
    changed_.notify_all();
  }
  bool wait_for_at_least(int count, Millis timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return count_ >= count; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int count_ = 0;
};

TEST_P(ConcurrentShutdown, CompletesEveryResponseItStartedUnderLoad) {
  ServerProcess server = start();
  constexpr int kClients = 50;
  struct ClientRecord {
    int answered = 0;
    std::string wrong;     // the first response that was not Hello World
    std::string leftover;  // bytes after the last complete response: a truncated response
    bool closed = false;
  };
  std::vector<Client> clients;
  clients.reserve(kClients);
  for (int i = 0; i < kClients; ++i) clients.emplace_back(server.port());
  std::vector<ClientRecord> records(kClients);
  AnswerCounter answered;
  std::atomic<bool> stop{false};

  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      Client& client = clients[i];
      ClientRecord& record = records[i];
      while (!stop && client.send(kGet)) {
        const std::optional<Response> response = client.read_response(kPatience);
        if (!response) break;  // closed by the shutdown (or a failure: see leftover and closed)
        if (response->status != 200 || response->body != kHelloWorld) {
          record.wrong = std::to_string(response->status) + " " + printable(response->body);
          break;
        }
        ++record.answered;
        answered.add_one();
      }
      record.leftover = client.read_until_close(kPatience);
      record.closed = client.peer_closed();
    });
  }

  const bool loaded = answered.wait_for_at_least(kClients * 5, 10s);
  server.signal(SIGTERM);
  const std::optional<int> status = server.wait_exit(1s);
  stop = true;  // should the server still run, the clients stop anyway
  for (std::thread& thread : threads) thread.join();

  EXPECT_TRUE(loaded) << "the clients did not get going";
  EXPECT_EQ(status, 0) << "no exit with status 0 within 1 s of SIGTERM under load";
  for (int i = 0; i < kClients; ++i) {
    SCOPED_TRACE("client " + std::to_string(i) + " after " + std::to_string(records[i].answered) + " responses");
    EXPECT_EQ(records[i].wrong, "");
    EXPECT_EQ(records[i].leftover, "") << "a truncated response";
    EXPECT_TRUE(records[i].closed) << "the connection was neither answered nor closed";
  }
}

TEST_P(Errors, RejectsAnEmptyHostWith400) { expect_rejection("GET / HTTP/1.1\r\nHost:\r\n\r\n", 400); }

TEST_P(Errors, RejectsWhitespaceAfterAChunkSizeWith400) {  // RFC 9112 7.1: only before a ";"
  expect_rejection("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400);
}

TEST_P(Errors, AnswersBytesThatCannotBeginARequestWith400AtOnce) {
  ServerProcess server = start({"--timeout-ms", "10000"});  // a server that waited would answer 408, late
  for (std::string_view start : {std::string_view("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),  // TLS
                                 std::string_view("\0\0\0\0", 4), std::string_view("GET /\r\n")}) {      // HTTP/0.9
    const auto sent_at = Clock::now();
    expect_status_then_close(server.port(), start, 400);
    EXPECT_LT(millis(Clock::now() - sent_at), 2000) << printable(start);
  }
}

TEST_P(Errors, AnswersAHeadThatLeavesNoRoomForItsBodyWith431AndNoReset) {
  // The head fills the read buffer exactly, and a body larger than the socket buffers follows.
  // The 431 must reach a client that is still sending: the server reads and drops the body for
  // a while before it closes, instead of closing on unread bytes, which sends a reset.
  const std::string body(4 << 20, 'b');
  std::string head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::to_string(body.size()) + "\r\nX: \r\n\r\n";
  head.insert(head.size() - 4, buffer_size() - head.size(), 'a');
  ServerProcess server = start({"--max-body", "8388608"});
  Client client(server.port());
  const auto [sent, response] = test_support::send_while_reading(client, head + body, kPatience);
  ASSERT_TRUE(response) << "received " << printable(client.unread()) << (client.peer_reset() ? " then a reset" : "");
  EXPECT_EQ(response->status, 431);
  EXPECT_TRUE(sent) << "the server reset the connection while the client was still sending";
  EXPECT_TRUE(client.is_closed_by_peer(kPatience));
  EXPECT_FALSE(client.peer_reset());
}

TEST_P(Routes, PostEchoesABodyWhoseContentLengthIsAListOfEqualValues) {  // RFC 9112 6.3
  ServerProcess server = start();
  expect_status_then_close(server.port(),
                           "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\nhello", 200,
                           "hello");
}

TEST_P(KeepAlive, AnswersAPipelinedPostWhoseHeadEndsAtTheEndOfTheBuffer) {
  // A GET and then a POST's head fill the read buffer exactly; the body follows.
  const std::string post = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n";
  std::string get = "GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n";
  get.insert(get.size() - 4, buffer_size() - post.size() - get.size(), 'a');
  ServerProcess server = start();
  Client client(server.port());
  ASSERT_TRUE(client.send(get + post));
  std::this_thread::sleep_for(50ms);  // so that the body arrives in a read of its own
  ASSERT_TRUE(client.send("body"));
  expect_hello_world(client.read_response(kPatience));
  const std::optional<Response> echo = client.read_response(kPatience);
  ASSERT_TRUE(echo) << "received " << printable(client.unread());
  EXPECT_EQ(echo->status, 200);
  EXPECT_EQ(echo->body, "body");
}

// A 16 MiB echo to a client that reads none of it: the response cannot finish by itself.
// Returns once the server has started answering.
void start_a_response_nobody_reads(Client& client) {
  const std::string body(16 * 1024 * 1024, 'x');
  std::atomic<bool> sent{false};
  std::thread sender([&] { sent = client.send(post_request(body), 20s); });
  const bool answering = client.wait_for_bytes(1, 20s);
  sender.join();
  ASSERT_TRUE(sent && answering) << "the server did not take the body and start answering";
}

TEST_P(Shutdown, ASecondSignalExitsAtOnce) {
  std::vector<std::string> args = {"--max-body", "33554432", "--timeout-ms", "30000"};
  if (is_concurrent()) args.insert(args.end(), {"--shutdown-timeout-ms", "60000"});
  ServerProcess server = start(args);
  Client client(server.port());
  start_a_response_nobody_reads(client);
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait_exit(300ms), std::nullopt) << "the first signal waits for the response under way";
  const auto second_at = Clock::now();
  server.signal(SIGINT);
  EXPECT_EQ(server.wait_exit(2s), 1);
  EXPECT_LT(millis(Clock::now() - second_at), 1000);
  EXPECT_NE(server.stderr_text().find("second stop signal"), std::string::npos) << server.stderr_text();
}

TEST_P(ConcurrentShutdown, GivesUpOnResponsesStillUnderWayAfterTheShutdownTimeout) {
  ServerProcess server = start({"--max-body", "33554432", "--timeout-ms", "30000", "--shutdown-timeout-ms", "500"});
  Client stuck(server.port());
  start_a_response_nobody_reads(stuck);
  Client idle(server.port());
  ASSERT_TRUE(idle.send(kGet));
  expect_hello_world(idle.read_response(kPatience));
  const auto signalled_at = Clock::now();
  server.signal(SIGTERM);
  EXPECT_TRUE(idle.is_closed_by_peer(kPatience)) << "the idle connection is closed at once";
  EXPECT_EQ(server.wait_exit(3s), 1) << "it waits for the stuck response for 500 ms, not for --timeout-ms";
  const long long took = millis(Clock::now() - signalled_at);
  EXPECT_GE(took, 450);
  EXPECT_LT(took, 2000);
  EXPECT_NE(server.stderr_text().find("shutdown: connections still open after 500 ms"), std::string::npos)
      << server.stderr_text();
}

}  // namespace
