// The event loop's own HTTP code (tutorial/code/main_epoll.cpp): reading a request that arrives
// in pieces, the resumable chunked decoder, sending without waiting, and the deadline list.
// The parser, the response and the application are main.cpp's text (tests/source_test.cpp),
// so http_rules.inc's rules on them hold here too; these rules are about what is not shared.
#define HTTP_SERVER_NO_MAIN
#include "../tutorial/code/main_epoll.cpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "test_support.hpp"

// main() is compiled out; taking these addresses keeps its helpers from counting as unused.
[[maybe_unused]] static const auto kUsesParseOptions = &parse_options;
[[maybe_unused]] static const auto kUsesRunServer = &run_server;

namespace {

// A non-blocking socket pair: the test writes as the client, the server side reads with Input.
struct Pipe {
  Socket client, server;
  Pipe() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0) {
      client = Socket(fds[0]);
      server = Socket(fds[1]);
    }
  }
  void say(std::string_view bytes) const {
    EXPECT_EQ(::send(client.fd(), bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  }
};

// One connection's reading state, as a Worker keeps it.
struct Reading {
  explicit Reading(std::size_t buffer_size = kDefaultBufferSize, std::uint64_t body_memory = 1 << 20)
      : in(buffer_size), out(std::max(buffer_size, kResponseHeadRoom)), budget(body_memory), body(budget),
        input(in), writer(out) {}
  std::vector<char> in, out;
  BodyBudget budget;
  Body body;
  Input input;
  Writer writer;
  Assembly assembly;
  Limits limits{kDefaultMaxBody, std::chrono::milliseconds(1000)};
  Pipe pipe;

  // The client sends `bytes`; the server receives and assembles, as one wake-up does.
  std::optional<Status> wake_with(std::string_view bytes) {
    pipe.say(bytes);
    if (input.receive(pipe.server.fd()) != Received::Data) ADD_FAILURE() << "no data received";
    return assemble_request(assembly, input, writer, body, limits, Clock::now());
  }
  // The client sends `bytes`; the server takes wake-up after wake-up until it answers or has
  // read everything.
  std::optional<Status> wake_until_answered(std::string_view bytes) {
    pipe.say(bytes);
    while (input.receive(pipe.server.fd()) == Received::Data) {
      if (std::optional<Status> status = assemble_request(assembly, input, writer, body, limits, Clock::now())) {
        return status;
      }
    }
    return std::nullopt;
  }
  // The client sends `bytes` one at a time, a wake-up each; the status of the first that
  // ended the request.
  std::optional<Status> byte_by_byte(std::string_view bytes) {
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      if (std::optional<Status> status = wake_with(bytes.substr(i, 1))) {
        EXPECT_EQ(i + 1, bytes.size()) << "answered before its last byte: " << static_cast<int>(*status);
        return status;
      }
    }
    return std::nullopt;
  }
};

using test_support::kChunkedPost;  // the same chunked POST the integration tests send
using test_support::kChunkedPostBody;

TEST(Assembly, ReadsARequestHeadThatArrivesOneByteAtATime) {
  Reading r;
  EXPECT_EQ(r.byte_by_byte("GET /path?q=1 HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n"), Status::OK);
  EXPECT_EQ(r.assembly.head.request.method, "GET");
  EXPECT_EQ(r.assembly.head.request.target, "/path?q=1");
  EXPECT_FALSE(r.assembly.head.request.keep_alive);
}

TEST(Assembly, ReadsAContentLengthBodyThatArrivesOneByteAtATime) {
  Reading r;
  EXPECT_EQ(r.byte_by_byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"), Status::OK);
  EXPECT_EQ(r.body.bytes(), "hello world");
}

TEST(Assembly, DecodesAChunkedBodyCutAtEveryByte) {
  for (std::size_t cut = 1; cut < kChunkedPost.size(); ++cut) {
    Reading r;
    EXPECT_EQ(r.wake_with(kChunkedPost.substr(0, cut)), std::nullopt) << "cut at " << cut;
    EXPECT_EQ(r.wake_with(kChunkedPost.substr(cut)), Status::OK) << "cut at " << cut;
    EXPECT_EQ(r.body.bytes(), kChunkedPostBody) << "cut at " << cut;
  }
}

TEST(Assembly, DecodesAChunkedBodyThatArrivesOneByteAtATime) {
  Reading r;
  EXPECT_EQ(r.byte_by_byte(kChunkedPost), Status::OK);
  EXPECT_EQ(r.body.bytes(), kChunkedPostBody);
}

TEST(Assembly, LeavesAPipelinedRequestBufferedForTheNextTurn) {
  Reading r;
  EXPECT_EQ(r.wake_with("GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"), Status::OK);
  EXPECT_EQ(r.assembly.head.request.target, "/a");
  r.input.release();  // the keep-alive turn, as Worker::next_request()
  r.assembly = Assembly();
  EXPECT_EQ(assemble_request(r.assembly, r.input, r.writer, r.body, r.limits, Clock::now()), Status::OK);
  EXPECT_EQ(r.assembly.head.request.target, "/b");
}

TEST(Assembly, IgnoresEmptyLinesBeforeTheRequestLineEvenInPieces) {
  Reading r;
  EXPECT_EQ(r.wake_with("\r\n"), std::nullopt);
  EXPECT_EQ(r.wake_with("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), Status::OK);
}

TEST(Assembly, RejectsABadRequestLineAsSoonAsItEnds) {
  Reading r;
  EXPECT_EQ(r.wake_with("GET /\r\n"), Status::BadRequest);  // HTTP/0.9: no head will ever follow
}

TEST(Assembly, WritesOneHundredContinueBeforeTheBodyArrives) {
  Reading r;
  EXPECT_EQ(r.wake_with("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"),
            std::nullopt);
  EXPECT_FALSE(r.writer.empty());
  EXPECT_EQ(r.writer.send(r.pipe.server.fd()), Sent::All);
  char got[64] = {};
  EXPECT_EQ(::recv(r.pipe.client.fd(), got, sizeof got, 0), 25);
  EXPECT_STREQ(got, "HTTP/1.1 100 Continue\r\n\r\n");
  EXPECT_EQ(r.wake_with("ok"), Status::OK);
  EXPECT_EQ(r.body.bytes(), "ok");
}

TEST(Assembly, AnswersAHeadLargerThanTheBufferWith431) {
  Reading r(kMinBufferSize);
  EXPECT_EQ(r.wake_with("GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + std::string(40, 'x')), Status::HeaderFieldsTooLarge);
}

TEST(Assembly, AnswersARequestLineLargerThanTheBufferWith414) {
  Reading r(kMinBufferSize);
  EXPECT_EQ(r.wake_with("GET /" + std::string(kMinBufferSize, 'a')), Status::UriTooLong);
}

TEST(Assembly, AnswersAHeadThatLeavesNoRoomForItsBodyWith431) {
  const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nX: ";
  Reading r(head.size() + 4);  // the head fills the buffer exactly
  EXPECT_EQ(r.wake_with(head + "y\r\n\r\n"), Status::HeaderFieldsTooLarge);
}

TEST(Assembly, AnswersAChunkSizeLineLargerThanTheBufferWith400AndATrailerWith431) {
  const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  {
    Reading r(kMinBufferSize * 2);
    EXPECT_EQ(r.wake_with(head), std::nullopt);
    EXPECT_EQ(r.wake_until_answered("1;" + std::string(kMinBufferSize * 2, 'e')), Status::BadRequest);
  }
  {
    Reading r(kMinBufferSize * 2);
    EXPECT_EQ(r.wake_with(head), std::nullopt);
    EXPECT_EQ(r.wake_until_answered("0\r\nX: " + std::string(kMinBufferSize * 2, 'v')), Status::HeaderFieldsTooLarge);
  }
}

TEST(Assembly, RejectsChunkDataNotFollowedByCrlf) {
  Reading r;
  EXPECT_EQ(r.wake_with("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n"),
            Status::BadRequest);
}

TEST(Assembly, AnswersChunksBeyondMaxBodyWith413AndBeyondBodyMemoryWith503) {
  const std::string head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  {
    Reading r;
    r.limits.max_body = 4;
    EXPECT_EQ(r.wake_with(head + "3\r\nabc\r\n2\r\n"), Status::ContentTooLarge);
  }
  {
    Reading r(kDefaultBufferSize, 4);  // bodies may hold 4 bytes in all
    EXPECT_EQ(r.wake_with(head + "3\r\nabc\r\n2\r\n"), Status::ServiceUnavailable);
  }
}

TEST(Assembly, ExtendsTheBodysDeadlineByEachChunksSize) {
  Reading r;
  EXPECT_EQ(r.wake_with("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), std::nullopt);
  const Deadline first = r.assembly.deadline;
  EXPECT_EQ(r.wake_with("10000\r\n"), std::nullopt);  // 64 KiB: one second more
  EXPECT_EQ(r.assembly.deadline - first, std::chrono::seconds(1));
}

TEST(Writer, SendsALargeBodyFromWhereItIsAfterTheHead) {
  std::vector<char> buffer(kResponseHeadRoom);
  Writer writer(buffer);
  const std::string body(100000, 'b');
  write_response(writer, {Status::OK, "application/octet-stream", body, {}}, true, Persistence::KeepAlive);
  Pipe pipe;
  std::string received;
  for (int rounds = 0; rounds < 1000 && received.size() < body.size(); ++rounds) {
    const Sent sent = writer.send(pipe.server.fd());
    ASSERT_NE(sent, Sent::Failed);
    char chunk[65536];
    for (ssize_t n; (n = ::recv(pipe.client.fd(), chunk, sizeof chunk, 0)) > 0;) received.append(chunk, n);
    if (sent == Sent::All) break;
  }
  EXPECT_TRUE(writer.empty());
  ASSERT_GT(received.size(), body.size());
  EXPECT_TRUE(received.starts_with("HTTP/1.1 200 OK\r\n"));
  EXPECT_EQ(received.substr(received.size() - body.size()), body);
}

TEST(Writer, SaysPartlyWhenTheSocketIsFullAndFailedWhenThePeerIsGone) {
  std::vector<char> buffer(kResponseHeadRoom);
  Writer writer(buffer);
  const std::string body(4 << 20, 'b');  // more than a socket pair holds
  writer.write(body);
  Pipe pipe;
  EXPECT_EQ(writer.send(pipe.server.fd()), Sent::Partly);
  EXPECT_FALSE(writer.empty());
  ::signal(SIGPIPE, SIG_IGN);
  pipe.client = Socket();
  EXPECT_EQ(writer.send(pipe.server.fd()), Sent::Failed);
}

TEST(Deadlines, KeepsConnectionsSoonestFirstWhateverTheOrderTheyAreSet) {
  Deadlines deadlines;
  Connection a, b, c;
  const Deadline t0 = Clock::now();
  deadlines.set(a, t0 + std::chrono::seconds(5));
  deadlines.set(b, t0 + std::chrono::seconds(9));  // a body's longer deadline
  deadlines.set(c, t0 + std::chrono::seconds(6));  // walks back past it
  std::vector<Connection*> order;
  for (Connection* at = deadlines.first(); at != nullptr; at = at->later) order.push_back(at);
  EXPECT_EQ(order, (std::vector<Connection*>{&a, &c, &b}));

  deadlines.set(a, t0 + std::chrono::seconds(10));  // moved: from first to last
  deadlines.remove(c);
  deadlines.remove(c);  // removing twice is harmless
  order.clear();
  for (Connection* at = deadlines.first(); at != nullptr; at = at->later) order.push_back(at);
  EXPECT_EQ(order, (std::vector<Connection*>{&b, &a}));
  deadlines.remove(a);
  deadlines.remove(b);
  EXPECT_EQ(deadlines.first(), nullptr);
}

TEST(ConnectionSlots, GivesNoMoreThanItHasUntilOneComesBack) {
  ConnectionSlots slots(2);
  EXPECT_TRUE(slots.take());
  EXPECT_TRUE(slots.take());
  EXPECT_FALSE(slots.take());
  slots.give_back();
  EXPECT_TRUE(slots.take());
}

TEST(BufferPool, HandsBackTheSameBuffersWithoutAllocating) {
  BodyBudget budget(1 << 20);
  BufferPool pool(kMinBufferSize, budget);
  Buffers* first = pool.take();
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(pool.output(*first).size(), kResponseHeadRoom);  // a response head always fits
  pool.give_back(first);
  EXPECT_EQ(pool.take(), first);
  pool.give_back(first);
}

}  // namespace
