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

// ---- --coverage ----

class TutorialCoverage : public TutorialCode {
 protected:
  void SetUp() override {
    TutorialCode::SetUp();
    write("base.cpp",
          "// ANCHOR: one\n"
          "int a;\n"
          "int b;\n"
          "// ANCHOR_END: one\n"
          "// ANCHOR: two\n"
          "int c;  // a comment after code counts\n"
          "// a comment alone does not\n"
          "\n"
          "int d;\n"
          "// ANCHOR_END: two\n");
    write("later.cpp",  // a and b as in base.cpp, then two lines of its own
          "// ANCHOR: one\n"
          "int a;\n"
          "int b;\n"
          "// ANCHOR_END: one\n"
          "// ANCHOR: own\n"
          "int e;\n"
          "int f;\n"
          "// ANCHOR_END: own\n");
    limits_.sources = {"base.cpp", "later.cpp"};
  }
  tutorial_code::Coverage cover(std::vector<std::pair<std::string, std::string>> chapters) {
    std::vector<tutorial_code::Chapter> read;
    for (auto& [name, markdown] : chapters) read.push_back({name, markdown, run(markdown).blocks, {}});
    return tutorial_code::check_coverage(read, root_, limits_);
  }
  static std::string block(const std::string& marker) { return "<!-- include: " + marker + " -->\n```cpp\n```\n"; }
  static bool mentions(const tutorial_code::Coverage& c, const std::string& words) {
    for (const std::string& p : c.problems) if (p.find(words) != std::string::npos) return true;
    return false;
  }
  tutorial_code::Limits limits_;
};

TEST_F(TutorialCoverage, CountsCodeLinesOfTheBaseAndOnlyTheLinesALaterServerChanges) {
  auto c = cover({{"01.md", block("base.cpp one")}});
  ASSERT_EQ(c.sources.size(), 2u);
  EXPECT_EQ(c.sources[0].counted, 4u);  // a b c d: not the comment, the blank or the markers
  EXPECT_EQ(c.sources[0].shown, 2u);
  EXPECT_EQ(c.sources[0].not_shown.at("two"), 2u);
  EXPECT_EQ(c.sources[1].counted, 2u);  // e and f; a and b are base.cpp's
  EXPECT_EQ(c.sources[1].shown, 0u);
  EXPECT_TRUE(mentions(c, "base.cpp: 50.0% of its counted code lines shown"));
  EXPECT_TRUE(mentions(c, "later.cpp: 0.0%"));
}

TEST_F(TutorialCoverage, EverythingShownOnceHasNoProblems) {
  auto c = cover({{"01.md", block("base.cpp one") + block("base.cpp two")}, {"02.md", block("later.cpp own")}});
  EXPECT_TRUE(c.problems.empty()) << c.problems[0];
  EXPECT_EQ(c.sources[0].shown, 4u);
  EXPECT_EQ(c.sources[1].shown, 2u);
}

TEST_F(TutorialCoverage, AShownRegionShownAgainIsARepeatEvenFromALaterServer) {
  auto twice = cover({{"01.md", block("base.cpp one")}, {"02.md", block("base.cpp one")}});
  EXPECT_TRUE(mentions(twice, "02.md:1: base.cpp one shows again 2 of its 2 code lines, first shown in 01.md"));
  auto copy = cover({{"01.md", block("base.cpp one")}, {"02.md", block("later.cpp one")}});
  EXPECT_TRUE(mentions(copy, "later.cpp one shows again"));  // the same lines, in another file
  auto marked = cover({{"01.md", block("base.cpp one")}, {"02.md", block("base.cpp one again")}});
  EXPECT_FALSE(mentions(marked, "shows again"));
  EXPECT_EQ(marked.repeats, 1);
  auto needless = cover({{"01.md", block("base.cpp one again")}});
  EXPECT_TRUE(mentions(needless, "marked 'again' but shows mostly new lines"));
}

TEST_F(TutorialCoverage, ALineAThirdServerTakesFromTheSecondIsShownWithIt) {
  write("third.cpp", "int a;\nint e;\nint f;\nint g;\n");  // a from base.cpp, e f from later.cpp
  limits_.sources = {"base.cpp", "later.cpp", "third.cpp"};
  auto c = cover({{"01.md", block("later.cpp own")}});
  ASSERT_EQ(c.sources.size(), 3u);
  EXPECT_EQ(c.sources[2].counted, 3u);  // e f g differ from base.cpp
  EXPECT_EQ(c.sources[2].shown, 2u);    // e f were shown as later.cpp's
  EXPECT_EQ(c.sources[2].not_shown.at("outside any region"), 1u);
  auto again = cover({{"01.md", block("later.cpp own")}, {"02.md", block("third.cpp")}});
  EXPECT_FALSE(mentions(again, "third.cpp shows again"));  // 2 of its 4 lines are old: not more than half
}

TEST_F(TutorialCoverage, AtMostSoManyDeliberateRepeats) {
  limits_.max_repeats = 1;
  auto c = cover({{"01.md", block("base.cpp one") + block("base.cpp one again") + block("base.cpp one again")}});
  EXPECT_EQ(c.repeats, 2);
  EXPECT_TRUE(mentions(c, "2 deliberate repeats, more than 1"));
}

TEST_F(TutorialCoverage, ChaptersAndTheWholeHaveALineLimit) {
  limits_.max_chapter_lines = 3;
  limits_.max_total_lines = 5;
  auto c = cover({{"01.md", "1\n2\n3\n"}, {"02.md", "1\n2\n3\n4\n"}});
  EXPECT_FALSE(mentions(c, "01.md: 3 lines"));
  EXPECT_TRUE(mentions(c, "02.md: 4 lines, more than 3"));
  EXPECT_TRUE(mentions(c, "the tutorial has 7 lines, more than 5"));
}

TEST_F(TutorialCoverage, WhatIsNotShownMustBeListedInTheReadme) {
  auto unlisted = cover({{"01.md", block("base.cpp one") + block("later.cpp own")}});
  EXPECT_TRUE(mentions(unlisted, "`two` are not shown and not listed"));
  auto listed = cover({{"01.md", block("base.cpp one") + block("later.cpp own")},
                       {"README.md", "## What the chapters do not show\n- `two`: c and d\n## Next\n"}});
  EXPECT_FALSE(mentions(listed, "not listed"));
  auto elsewhere = cover({{"01.md", block("base.cpp one") + block("later.cpp own")},
                          {"README.md", "## Another heading\n- `two`\n"}});
  EXPECT_TRUE(mentions(elsewhere, "`two` are not shown and not listed"));
}

}  // namespace

// ---- Build-along: the reader's file at a build marker ----

class TutorialBuild : public TutorialCode {
 protected:
  void SetUp() override {
    TutorialCode::SetUp();
    write("lib.cpp",
          "// ANCHOR: a\nint a;\n// ANCHOR_END: a\n"
          "// ANCHOR: b\nint b;\n// ANCHOR_END: b\n"
          "// ANCHOR: main\nint main() { return a + b; }\n// ANCHOR_END: main\n");
    write("step.cpp", "// ANCHOR: main\nint main() { return a; }\n// ANCHOR_END: main\n");
  }
  // The file at the `b`-th build marker of the last chapter.
  std::optional<std::string> build(const std::vector<std::string>& markdown, std::size_t b = 0) {
    std::vector<tutorial_code::Chapter> chapters;
    for (std::size_t k = 0; k < markdown.size(); ++k) {
      auto result = run(markdown[k]);
      for (const auto& p : result.problems) ADD_FAILURE() << p.line << ": " << p.message;
      chapters.push_back({"c" + std::to_string(k) + ".md", markdown[k], result.blocks, result.builds});
    }
    std::string error;
    auto text = tutorial_code::assemble(chapters, chapters.size() - 1, b, root_, error);
    if (!text) ADD_FAILURE() << error;
    return text;
  }
  static std::string block(const std::string& path, const std::string& region, const std::string& code,
                           bool again = false) {
    return "<!-- include: " + path + " " + region + (again ? " again" : "") + " -->\n```cpp\n" + code + "```\n";
  }
  // The assembled file's code lines, without its first (comment) line and the blank separators.
  static std::string code_of(const std::string& text) {
    std::string code;
    for (const std::string& line : tutorial_code::split_lines(text)) {
      if (!line.empty() && !line.starts_with("//")) code += line + "\n";
    }
    return code;
  }
};

TEST_F(TutorialBuild, TakesTheBlocksShownSoFarInReadingOrderAcrossChapters) {
  auto text = build({block("lib.cpp", "b", "int b;\n"),
                     block("lib.cpp", "a", "int a;\n") + "<!-- build: server.cpp lib.cpp -->\n" +
                         block("lib.cpp", "main", "int main() { return a + b; }\n")});
  ASSERT_TRUE(text);
  EXPECT_EQ(code_of(*text), "int b;\nint a;\n") << "the order shown, and nothing after the marker";
}

TEST_F(TutorialBuild, ALaterMainReplacesTheEarlierOneAndStaysLast) {
  auto text = build({block("lib.cpp", "a", "int a;\n") + block("step.cpp", "main", "int main() { return a; }\n"),
                     block("lib.cpp", "b", "int b;\n") + block("lib.cpp", "main", "int main() { return a + b; }\n") +
                         "<!-- build: server.cpp lib.cpp step.cpp -->\n"});
  ASSERT_TRUE(text);
  EXPECT_EQ(code_of(*text), "int a;\nint b;\nint main() { return a + b; }\n");
}

TEST_F(TutorialBuild, LeavesOutRepeatsAndFilesItWasNotGiven) {
  auto text = build({block("lib.cpp", "a", "int a;\n") + block("lib.cpp", "a", "int a;\n", true) +
                     block("step.cpp", "main", "int main() { return a; }\n") +
                     "<!-- build: server.cpp lib.cpp -->\n"});
  ASSERT_TRUE(text);
  EXPECT_EQ(code_of(*text), "int a;\n");
}

TEST_F(TutorialBuild, AMarkerWithoutSourcesIsAProblem) {
  auto result = run("<!-- build: server.cpp -->\n");
  ASSERT_EQ(result.problems.size(), 1u);
  EXPECT_NE(result.problems[0].message.find("build marker"), std::string::npos);
}
