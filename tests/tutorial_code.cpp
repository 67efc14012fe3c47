// tests/tutorial_code.cpp: keeps the tutorial's code blocks equal to the source they show.
//
//   build/tutorial_code --check tutorial/*.md   (make test) lists every block that differs
//   build/tutorial_code --write tutorial/*.md   (make tutorial) rewrites them from the source
//   build/tutorial_code --check --coverage tutorial/*.md   also: how much of the servers the
//       chapters show, what they show twice, and the line limits (see Coverage below)
//
// A chapter shows a named region of a source file with a marker line and a fence after it:
//
//   <!-- include: main.cpp reader -->
//   ```cpp
//   ...
//   ```
//
// `<!-- include: main.cpp reader again -->` marks a deliberate repeat of a region shown before.
// The region is the lines between `// ANCHOR: reader` and `// ANCHOR_END: reader` in main.cpp
// (mdBook's convention), without the ANCHOR lines of regions nested in it, and dedented.
// Without a region name the marker shows the whole file. Paths are relative to --root (the
// repository, by default the current directory).
//
// A build-along chapter also has the reader type the blocks into a file of their own. The marker
//
//   <!-- build: server.cpp main.cpp tutorial/code/steps -->
//
// stands for that file as it is at this point: every block shown so far (this chapter and the
// ones before it, not the repeats) from the listed files or folders, one below the other in the
// order shown, except that a block of a region named `main` replaces the previous one. With
// `--build DIR` the tool writes it to DIR/<chapter>-server.cpp, and make test builds and runs it:
// what the reader types, in the order the chapter shows it, must compile and work.
//
// Code in a chapter that is not in the project (a sketch, a broken variant) is fine, but the
// reader must be told: a C++ fence without a marker needs "not in the project" in the line
// before it. Relative links and images must point at files that exist.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace tutorial_code {

namespace fs = std::filesystem;

struct Problem {
  std::size_t line = 0;  // 1-based line in the chapter
  std::string message;
  bool rewritten = false;  // a block that Result::text already takes from the source
};

// One block taken from the source: which file and region, and where in the chapter.
struct Block {
  std::string path, region;
  bool again = false;  // marked as a deliberate repeat: "<!-- include: FILE REGION again -->"
  std::size_t line = 0;
};

// A build marker: the reader's file `name`, made of the blocks from `sources`, at `line`.
struct Build {
  std::string name;
  std::vector<std::string> sources;
  std::size_t line = 0;
};

struct Result {
  std::vector<Build> builds;
  std::string text;  // the chapter with every marked block taken from the source
  std::vector<Block> blocks;
  std::vector<Problem> problems;
  int included = 0;  // blocks taken from the source
  int differing = 0;  // of those, blocks that did not match (rewritten in `text`)
  int sketches = 0;   // C++ blocks marked as not in the project
};

inline std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  while (!text.empty()) {
    std::size_t end = text.find('\n');
    lines.emplace_back(text.substr(0, end));
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
  }
  return lines;
}

inline std::string trim(std::string_view s) {
  std::size_t begin = s.find_first_not_of(" \t\r");
  if (begin == std::string_view::npos) return {};
  std::size_t end = s.find_last_not_of(" \t\r");
  return std::string(s.substr(begin, end - begin + 1));
}

inline std::optional<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// "// ANCHOR: name" -> name, for kind "ANCHOR"; likewise "ANCHOR_END". Any comment leader.
inline std::optional<std::string> anchor_name(std::string_view line, std::string_view kind) {
  std::string text = trim(line);
  std::string tag = std::string(kind) + ":";
  std::size_t at = text.find(tag);
  if (at == std::string::npos || text.compare(0, 2, "//") != 0) return std::nullopt;
  if (trim(std::string_view(text).substr(2, at - 2)) != "") return std::nullopt;
  return trim(std::string_view(text).substr(at + tag.size()));
}

// The lines of region `name` in `source` (all of it when `name` is empty), or an error.
inline std::optional<std::string> extract_region(const std::string& source, const std::string& name,
                                                 std::string& error) {
  std::vector<std::string> lines = split_lines(source);
  std::size_t begin = 0, end = lines.size();
  if (!name.empty()) {
    std::optional<std::size_t> start, stop;
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (anchor_name(lines[i], "ANCHOR") == name) {
        if (start) {
          error = "region '" + name + "' is opened twice";
          return std::nullopt;
        }
        start = i + 1;
      } else if (anchor_name(lines[i], "ANCHOR_END") == name && start && !stop) {
        stop = i;
      }
    }
    if (!start) {
      error = "no region '" + name + "' (no line '// ANCHOR: " + name + "')";
      return std::nullopt;
    }
    if (!stop) {
      error = "region '" + name + "' is never closed ('// ANCHOR_END: " + name + "')";
      return std::nullopt;
    }
    begin = *start;
    end = *stop;
  }
  std::vector<std::string> kept;
  for (std::size_t i = begin; i < end; ++i) {
    if (anchor_name(lines[i], "ANCHOR") || anchor_name(lines[i], "ANCHOR_END")) continue;
    kept.push_back(lines[i]);
  }
  std::size_t indent = std::string::npos;
  for (const std::string& line : kept) {
    if (trim(line).empty()) continue;
    indent = std::min(indent, line.find_first_not_of(' '));
  }
  std::string text;
  for (const std::string& line : kept) {
    text += trim(line).empty() ? "" : line.substr(indent);
    text += '\n';
  }
  return text;
}

// ``` or ~~~ opening (with its info string) or closing a fenced block.
inline bool is_fence(std::string_view line) {
  std::string text = trim(line);
  return text.starts_with("```") || text.starts_with("~~~");
}

inline std::string fence_language(std::string_view line) {
  std::string info = trim(trim(line).substr(3));
  std::size_t space = info.find_first_of(" {");
  std::string language = info.substr(0, space);
  std::transform(language.begin(), language.end(), language.begin(), [](unsigned char c) { return std::tolower(c); });
  return language;
}

inline bool is_cpp_language(const std::string& language) {
  return language == "cpp" || language == "c++" || language == "cc" || language == "cxx" || language == "c" ||
         language == "h" || language == "hpp";
}

inline std::string language_for(const fs::path& path) {
  std::string ext = path.extension().string();
  if (ext == ".sh") return "bash";
  if (ext == ".cpp" || ext == ".hpp" || ext == ".inc" || ext == ".h") return "cpp";
  if (ext == ".gp") return "gnuplot";
  return "text";
}

inline bool contains_ignoring_case(std::string text, std::string_view word) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text.find(word) != std::string::npos;
}

// Relative link targets in a line of prose: "[text](target)" and "![alt](target)".
inline std::vector<std::string> link_targets(std::string_view line) {
  std::vector<std::string> targets;
  for (std::size_t at = line.find("]("); at != std::string_view::npos; at = line.find("](", at + 2)) {
    std::size_t close = line.find(')', at + 2);
    if (close == std::string_view::npos) break;
    std::string target = trim(line.substr(at + 2, close - at - 2));
    if (std::size_t space = target.find(' '); space != std::string::npos) target.resize(space);  // "(x "title")"
    if (target.empty() || target.starts_with('#') || target.find("://") != std::string::npos ||
        target.starts_with("mailto:")) {
      continue;
    }
    targets.push_back(target.substr(0, target.find('#')));
  }
  return targets;
}

// Brings one chapter in line with the source. `chapter_dir` resolves its links, `root` its
// include paths.
inline Result process(const std::string& markdown, const fs::path& chapter_dir, const fs::path& root) {
  Result result;
  std::vector<std::string> lines = split_lines(markdown);
  std::map<std::string, std::string> sources;  // path -> text, read once
  std::string out;
  auto emit = [&out](const std::string& line) {
    out += line;
    out += '\n';
  };
  auto problem = [&result](std::size_t index, std::string message, bool rewritten = false) {
    result.problems.push_back({index + 1, std::move(message), rewritten});
  };

  std::string previous_prose;  // the last non-blank line outside code
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    std::string text = trim(line);

    if (text.starts_with("<!-- build:") && text.ends_with("-->")) {
      emit(line);
      std::istringstream words(text.substr(11, text.size() - 11 - 3));
      Build build;
      build.line = i + 1;
      words >> build.name;
      for (std::string source; words >> source;) build.sources.push_back(source);
      if (build.name.empty() || build.sources.empty()) {
        problem(i, "a build marker is '<!-- build: FILE SOURCE... -->'");
        continue;
      }
      for (const std::string& source : build.sources) {
        if (!fs::exists(root / source)) problem(i, "build: no file or folder " + source);
      }
      result.builds.push_back(std::move(build));
      continue;
    }

    if (text.starts_with("<!-- include:") && text.ends_with("-->")) {
      emit(line);
      std::istringstream words(text.substr(13, text.size() - 13 - 3));
      std::string path, name, extra, more;
      words >> path >> name >> extra >> more;
      std::optional<std::string> code;
      std::string error;
      if (path.empty() || !more.empty() || (!extra.empty() && extra != "again")) {
        error = "an include marker is '<!-- include: FILE [REGION [again]] -->'";
      } else {
        if (!sources.count(path)) {
          std::optional<std::string> source = read_file(root / path);
          if (source) sources[path] = *source;
        }
        if (!sources.count(path)) {
          error = "cannot read " + path;
        } else {
          code = extract_region(sources[path], name, error);
        }
      }
      if (!code) problem(i, path + (name.empty() ? "" : " " + name) + ": " + error);
      else result.blocks.push_back({path, name, extra == "again", i + 1});

      // The fenced block right after the marker is the marker's; without one, one is added.
      std::size_t next = i + 1;
      bool has_block = next < lines.size() && is_fence(lines[next]);
      std::size_t close = next + 1;
      while (has_block && close < lines.size() && !is_fence(lines[close])) ++close;
      if (has_block && close == lines.size()) {
        problem(next, "code block is never closed");
        has_block = false;
      }
      std::string current;
      if (has_block) {
        for (std::size_t k = next + 1; k < close; ++k) current += lines[k] + '\n';
      }
      ++result.included;
      if (!code) {  // keep what is there
        if (has_block) {
          for (std::size_t k = next; k <= close; ++k) emit(lines[k]);
          i = close;
        }
        continue;
      }
      if (!has_block || current != *code) ++result.differing;
      if (has_block && current != *code) {
        std::vector<std::string> want = split_lines(*code), have = split_lines(current);
        std::size_t k = 0;
        while (k < want.size() && k < have.size() && want[k] == have[k]) ++k;
        std::string detail = k < want.size() ? "the source has \"" + trim(want[k]) + "\""
                                             : "the chapter has extra lines";
        problem(next + 1 + k, "block differs from " + path + (name.empty() ? "" : " " + name) + " (" + detail + ")",
                true);
      } else if (!has_block) {
        problem(i, "no code block after the marker", true);
      }
      emit(has_block ? lines[next] : "```" + language_for(path));
      out += *code;
      emit(has_block ? lines[close] : "```");
      if (has_block) i = close;
      previous_prose.clear();
      continue;
    }

    if (is_fence(line)) {
      std::size_t close = i + 1;
      while (close < lines.size() && !is_fence(lines[close])) ++close;
      if (is_cpp_language(fence_language(line))) {
        if (contains_ignoring_case(previous_prose, "not in the project")) {
          ++result.sketches;
        } else {
          problem(i, "a C++ block without an include marker must be introduced as \"not in the project\"");
        }
      }
      for (std::size_t k = i; k <= close && k < lines.size(); ++k) emit(lines[k]);
      if (close == lines.size()) problem(i, "code block is never closed");
      i = close;
      previous_prose.clear();
      continue;
    }

    for (const std::string& target : link_targets(line)) {
      if (!fs::exists(chapter_dir / target)) problem(i, "link to a missing file: " + target);
    }
    if (!text.empty()) previous_prose = text;
    emit(line);
  }
  result.text = out;
  return result;
}

// ---- Coverage: how much of the servers the chapters show, and what they show twice ----
//
//   build/tutorial_code --check --coverage tutorial/*.md
//
// A code line is a line that is neither blank, a comment, nor an ANCHOR marker. Of the base
// server (main.cpp) every code line counts; of the later servers, the code lines in which they
// differ from it (the lines a line-by-line longest common subsequence does not match). A line
// the same as one in an earlier server (matched the same way) is that line: shown if that one
// is. A block that shows mostly lines already shown is a repeat, allowed only when marked
// `again`, and only a few times.

struct Limits {
  std::vector<std::string> sources = {"main.cpp", "main_async.cpp", "tutorial/code/main_epoll.cpp"};
  std::size_t max_total_lines = 4500, max_chapter_lines = 500;
  double min_shown_percent = 95.0;
  int max_repeats = 3;
  std::string not_shown_heading = "## What the chapters do not show";  // in README.md
};

struct Chapter {
  std::string name;  // as given on the command line
  std::string markdown;
  std::vector<Block> blocks;
  std::vector<Build> builds;
};

// ---- Build-along: the reader's own file at each build marker ----

inline bool from_sources(const std::string& path, const std::vector<std::string>& sources) {
  for (const std::string& source : sources) {
    if (path == source || path.starts_with(source + "/")) return true;
  }
  return false;
}

// The file the reader has typed at `chapters[c].builds[b]`, or an error.
inline std::optional<std::string> assemble(const std::vector<Chapter>& chapters, std::size_t c, std::size_t b,
                                           const fs::path& root, std::string& error) {
  const Build& build = chapters[c].builds[b];
  std::vector<std::string> parts;
  std::optional<std::string> main_code;  // the latest `main` shown: the file ends with it
  for (std::size_t k = 0; k <= c; ++k) {
    for (const Block& block : chapters[k].blocks) {
      if (k == c && block.line > build.line) break;
      if (block.again || !from_sources(block.path, build.sources)) continue;
      std::optional<std::string> source = read_file(root / block.path);
      std::optional<std::string> code = source ? extract_region(*source, block.region, error) : std::nullopt;
      if (!code) {
        error = chapters[k].name + ":" + std::to_string(block.line) + ": " + block.path + " " + block.region + ": " +
                (source ? error : "cannot read");
        return std::nullopt;
      }
      if (block.region == "main") main_code = *code;
      else parts.push_back(*code);
    }
  }
  if (main_code) parts.push_back(*main_code);
  std::string text = "// " + build.name + " as the reader has it at " + chapters[c].name + ":" +
                     std::to_string(build.line) + " (written by tutorial_code --build)\n";
  for (const std::string& part : parts) text += "\n" + part;
  return text;
}

struct SourceCoverage {
  std::string path;
  std::size_t counted = 0, shown = 0;  // code lines that count, and of those the ones shown
  std::map<std::string, std::size_t> not_shown;  // innermost region (or "outside any region") -> lines
};

struct Coverage {
  std::vector<SourceCoverage> sources;
  std::vector<std::string> problems;
  std::size_t total_lines = 0;
  int repeats = 0;  // deliberate ones
};

inline bool is_code_line(const std::string& line) {
  std::string text = trim(line);
  return !text.empty() && !text.starts_with("//");
}

inline bool is_anchor_line(const std::string& line) {
  return anchor_name(line, "ANCHOR").has_value() || anchor_name(line, "ANCHOR_END").has_value();
}

// Indices of the lines of region `name` (every line when empty), ANCHOR lines left out.
inline std::vector<std::size_t> region_lines(const std::vector<std::string>& lines, const std::string& name) {
  std::vector<std::size_t> kept;
  bool inside = name.empty();
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (!name.empty() && anchor_name(lines[i], "ANCHOR") == name) inside = true;
    else if (!name.empty() && anchor_name(lines[i], "ANCHOR_END") == name) inside = false;
    else if (inside && !is_anchor_line(lines[i])) kept.push_back(i);
  }
  return kept;
}

// For each line of `later`, the line of `base` a longest common subsequence matches it to.
inline std::vector<std::optional<std::size_t>> match_lines(const std::vector<std::string>& base,
                                                           const std::vector<std::string>& later) {
  std::vector<std::size_t> a, b;  // the lines that take part: not ANCHOR markers
  for (std::size_t i = 0; i < base.size(); ++i) if (!is_anchor_line(base[i])) a.push_back(i);
  for (std::size_t j = 0; j < later.size(); ++j) if (!is_anchor_line(later[j])) b.push_back(j);
  std::size_t n = a.size(), m = b.size();
  std::vector<std::uint32_t> length((n + 1) * (m + 1), 0);  // length[i][j]: LCS of a[i..] and b[j..]
  auto at = [m](std::size_t i, std::size_t j) { return i * (m + 1) + j; };
  for (std::size_t i = n; i-- > 0;) {
    for (std::size_t j = m; j-- > 0;) {
      length[at(i, j)] = base[a[i]] == later[b[j]] ? length[at(i + 1, j + 1)] + 1
                                                   : std::max(length[at(i + 1, j)], length[at(i, j + 1)]);
    }
  }
  std::vector<std::optional<std::size_t>> match(later.size());
  for (std::size_t i = 0, j = 0; i < n && j < m;) {
    if (base[a[i]] == later[b[j]]) match[b[j++]] = a[i++];
    else if (length[at(i + 1, j)] >= length[at(i, j + 1)]) ++i;
    else ++j;
  }
  return match;
}

// The innermost region each line is in, or "outside any region".
inline std::vector<std::string> innermost_regions(const std::vector<std::string>& lines) {
  std::vector<std::string> open, region(lines.size());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (auto name = anchor_name(lines[i], "ANCHOR")) open.push_back(*name);
    region[i] = open.empty() ? "outside any region" : open.back();
    if (auto name = anchor_name(lines[i], "ANCHOR_END"); name && !open.empty() && open.back() == *name) {
      open.pop_back();
    }
  }
  return region;
}

inline Coverage check_coverage(const std::vector<Chapter>& chapters, const fs::path& root,
                               const Limits& limits = {}) {
  Coverage coverage;
  std::map<std::string, std::vector<std::string>> lines;  // path -> its lines, read once
  auto source = [&](const std::string& path) -> const std::vector<std::string>& {
    if (!lines.count(path)) lines[path] = split_lines(read_file(root / path).value_or(""));
    return lines[path];
  };
  std::map<std::string, std::vector<std::optional<std::size_t>>> matched;  // later source -> its lines in base
  // A line's twin: the same line in an earlier source (the base first), by the same matching.
  std::map<std::string, std::vector<std::optional<std::pair<std::string, std::size_t>>>> twin;
  for (std::size_t k = 1; k < limits.sources.size(); ++k) {
    const std::string& later = limits.sources[k];
    twin[later].resize(source(later).size());
    for (std::size_t j = 0; j < k; ++j) {
      auto match = match_lines(source(limits.sources[j]), source(later));
      if (j == 0) matched[later] = match;
      for (std::size_t i = 0; i < match.size(); ++i) {
        if (match[i] && !twin[later][i]) twin[later][i] = std::make_pair(limits.sources[j], *match[i]);
      }
    }
  }
  // What a line is, for repeats and for what counts as shown: a later server's line with a twin
  // in an earlier one is that line. A reader who has seen it has seen it.
  auto identity = [&](std::string path, std::size_t i) {
    for (auto t = twin.find(path); t != twin.end() && t->second[i]; t = twin.find(path)) {
      auto [earlier, line] = *t->second[i];
      path = earlier;
      i = line;
    }
    return path + ":" + std::to_string(i);
  };

  std::map<std::string, std::string> first_shown;  // identity -> the chapter that showed it first
  std::map<std::string, std::vector<bool>> shown;   // path -> line shown
  for (const Chapter& chapter : chapters) {
    std::size_t count = split_lines(chapter.markdown).size();
    coverage.total_lines += count;
    if (count > limits.max_chapter_lines) {
      coverage.problems.push_back(chapter.name + ": " + std::to_string(count) + " lines, more than " +
                                  std::to_string(limits.max_chapter_lines));
    }
    for (const Block& block : chapter.blocks) {
      const std::vector<std::string>& text = source(block.path);
      std::vector<bool>& mark = shown[block.path];
      mark.resize(text.size());
      std::size_t code = 0, seen = 0;
      std::string where;
      for (std::size_t i : region_lines(text, block.region)) {
        mark[i] = true;
        if (!is_code_line(text[i])) continue;
        ++code;
        auto [it, fresh] = first_shown.emplace(identity(block.path, i), chapter.name);
        if (!fresh) {
          if (seen++ == 0) where = it->second;
        }
      }
      std::string what = chapter.name + ":" + std::to_string(block.line) + ": " + block.path +
                         (block.region.empty() ? "" : " " + block.region);
      if (code > 0 && 2 * seen > code) {
        if (block.again) ++coverage.repeats;
        else coverage.problems.push_back(what + " shows again " + std::to_string(seen) + " of its " +
                                         std::to_string(code) + " code lines, first shown in " + where +
                                         " (mark a deliberate repeat with 'again')");
      } else if (block.again) {
        coverage.problems.push_back(what + " is marked 'again' but shows mostly new lines");
      }
    }
  }
  if (coverage.total_lines > limits.max_total_lines) {
    coverage.problems.push_back("the tutorial has " + std::to_string(coverage.total_lines) + " lines, more than " +
                                std::to_string(limits.max_total_lines));
  }
  if (coverage.repeats > limits.max_repeats) {
    coverage.problems.push_back(std::to_string(coverage.repeats) + " deliberate repeats, more than " +
                                std::to_string(limits.max_repeats));
  }

  // The list of what is not shown: README.md's section under the heading.
  std::string listed;
  for (const Chapter& chapter : chapters) {
    if (fs::path(chapter.name).filename() != "README.md") continue;
    bool inside = false;
    for (const std::string& line : split_lines(chapter.markdown)) {
      if (line.starts_with("## ")) inside = trim(line) == limits.not_shown_heading;
      else if (inside) listed += line + '\n';
    }
  }

  for (const std::string& path : limits.sources) {
    const std::vector<std::string>& text = source(path);
    if (text.empty()) continue;
    SourceCoverage result;
    result.path = path;
    std::vector<bool> mark = shown[path];
    mark.resize(text.size());
    std::vector<std::string> region = innermost_regions(text);
    auto m = matched.find(path);
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (!is_code_line(text[i]) || is_anchor_line(text[i])) continue;
      if (m != matched.end() && m->second[i]) continue;  // the same as a line of the base
      ++result.counted;
      if (mark[i] || first_shown.count(identity(path, i))) ++result.shown;
      else ++result.not_shown[region[i]];
    }
    double percent = result.counted ? 100.0 * result.shown / result.counted : 100.0;
    if (percent < limits.min_shown_percent) {
      char figure[32];
      std::snprintf(figure, sizeof figure, "%.1f%%", percent);
      coverage.problems.push_back(path + ": " + figure + " of its counted code lines shown, fewer than " +
                                  std::to_string(static_cast<int>(limits.min_shown_percent)) + "%");
    }
    for (const auto& [name, count] : result.not_shown) {
      std::string needle = name == "outside any region" ? name : "`" + name + "`";
      if (listed.find(needle) == std::string::npos) {
        coverage.problems.push_back(path + ": " + std::to_string(count) + " code line(s) of " + needle +
                                    " are not shown and not listed under '" + limits.not_shown_heading +
                                    "' in README.md");
      }
    }
    coverage.sources.push_back(std::move(result));
  }
  return coverage;
}

}  // namespace tutorial_code

#ifndef TUTORIAL_CODE_NO_MAIN
int main(int argc, char** argv) {
  namespace tc = tutorial_code;
  const char* usage = "usage: tutorial_code (--check | --write) [--coverage] [--build DIR] [--root DIR] CHAPTER.md...\n";
  bool write = false, mode_given = false, coverage = false;
  tc::fs::path root = ".";
  std::optional<tc::fs::path> build_dir;
  std::vector<tc::fs::path> chapters;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--check" || arg == "--write") {
      write = arg == "--write";
      mode_given = true;
    } else if (arg == "--coverage") {
      coverage = true;
    } else if (arg == "--build" && i + 1 < argc) {
      build_dir = argv[++i];
    } else if (arg == "--root" && i + 1 < argc) {
      root = argv[++i];
    } else if (arg == "--help") {
      std::fputs(usage, stdout);
      return 0;
    } else if (arg.starts_with("-")) {
      std::fprintf(stderr, "unknown option: %s\n%s", argv[i], usage);
      return 2;
    } else {
      chapters.emplace_back(arg);
    }
  }
  if (!mode_given || chapters.empty()) {
    std::fputs(usage, stderr);
    return 2;
  }

  std::sort(chapters.begin(), chapters.end());  // the reading order, for repeats
  int problems = 0, included = 0, sketches = 0, rewritten = 0;
  std::vector<tc::Chapter> read;
  for (const tc::fs::path& chapter : chapters) {
    std::optional<std::string> markdown = tc::read_file(chapter);
    if (!markdown) {
      std::fprintf(stderr, "%s: cannot read\n", chapter.c_str());
      ++problems;
      continue;
    }
    tc::Result result = tc::process(*markdown, chapter.parent_path(), root);
    read.push_back({chapter.string(), write ? result.text : *markdown, result.blocks, result.builds});
    included += result.included;
    sketches += result.sketches;
    if (write && result.text != *markdown) {
      std::ofstream(chapter, std::ios::binary) << result.text;
      std::printf("%s: %d block(s) rewritten from the source\n", chapter.c_str(), result.differing);
      rewritten += result.differing;
    }
    for (const tc::Problem& p : result.problems) {
      if (write && p.rewritten) continue;  // fixed by writing result.text
      std::fprintf(stderr, "%s:%zu: %s\n", chapter.c_str(), p.line, p.message.c_str());
      ++problems;
    }
  }
  if (coverage) {
    tc::Coverage report = tc::check_coverage(read, root);
    for (const tc::SourceCoverage& source : report.sources) {
      std::printf("coverage: %s: %zu of %zu counted code lines shown (%.1f%%)", source.path.c_str(), source.shown,
                  source.counted, source.counted ? 100.0 * source.shown / source.counted : 100.0);
      const char* separator = "; not shown:";
      for (const auto& [name, count] : source.not_shown) {
        std::printf("%s %s (%zu)", separator, name.c_str(), count);
        separator = ",";
      }
      std::printf("\n");
    }
    std::printf("coverage: %zu lines in all, %d deliberate repeat(s)\n", report.total_lines, report.repeats);
    for (const std::string& p : report.problems) {
      std::fprintf(stderr, "coverage: %s\n", p.c_str());
      ++problems;
    }
  }
  if (build_dir) {
    tc::fs::create_directories(*build_dir);
    for (std::size_t c = 0; c < read.size(); ++c) {
      for (std::size_t b = 0; b < read[c].builds.size(); ++b) {
        std::string error;
        std::optional<std::string> text = tc::assemble(read, c, b, root, error);
        if (!text) {
          std::fprintf(stderr, "build: %s\n", error.c_str());
          ++problems;
          continue;
        }
        tc::fs::path out = *build_dir / (tc::fs::path(read[c].name).stem().string() + "-" + read[c].builds[b].name);
        std::ofstream(out, std::ios::binary) << *text;
        std::printf("build: %s\n", out.c_str());
      }
    }
  }
  std::printf("tutorial: %zu chapters, %d blocks from the source, %d marked not in the project", chapters.size(),
              included, sketches);
  if (problems == 0) {
    if (write) std::printf(", %d rewritten\n", rewritten);
    else std::printf(", all in sync\n");
    return 0;
  }
  std::printf(", %d problem(s)%s\n", problems, write ? "" : "; `make tutorial` rewrites blocks from the source");
  return 1;
}
#endif
