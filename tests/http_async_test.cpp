// The HTTP layer rules, checked against main_async.cpp's copy of the HTTP layer.
#define HTTP_SERVER_NO_MAIN
#include "../main_async.cpp"

// main() is compiled out; taking these addresses keeps its helpers from counting as unused.
[[maybe_unused]] static const auto kUsesParseOptions = &parse_options;
[[maybe_unused]] static const auto kUsesRunServer = &run_server;

#define SERVER_TAG Async
constexpr std::size_t kServerBufferSize = kDefaultBufferSize;
// main_async's Reader waits in recv() itself.
Reader make_reader(const Socket& socket, std::span<char> buffer) { return Reader(socket, buffer); }

#include "http_rules.inc"
