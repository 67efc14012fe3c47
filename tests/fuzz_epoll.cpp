// fuzz_epoll.cpp: a libFuzzer target for the event loop's own HTTP code: the request assembly
// and the resumable chunked decoder of tutorial/code/main_epoll.cpp.
//
//   make fuzz                                    # every server's target, FUZZ_SECONDS each
//   build/fuzz/fuzz_http_epoll -max_total_time=60 build/fuzz/corpus_epoll tests/fuzz_corpus
//
// main_epoll reads a request in whatever pieces the socket hands it, one wake-up at a time,
// and must come to the same answer however the bytes were cut. So each input is read twice
// by the server's own Input, assemble_request() and keep-alive turn (as Worker::next_request
// does): once in the pieces the input names, once in one piece. Both conversations must give
// the same requests, statuses, bodies and ending; AddressSanitizer watches every byte read.
// Only recv() is simulated: it hands out the client's bytes piece by piece, and says EAGAIN
// between two pieces, as a non-blocking socket does between two wake-ups.
//
// Input layout (the same as fuzz_http.cpp's, so that both replay tests/fuzz_corpus):
//   byte 0     options: bit 1: keep-alive allowed; bit 2: --max-body 64 (else 1 MiB); bit 4:
//              the bodies may hold 32 bytes at most (else 1 GiB); bits 6-7: the buffer size:
//              4096, 64, 100 or 1024. (Bits 0, 3 and 5 are fuzz_http.cpp's.)
//   byte 1     unused here
//   byte 2     K: how many piece lengths follow (K % 16; 0: the bytes come in one piece)
//   K bytes    piece lengths, used in turn, again and again (0 stands for 256)
//   the rest   the bytes the client sends
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

ssize_t fuzz_recv(int fd, void* buffer, std::size_t length, int flags);

#define recv fuzz_recv
#define HTTP_SERVER_NO_MAIN
#include "../tutorial/code/main_epoll.cpp"
#undef recv

// main() is compiled out; taking these addresses keeps its helpers from counting as unused.
[[maybe_unused]] static const auto kUsesParseOptions = &parse_options;
[[maybe_unused]] static const auto kUsesRunServer = &run_server;

namespace fuzz {

struct Peer {
  std::string_view sends;
  std::vector<std::size_t> pieces;  // empty: one piece
  std::size_t delivered = 0;
  std::size_t piece_index = 0;
  std::size_t piece_left = 0;
};
Peer peer;

// What one conversation amounted to, request by request.
struct Outcome {
  Status status;
  std::string method, target, body;
  bool operator==(const Outcome&) const = default;
};
struct Conversation {
  std::vector<Outcome> answered;
  bool ended_mid_request = false;  // the client closed with a request begun (the server would close too)
  bool operator==(const Conversation&) const = default;
};

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_epoll: %s\n", what);
  std::abort();
}

Conversation converse(std::string_view sends, std::vector<std::size_t> pieces, std::size_t buffer_size,
                      const Limits& limits, std::uint64_t body_memory, bool keep_alive) {
  peer = Peer{sends, std::move(pieces)};
  static const int sink = ::open("/dev/null", O_WRONLY | O_CLOEXEC);  // where responses go
  std::vector<char> in(buffer_size), out(std::max(buffer_size, kResponseHeadRoom));
  BodyBudget budget(body_memory);
  Body body(budget);
  Input input(in);
  Writer writer(out);
  Assembly assembly;
  Conversation conversation;
  bool need_bytes = true;
  for (;;) {
    if (need_bytes) {
      switch (input.receive(0)) {
        case Received::Again: continue;  // the next wake-up
        case Received::NoRoom: fail("receive() found no room: assemble_request() should have answered");
        case Received::Ended:
          conversation.ended_mid_request = assembly.step == Assembly::Step::Body || !input.buffered().empty();
          return conversation;
        case Received::Data: break;
      }
    }
    std::optional<Status> status = assemble_request(assembly, input, writer, body, limits, Clock::now());
    if (!status) {
      if (!input.has_room()) fail("assemble_request() wants more bytes but left no room for them");
      need_bytes = true;
      continue;
    }
    const Request& request = assembly.head.request;
    const Response response = *status == Status::OK ? handle(request, body.bytes()) : error_response(*status);
    write_response(writer, response, request.method != "HEAD", Persistence::KeepAlive);
    if (writer.send(sink) != Sent::All) fail("a response did not go to /dev/null in one go");
    // What a rejected request's head held depends on when it was rejected (a request line is
    // checked as soon as it ends, before the rest of the head), so only its status is compared.
    if (*status == Status::OK) {
      conversation.answered.push_back(
          {*status, std::string(request.method), std::string(request.target), std::string(body.bytes())});
    } else {
      conversation.answered.push_back({*status, {}, {}, {}});
    }
    if (*status != Status::OK || !keep_alive || !request.keep_alive) return conversation;
    input.release();  // the keep-alive turn, as Worker::next_request()
    body.clear();
    assembly = Assembly();
    need_bytes = input.buffered().empty();
  }
}

void run(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return;
  const std::uint8_t options = data[0];
  const std::size_t piece_count = data[2] % 16;
  if (size < 3 + piece_count) return;
  std::vector<std::size_t> pieces;
  for (std::size_t i = 0; i < piece_count; ++i) pieces.push_back(data[3 + i] == 0 ? 256 : data[3 + i]);
  const std::string_view sends(reinterpret_cast<const char*>(data + 3 + piece_count), size - 3 - piece_count);

  constexpr std::size_t kBufferSizes[] = {kDefaultBufferSize, kMinBufferSize, 100, 1024};
  const std::size_t buffer_size = kBufferSizes[options >> 6];
  const Limits limits{(options & 4) != 0 ? 64u : kDefaultMaxBody, std::chrono::milliseconds(kDefaultTimeoutMs)};
  const std::uint64_t body_memory = (options & 16) != 0 ? 32 : std::uint64_t{1} << 30;
  const bool keep_alive = (options & 2) != 0;

  const Conversation in_pieces = converse(sends, pieces, buffer_size, limits, body_memory, keep_alive);
  const Conversation whole = converse(sends, {}, buffer_size, limits, body_memory, keep_alive);
  if (!(in_pieces == whole)) fail("the same bytes in other pieces got other answers");
}

}  // namespace fuzz

// The socket: the next bytes of the current piece, as many as fit; EAGAIN when the piece is
// used up (the next call starts the next one); 0 once everything has been delivered.
ssize_t fuzz_recv(int, void* buffer, std::size_t length, int) {
  fuzz::Peer& p = fuzz::peer;
  if (p.delivered == p.sends.size()) return 0;
  if (p.piece_left == 0) {
    p.piece_left = p.pieces.empty() ? p.sends.size() : p.pieces[p.piece_index++ % p.pieces.size()];
    if (p.delivered > 0) {
      errno = EAGAIN;
      return -1;
    }
  }
  const std::size_t n = std::min({length, p.piece_left, p.sends.size() - p.delivered});
  std::memcpy(buffer, p.sends.data() + p.delivered, n);
  p.delivered += n;
  p.piece_left -= n;
  return static_cast<ssize_t>(n);
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::run(data, size);
  return 0;
}

#ifdef FUZZ_REPLAY_MAIN
// Without libFuzzer: replays every file named, or every file in the directories named.
int main(int argc, char** argv) {
  std::size_t replayed = 0;
  for (int i = 1; i < argc; ++i) {
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(argv[i])) {
      for (const auto& entry : std::filesystem::directory_iterator(argv[i])) files.push_back(entry.path());
    } else {
      files.emplace_back(argv[i]);
    }
    for (const auto& file : files) {
      std::ifstream in(file, std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
      ++replayed;
    }
  }
  std::printf("fuzz_epoll: replayed %zu inputs, every one answered alike in pieces and whole\n", replayed);
  return 0;
}
#endif
