// The tool that keeps the tutorial's code blocks equal to the source: does it notice drift?
#define TUTORIAL_CODE_NO_MAIN
#include "tutorial_code.cpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace {

namespace fs = std::filesystem;
using tutorial_code::process;

// A scratch repository: one source file with regions, chapters written per test.
class TutorialCode : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("tutorial_code_test_" + std::to_string(::getpid()));
    fs::create_directories(root_ / "tutorial");
    write("server.cpp",
          "int before;\n"
          "// ANCHOR: outer\n"
          "struct Reader {\n"
          "  // ANCHOR: inner\n"
          "  int fill();\n"
          "  // ANCHOR_END: inner\n"
          "};\n"
          "// ANCHOR_END: outer\n");
  }
  void TearDown() override { fs::remove_all(root_); }

  void write(const std::string& path, const std::string& text) { std::ofstream(root_ / path) << text; }
  tutorial_code::Result run(const std::string& chapter) { return process(chapter, root_ / "tutorial", root_); }

  fs::path root_;
};

const std::string kOuter = "struct Reader {\n  int fill();\n};\n";

TEST_F(TutorialCode, ABlockEqualToItsRegionIsInSync) {
  std::string chapter = "Text.\n\n<!-- include: server.cpp outer -->\n```cpp\n" + kOuter + "```\n";
  auto result = run(chapter);
  EXPECT_TRUE(result.problems.empty());
  EXPECT_EQ(result.included, 1);
  EXPECT_EQ(result.differing, 0);
  EXPECT_EQ(result.text, chapter);
}

TEST_F(TutorialCode, NestedRegionsAreDedentedAndTheirMarkersLeftOut) {
  auto result = run("<!-- include: server.cpp inner -->\n```cpp\nint fill();\n```\n");
  EXPECT_TRUE(result.problems.empty()) << result.problems[0].message;
}

TEST_F(TutorialCode, ReportsABlockThatDriftedAndRewritesIt) {
  std::string stale = "<!-- include: server.cpp outer -->\n```cpp\nstruct Reader {\n  int fill(int);\n};\n```\n";
  auto result = run(stale);
  ASSERT_EQ(result.problems.size(), 1u);
  EXPECT_EQ(result.problems[0].line, 4u);  // the first line that differs
  EXPECT_NE(result.problems[0].message.find("int fill();"), std::string::npos);
  EXPECT_TRUE(result.problems[0].rewritten);  // --write fixes it
  EXPECT_EQ(result.differing, 1);
  EXPECT_EQ(result.text, "<!-- include: server.cpp outer -->\n```cpp\n" + kOuter + "```\n");
}

TEST_F(TutorialCode, ReportsExtraLinesInTheChapter) {
  auto result = run("<!-- include: server.cpp inner -->\n```cpp\nint fill();\nint extra;\n```\n");
  ASSERT_EQ(result.problems.size(), 1u);
  EXPECT_NE(result.problems[0].message.find("extra lines"), std::string::npos);
}

TEST_F(TutorialCode, AddsTheBlockWhenAMarkerHasNone) {
  auto result = run("<!-- include: server.cpp inner -->\nProse.\n");
  ASSERT_EQ(result.problems.size(), 1u);
  EXPECT_EQ(result.text, "<!-- include: server.cpp inner -->\n```cpp\nint fill();\n```\nProse.\n");
}

TEST_F(TutorialCode, ReportsAMissingRegionOrFile) {
  auto missing_region = run("<!-- include: server.cpp nowhere -->\n```cpp\n```\n");
  ASSERT_EQ(missing_region.problems.size(), 1u);
  EXPECT_NE(missing_region.problems[0].message.find("no region 'nowhere'"), std::string::npos);
  EXPECT_FALSE(missing_region.problems[0].rewritten);  // --write cannot
  auto missing_file = run("<!-- include: gone.cpp outer -->\n```cpp\n```\n");
  ASSERT_EQ(missing_file.problems.size(), 1u);
  EXPECT_NE(missing_file.problems[0].message.find("cannot read gone.cpp"), std::string::npos);
}

TEST_F(TutorialCode, ReportsARegionThatIsNeverClosed) {
  write("open.cpp", "// ANCHOR: open\nint x;\n");
  auto result = run("<!-- include: open.cpp open -->\n```cpp\nint x;\n```\n");
  ASSERT_EQ(result.problems.size(), 1u);
  EXPECT_NE(result.problems[0].message.find("never closed"), std::string::npos);
}

TEST_F(TutorialCode, WithoutARegionNameShowsTheWholeFile) {
  write("snippet.inc", "int a;\n// ANCHOR: x\nint b;\n// ANCHOR_END: x\n");
  auto result = run("<!-- include: snippet.inc -->\n```cpp\nint a;\nint b;\n```\n");
  EXPECT_TRUE(result.problems.empty());
}

TEST_F(TutorialCode, CppNotFromTheSourceMustBeMarkedAsNotInTheProject) {
  auto unmarked = run("Here is a loop:\n\n```cpp\nfor (;;) {}\n```\n");
  ASSERT_EQ(unmarked.problems.size(), 1u);
  EXPECT_EQ(unmarked.problems[0].line, 3u);
  auto marked = run("A sketch (not in the project):\n\n```cpp\nfor (;;) {}\n```\n");
  EXPECT_TRUE(marked.problems.empty());
  EXPECT_EQ(marked.sketches, 1);
  auto shell = run("Run:\n\n```console\n$ make\n```\n");  // only C++ needs the mark
  EXPECT_TRUE(shell.problems.empty());
}

TEST_F(TutorialCode, ReportsLinksToMissingFiles) {
  write("tutorial/02-next.md", "");
  auto result = run("[Next](02-next.md) [Source](../server.cpp#L1) [Gone](03-gone.md) [Web](https://example.org)\n");
  ASSERT_EQ(result.problems.size(), 1u);
  EXPECT_NE(result.problems[0].message.find("03-gone.md"), std::string::npos);
}

}  // namespace
