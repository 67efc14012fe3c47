// The two servers share their layers word for word, so that `diff main.cpp main_async.cpp`
// shows only the concurrency lesson. These tests fail as soon as one copy drifts.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

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

class SharedSection : public ::testing::TestWithParam<const char*> {};

TEST_P(SharedSection, IsIdenticalInBothServers) {
  const std::string blocking = section(read_source("main.cpp"), GetParam());
  const std::string async = section(read_source("main_async.cpp"), GetParam());
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
