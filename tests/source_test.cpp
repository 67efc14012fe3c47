// The two servers share their layers word for word, so that `diff main.cpp main_async.cpp`
// shows only the concurrency lesson. These tests fail as soon as one copy drifts. Where
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
