// The HTTP layer rules, checked against main.cpp's copy of the HTTP layer.
#define HTTP_SERVER_NO_MAIN
#include "../main.cpp"

// main() is compiled out; taking these addresses keeps its helpers from counting as unused.
[[maybe_unused]] static const auto kUsesParseOptions = &parse_options;
[[maybe_unused]] static const auto kUsesRunServer = &run_server;

#define SERVER_TAG Blocking
constexpr std::size_t kServerBufferSize = kBufferSize;
// main's Reader also watches a stop descriptor; -1 is one poll() skips, so it never fires.
Reader make_reader(const Socket& socket, std::span<char> buffer) { return Reader(socket, buffer, -1); }

#include "http_rules.inc"
