// The two servers share their layers word for word, so that `diff main.cpp main_async.cpp`
// shows only the concurrency lesson (and the event loop shares what does not wait, below). These tests fail as soon as one copy drifts. Where
// concurrency changes a shared section, the change is an ANCHOR region of its own, listed
// below with its reason; only those regions may differ.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <utility>

namespace {

std::string read_source(const std::string& name) {
  std::ifstream file(std::string(PROJECT_DIR) + "/" + name);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// The text from "// ---- NAME ----" up to the next section banner.
std::string section(const std::string& source, const std::string& name) {
  const std::string banner = "// ---- " + name + " ----";
  std::size_t start = source.find(banner);
  if (start == std::string::npos) return "";
  std::size_t end = source.find("\n// ---- ", start + banner.size());
  return source.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

struct ConcurrencyRegion {
  const char* name;
  const char* why;
};
constexpr ConcurrencyRegion kConcurrencyRegions[] = {
    {"reader_stop", "main's Reader watches the stop pipe; a main_async thread is woken by shutdown()"},
    {"reader_wait", "main waits in poll() for bytes or a stop; main_async lets recv() wait (SO_RCVTIMEO)"},
    {"reader_state", "what each way of waiting keeps"},
};

// The lines inside "// ANCHOR: name" ... "// ANCHOR_END: name", or npos if there is no such region.
std::pair<std::size_t, std::size_t> region(const std::string& source, const std::string& name) {
  std::size_t begin = source.find("// ANCHOR: " + name + "\n");
  std::size_t end = source.find("// ANCHOR_END: " + name + "\n");
  if (begin == std::string::npos || end == std::string::npos || end < begin) return {std::string::npos, 0};
  begin = source.find('\n', begin) + 1;
  return {begin, source.rfind('\n', end) + 1};
}

std::string without_concurrency_regions(std::string source) {
  for (const ConcurrencyRegion& exception : kConcurrencyRegions) {
    auto [begin, end] = region(source, exception.name);
    if (begin != std::string::npos) source.replace(begin, end - begin, "  (differs: " + std::string(exception.why) + ")\n");
  }
  return source;
}

TEST(Sources, EveryConcurrencyRegionIsInBothServersAndDiffers) {
  const std::string blocking = read_source("main.cpp"), async = read_source("main_async.cpp");
  for (const ConcurrencyRegion& exception : kConcurrencyRegions) {
    auto [b_begin, b_end] = region(blocking, exception.name);
    auto [a_begin, a_end] = region(async, exception.name);
    ASSERT_NE(b_begin, std::string::npos) << "main.cpp has no region " << exception.name;
    ASSERT_NE(a_begin, std::string::npos) << "main_async.cpp has no region " << exception.name;
    EXPECT_NE(blocking.substr(b_begin, b_end - b_begin), async.substr(a_begin, a_end - a_begin))
        << exception.name << " is the same in both files: it need not be listed";
  }
}

class SharedSection : public ::testing::TestWithParam<const char*> {};

TEST_P(SharedSection, IsIdenticalInBothServers) {
  const std::string blocking = without_concurrency_regions(section(read_source("main.cpp"), GetParam()));
  const std::string async = without_concurrency_regions(section(read_source("main_async.cpp"), GetParam()));
  ASSERT_FALSE(blocking.empty()) << "main.cpp has no section " << GetParam();
  ASSERT_FALSE(async.empty()) << "main_async.cpp has no section " << GetParam();
  EXPECT_EQ(blocking, async) << "the \"" << GetParam() << "\" sections differ; diff the two files";
}

INSTANTIATE_TEST_SUITE_P(Sources, SharedSection,
                         ::testing::Values("TCP layer", "HTTP layer", "Application", "Stopping"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::erase(name, ' ');
                           return name;
                         });

// The event-loop server (tutorial/code/main_epoll.cpp) cannot share whole sections: its
// reading and writing never wait, so its Reader, Writer and body readers are its own. What
// does not wait is shared, region by region: the socket and listener, the parser, the body's
// memory, the response, the application and the stop signal.
constexpr const char* kRegionsSharedWithTheEventLoop[] = {
    "socket",        "listen_on",   "local_url",    "status",          "reason_phrase", "request",
    "syntax",        "scan_head",   "request_line", "field_line",      "parse_head",    "limits",
    "body_deadline", "body",        "chunk_extension", "http_date",    "write_response", "error_response",
    "handle",        "stop_signal",
};

class RegionSharedWithTheEventLoop : public ::testing::TestWithParam<const char*> {};

TEST_P(RegionSharedWithTheEventLoop, IsIdenticalInMainAndMainEpoll) {
  const std::string blocking = read_source("main.cpp"), epoll = read_source("tutorial/code/main_epoll.cpp");
  auto [b_begin, b_end] = region(blocking, GetParam());
  auto [e_begin, e_end] = region(epoll, GetParam());
  ASSERT_NE(b_begin, std::string::npos) << "main.cpp has no region " << GetParam();
  ASSERT_NE(e_begin, std::string::npos) << "main_epoll.cpp has no region " << GetParam();
  EXPECT_EQ(blocking.substr(b_begin, b_end - b_begin), epoll.substr(e_begin, e_end - e_begin))
      << "region " << GetParam() << " differs between main.cpp and tutorial/code/main_epoll.cpp";
}

INSTANTIATE_TEST_SUITE_P(Sources, RegionSharedWithTheEventLoop, ::testing::ValuesIn(kRegionsSharedWithTheEventLoop),
                         [](const auto& info) { return std::string(info.param); });

// Every function of main.cpp's HTTP layer that does not wait is in a shared region: a helper
// added to the parser outside one would let the two copies drift unnoticed.
TEST(Sources, TheEventLoopSharesEveryHttpFunctionThatDoesNotWait) {
  const std::string blocking = section(read_source("main.cpp"), "HTTP layer");
  std::string shared;
  for (const char* name : kRegionsSharedWithTheEventLoop) {
    auto [begin, end] = region(read_source("main.cpp"), name);
    if (begin != std::string::npos) shared += read_source("main.cpp").substr(begin, end - begin);
  }
  // The functions that wait for the client, and serve_request, which calls them.
  const std::string waits[] = {"rejected(", "read_request_head(", "read_exactly(", "read_line(",
                               "read_chunked_body(", "read_body(", "serve_request("};
  std::istringstream lines(blocking);
  for (std::string line; std::getline(lines, line);) {
    const bool defines_function = !line.empty() && line[0] != ' ' && line[0] != '/' && line.back() == '{' &&
                                  line.find('(') != std::string::npos && line.find("struct") != 0 &&
                                  line.find("class") != 0 && line.find("enum") != 0;
    if (!defines_function) continue;
    bool waiting = false;
    for (const std::string& name : waits) waiting |= line.find(" " + name) != std::string::npos;
    if (!waiting) {
      EXPECT_NE(shared.find(line), std::string::npos) << "not in a region shared with main_epoll: " << line;
    }
  }
}

TEST(Sources, SectionsComeInTutorialOrder) {
  for (const char* file : {"main.cpp", "main_async.cpp"}) {
    const std::string source = read_source(file);
    std::size_t last = 0;
    for (const char* name : {"Configuration", "TCP layer", "HTTP layer", "Application", "Stopping", "Server", "main"}) {
      std::size_t at = source.find(std::string("// ---- ") + name + " ----");
      ASSERT_NE(at, std::string::npos) << file << " has no section " << name;
      EXPECT_GT(at, last) << file << ": section " << name << " is out of order";
      last = at;
    }
  }
}

}  // namespace
