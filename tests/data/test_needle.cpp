// The multi-needle task's generator: exact lengths, the answer where the question says,
// the asked needle at the requested depth, per-example shuffling, splits kept apart, and
// clear errors for options that cannot make an example.
#include <doctest/doctest.h>

#include <regex>
#include <set>
#include <string>

#include "autograd/errors.h"
#include "data/needle.h"

using namespace mtalab;

namespace {

std::vector<uint8_t> text_of(char fill, size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = (uint8_t)(i % 7 == 6 ? ' ' : fill);
  return v;
}

NeedleConfig config(int needles, bool all) {
  NeedleConfig c;
  c.needles = needles;
  c.ask_all = all;
  c.context = 256;
  c.lengths = {200, 256};
  c.depths = {0, 0.5, 1};
  return c;
}

}  // namespace

TEST_CASE("needle: every example has its length, its needles, and the asked number as the answer") {
  for (bool all : {false, true}) {
    const NeedleTask task(config(3, all), text_of('#', 5000), text_of('~', 2000), 9);
    for (uint64_t i = 0; i < 50; ++i) {
      CAPTURE(all);
      CAPTURE(i);
      const NeedleExample e = task.train_example(i);
      REQUIRE(e.text.size() == 256);
      CHECK((int)e.text.size() - e.answer_start == task.answer_len());
      const std::regex needle("The magic number of ([A-Za-z]+) is ([0-9]{4})\\.");
      std::map<std::string, std::string> numbers;
      for (auto it = std::sregex_iterator(e.text.begin(), e.text.end(), needle); it != std::sregex_iterator(); ++it)
        numbers[(*it)[1]] = (*it)[2];
      CHECK(numbers.size() == 3);  // three distinct names
      const std::string prompt = e.text.substr(0, e.answer_start), answer = e.text.substr(e.answer_start);
      const size_t q = prompt.rfind('\n');
      REQUIRE(q != std::string::npos);
      // The question names the needles; the answer lists their numbers in that order.
      const std::regex name("([A-Z][a-z]+)");
      std::string expected;
      for (auto it = std::sregex_iterator(prompt.begin() + (long)q, prompt.end(), name); it != std::sregex_iterator(); ++it)
        if (numbers.count((*it)[1])) expected += (expected.empty() ? "" : " ") + numbers[(*it)[1]];
      CHECK(answer == expected);
      CHECK(task.train_example(i).text == e.text);  // a pure function of (seed, index)
    }
  }
}

TEST_CASE("needle: the asked needle sits at the grid's depth, test examples come from the held-out text") {
  const NeedleTask task(config(2, false), text_of('#', 5000), text_of('~', 2000), 9);
  for (size_t li = 0; li < 2; ++li)
    for (size_t di = 0; di < 3; ++di) {
      const NeedleExample e = task.test_example(li, di, 0);
      CAPTURE(li);
      CAPTURE(di);
      CHECK((int)e.text.size() == (li == 0 ? 200 : 256));
      CHECK(e.text.find('#') == std::string::npos);  // held-out haystack only
      CHECK(e.text.find('~') != std::string::npos);
      const size_t q = e.text.rfind('\n');
      const std::string asked = e.text.substr(q).substr(29);  // "\nWhat is the magic number of " then the name
      const std::string name = asked.substr(0, asked.find('?'));
      const size_t at = e.text.find("The magic number of " + name + " is");
      REQUIRE(at != std::string::npos);
      // The haystack without the needles spans [0, q); depth 0 is its start, 1 its end.
      const double depth = (double)at / (double)q, want = di * 0.5;
      CHECK(std::abs(depth - want) < 0.35);
      if (di == 0) CHECK(at <= 1);
    }
  // Different examples shuffle names, numbers and positions.
  std::set<std::string> seen;
  for (int64_t i = 0; i < 20; ++i) seen.insert(task.test_example(1, 1, i).text);
  CHECK(seen.size() == 20);
}

TEST_CASE("needle: options that cannot make an example are refused, naming the option") {
  NeedleConfig c = config(6, false);
  c.lengths = {100, 256};
  CHECK_THROWS_WITH_AS(validate(c), doctest::Contains("--task.lengths: 100 bytes cannot hold 6 needles"), InputError);
  c = config(2, false);
  c.lengths = {512};
  CHECK_THROWS_WITH_AS(validate(c), doctest::Contains("512 exceeds --task.context=256"), InputError);
  CHECK_THROWS_WITH_AS(parse_depth_list("0,1.5", "task.depths"), doctest::Contains("'1.5' is not a depth in [0, 1]"),
                       InputError);
  CHECK_THROWS_WITH_AS(parse_int_list("128,x", "task.lengths"), doctest::Contains("'x' is not a positive integer"),
                       InputError);
  // A trailing or doubled comma and a value listed twice (issue 19): refused, not dropped or run twice.
  CHECK_THROWS_WITH_AS(parse_int_list("128,", "task.lengths"), doctest::Contains("'' is not a positive integer"),
                       InputError);
  CHECK_THROWS_WITH_AS(parse_int_list("128,,256", "task.lengths"), doctest::Contains("'' is not a positive integer"),
                       InputError);
  CHECK_THROWS_WITH_AS(parse_int_list("128,256,128", "task.lengths"),
                       doctest::Contains("--task.lengths: '128' is listed twice"), InputError);
  CHECK_THROWS_WITH_AS(parse_depth_list("0,0.5,0.50", "task.depths"),
                       doctest::Contains("--task.depths: '0.50' is listed twice"), InputError);
  CHECK(parse_int_list("128,256", "task.lengths") == std::vector<int>{128, 256});
  CHECK_THROWS_WITH_AS(NeedleTask(config(2, false), text_of('#', 100), text_of('~', 2000), 1),
                       doctest::Contains("expected more than --task.context=256"), InputError);
}
