// The BabiLong generator (data/babilong.h), checked from outside: a replay of each story,
// parsed back from its sentences by a reader of its own, confirms the rules of the world
// (who can pick up, drop and give what, "went back" only to a room visited before) and
// the answer; the supporting facts are in the text where the example says; lengths are
// exact; held-out text only in test examples; examples are pure functions of their seeds;
// bad options are refused naming them.
#include <doctest/doctest.h>

#include <map>
#include <regex>
#include <set>
#include <string>

#include "autograd/errors.h"
#include "data/babilong.h"

using namespace mtalab;

namespace {

// A haystack with sentences: "#### ## ###. " repeated (or another fill byte).
std::vector<uint8_t> hay(char fill, size_t n) {
  const std::string unit = std::string(4, fill) + " " + std::string(2, fill) + " " + std::string(3, fill) + ". ";
  std::vector<uint8_t> v;
  while (v.size() < n) v.insert(v.end(), unit.begin(), unit.end());
  v.resize(n);
  return v;
}

// Replays a story sentence by sentence and answers its question; FAILs on any sentence the
// world's rules forbid or that is not a bAbI surface form. Independent of the generator.
struct Replay {
  std::map<std::string, std::string> room;               // actor -> room
  std::map<std::string, std::vector<std::string>> seen;  // actor -> rooms visited
  std::map<std::string, std::string> holder, obj_room;   // object -> actor / room
  std::map<std::string, std::vector<std::string>> trail; // object -> rooms it was in
  struct Give {
    std::string giver, object, receiver;
  };
  std::vector<Give> gives;
  std::map<std::pair<std::string, std::string>, std::string> rel;  // (a, b) -> "a is DIR of b"
  std::set<std::string> forms;                                     // surface forms met

  void object_to(const std::string& o, const std::string& r) {
    if (trail[o].empty() || trail[o].back() != r) trail[o].push_back(r);
    obj_room[o] = r;
  }

  void fact(const std::string& s) {
    static const std::regex move("^([A-Z][a-z]+) (went back to|went to|journeyed to|travelled to|moved to) the ([a-z]+)\\.$");
    static const std::regex grab("^([A-Z][a-z]+) (got|took|picked up|grabbed) the ([a-z]+) there\\.$");
    static const std::regex drop("^([A-Z][a-z]+) (dropped|discarded|put down|left) the ([a-z]+)( there)?\\.$");
    static const std::regex give("^([A-Z][a-z]+) (gave|handed|passed) the ([a-z]+) to ([A-Z][a-z]+)\\.$");
    static const std::regex relation("^The ([a-z]+) is (north|south|east|west) of the ([a-z]+)\\.$");
    std::smatch m;
    CAPTURE(s);
    if (std::regex_match(s, m, move)) {
      const std::string a = m[1], r = m[3];
      forms.insert(m[2]);
      CHECK(room[a] != r);  // a move goes somewhere else
      if (m[2] == "went back to")
        CHECK(std::count(seen[a].begin(), seen[a].end(), r) > 0);
      room[a] = r;
      seen[a].push_back(r);
      for (auto& [o, h] : holder)
        if (h == a) object_to(o, r);
    } else if (std::regex_match(s, m, grab)) {
      const std::string a = m[1], o = m[3];
      forms.insert(m[2]);
      REQUIRE(room.count(a));  // "there": the actor's room is known
      CHECK(holder[o] == "");
      if (obj_room.count(o)) CHECK(obj_room[o] == room[a]);  // it is where it was left
      holder[o] = a;
      object_to(o, room[a]);
    } else if (std::regex_match(s, m, drop)) {
      forms.insert(m[2]);
      CHECK(holder[m[3]] == std::string(m[1]));
      holder[m[3]] = "";
    } else if (std::regex_match(s, m, give)) {
      const std::string a = m[1], o = m[3], b = m[4];
      forms.insert(m[2]);
      CHECK(holder[o] == a);
      CHECK(a != b);
      REQUIRE(room.count(a));
      CHECK(room[b] == room[a]);  // handed over in the same room
      holder[o] = b;
      gives.push_back({a, o, b});
    } else if (std::regex_match(s, m, relation)) {
      static const std::map<std::string, std::string> opp{
          {"north", "south"}, {"south", "north"}, {"east", "west"}, {"west", "east"}};
      rel[{m[1], m[3]}] = m[2];
      rel[{m[3], m[1]}] = opp.at(m[2]);
    } else {
      FAIL("not a bAbI sentence: ", s);
    }
  }

  // The answer, or "" when the story does not determine one.
  std::string answer(const std::string& q) {
    std::smatch m;
    CAPTURE(q);
    if (std::regex_match(q, m, std::regex("^Where is ([A-Z][a-z]+)\\?$"))) return room[m[1]];
    if (std::regex_match(q, m, std::regex("^Where is the ([a-z]+)\\?$"))) {
      const std::string o = m[1];
      return holder[o] != "" ? room[holder[o]] : obj_room[o];
    }
    if (std::regex_match(q, m, std::regex("^Where was the ([a-z]+) before the ([a-z]+)\\?$"))) {
      const auto& t = trail[m[1]];
      std::string before;
      int n = 0;
      for (size_t i = 0; i < t.size(); ++i)
        if (t[i] == std::string(m[2])) {
          ++n;
          if (i > 0) before = t[i - 1];
        }
      return n == 1 ? before : "";  // once in its trail: "before" is unambiguous
    }
    if (std::regex_match(q, m, std::regex("^What is (north|south|east|west) of the ([a-z]+)\\?$"))) {
      std::string found;
      for (auto& [k, d] : rel)
        if (k.second == std::string(m[2]) && d == std::string(m[1])) {
          if (!found.empty()) return "";
          found = k.first;
        }
      return found;
    }
    if (std::regex_match(q, m, std::regex("^What is the ([a-z]+) (north|south|east|west) of\\?$"))) {
      std::string found;
      for (auto& [k, d] : rel)
        if (k.first == std::string(m[1]) && d == std::string(m[2])) {
          if (!found.empty()) return "";
          found = k.second;
        }
      return found;
    }
    // QA5: the latest giving that matches.
    auto last = [&](auto pred) -> const Give* {
      for (auto it = gives.rbegin(); it != gives.rend(); ++it)
        if (pred(*it)) return &*it;
      return nullptr;
    };
    const Give* g = nullptr;
    if (std::regex_match(q, m, std::regex("^Who gave the ([a-z]+) to ([A-Z][a-z]+)\\?$"))) {
      if ((g = last([&](const Give& x) { return x.object == m[1] && x.receiver == m[2]; }))) return g->giver;
    } else if (std::regex_match(q, m, std::regex("^Who did ([A-Z][a-z]+) give the ([a-z]+) to\\?$"))) {
      if ((g = last([&](const Give& x) { return x.giver == m[1] && x.object == m[2]; }))) return g->receiver;
    } else if (std::regex_match(q, m, std::regex("^What did ([A-Z][a-z]+) give to ([A-Z][a-z]+)\\?$"))) {
      if ((g = last([&](const Give& x) { return x.giver == m[1] && x.receiver == m[2]; }))) return g->object;
    } else if (std::regex_match(q, m, std::regex("^Who received the ([a-z]+)\\?$"))) {
      if ((g = last([&](const Give& x) { return x.object == m[1]; }))) return g->receiver;
    } else if (std::regex_match(q, m, std::regex("^Who gave the ([a-z]+)\\?$"))) {
      if ((g = last([&](const Give& x) { return x.object == m[1]; }))) return g->giver;
    } else {
      FAIL("not a bAbI question: ", q);
    }
    return "";
  }
};

BabilongConfig small_config() {
  BabilongConfig c;
  c.facts = 8;
  c.context = babilong_story_bound(8) + 200;
  c.distractions = {0, 64, 200};
  c.per_cell = 4;
  return c;
}

}  // namespace

TEST_CASE("babilong: a replay of every story confirms its answer, its world's rules and its support") {
  std::map<int, std::set<std::string>> forms;
  std::map<int, std::set<std::string>> questions;
  for (int qa = 1; qa <= 5; ++qa)
    for (int facts : {4, 6, 12})
      for (uint64_t s = 0; s < 150; ++s) {
        CAPTURE(qa);
        CAPTURE(s);
        const BabilongExample ex = babi_story(qa, facts, s * 977 + 13);
        CHECK(ex.qa == qa);
        CHECK((int)ex.facts.size() == (qa == 4 ? 2 : facts));
        Replay r;
        for (auto& f : ex.facts) {
          CHECK(f.size() <= 40);
          r.fact(f);
        }
        const std::string want = r.answer(ex.question);
        CAPTURE(ex.question);
        CHECK(want != "");
        CHECK(ex.answer == want);
        CHECK(ex.question.size() <= 44);     // the bounds babilong_story_bound adds up
        CHECK(ex.answer.size() + 1 <= 9);
        forms[qa].insert(r.forms.begin(), r.forms.end());
        // The question's form: its first two words, and whether it names a receiver.
        const size_t two = ex.question.find(' ', ex.question.find(' ') + 1);
        questions[qa].insert(ex.question.substr(0, two) + (ex.question.find(" to ") != std::string::npos ? "+to" : "") +
                             (ex.question.find(" of?") != std::string::npos ? "+of" : ""));
        // The support: valid indices, in order, the number the task is named for at most,
        // and the answer's evidence among them.
        REQUIRE(!ex.support.empty());
        CHECK(std::is_sorted(ex.support.begin(), ex.support.end()));
        CHECK(ex.support.back() < (int)ex.facts.size());
        CHECK(ex.support.front() >= 0);
        CHECK((int)ex.support.size() <= std::min(qa, 3));
        bool answer_in_support = false;
        for (int i : ex.support) answer_in_support |= ex.facts[i].find(ex.answer) != std::string::npos;
        if (qa == 4) {  // the asked relation names both rooms, the answer one of them
          CHECK(answer_in_support);
        } else if (qa == 1 || qa == 2) {  // the last support fact of the moves names the room
          CHECK(answer_in_support);
        } else if (qa == 5) {
          CHECK(ex.support.size() == 1);
          CHECK(answer_in_support);
        }
      }
  // The released data's surface variety.
  CHECK(forms[1] == std::set<std::string>{"went to", "journeyed to", "travelled to", "moved to", "went back to"});
  for (const char* f : {"got", "took", "picked up", "grabbed", "dropped", "discarded", "put down", "left"})
    CHECK(forms[2].count(f));
  for (const char* f : {"gave", "handed", "passed"}) CHECK(forms[5].count(f));
  CHECK(questions[5] == std::set<std::string>{"Who gave+to", "Who gave", "Who did", "What did+to", "Who received"});
  CHECK(questions[4] == std::set<std::string>{"What is", "What is+of"});
  CHECK(questions[3] == std::set<std::string>{"Where was"});
}

TEST_CASE("babilong: examples have exact lengths, facts in order at their offsets, held-out text only in tests") {
  const BabilongConfig c = small_config();
  const BabilongTask task(c, hay('#', 20000), hay('~', 5000), 3);
  std::set<int> tasks_seen;
  for (uint64_t i = 0; i < 200; ++i) {
    CAPTURE(i);
    const BabilongExample e = task.train_example(i);
    tasks_seen.insert(e.qa);
    CHECK((int)e.text.size() == c.context);
    CHECK(e.text.find('~') == std::string::npos);
    CHECK(e.text.substr(e.answer_start) == e.answer + ".");
    CHECK(e.text.substr(0, e.answer_start).rfind("\n" + e.question + " ") + e.question.size() + 2 ==
          (size_t)e.answer_start);
    for (size_t f = 0; f < e.facts.size(); ++f) {
      CHECK(e.text.compare(e.fact_at[f], e.facts[f].size(), e.facts[f]) == 0);
      if (f) CHECK(e.fact_at[f] > e.fact_at[f - 1]);
      CHECK(e.text[e.fact_at[f] - 1] == ' ');
      // At a sentence boundary: the text's start, after a full stop (a sentence's or another
      // fact's), or the haystack's end (the facts from here on follow each other up to the question).
      size_t end = e.fact_at[f] + e.facts[f].size();
      for (size_t g = f + 1; g < e.facts.size() && e.fact_at[g] == end + 1; ++g) end = e.fact_at[g] + e.facts[g].size();
      const bool at_end = e.text[end] == '\n';
      CHECK((e.fact_at[f] == 1 || e.text[e.fact_at[f] - 2] == '.' || at_end));
    }
    CHECK(task.train_example(i).text == e.text);  // a pure function of (seed, index)
  }
  CHECK(tasks_seen == std::set<int>{1, 2, 3, 4, 5});
  for (size_t ti = 0; ti < c.tasks.size(); ++ti)
    for (size_t di = 0; di < c.distractions.size(); ++di)
      for (int64_t i = 0; i < c.per_cell; ++i) {
        const BabilongExample e = task.test_example(ti, di, i);
        CAPTURE(ti);
        CAPTURE(di);
        CHECK(e.qa == c.tasks[ti]);
        CHECK(e.haystack_bytes == c.distractions[di]);
        size_t story = 1 + e.question.size() + 1 + e.answer.size() + 1;
        for (auto& f : e.facts) story += 1 + f.size();
        CHECK(e.text.size() == story + (size_t)c.distractions[di]);
        CHECK((int)story <= babilong_story_bound(c.facts));
        CHECK(e.text.size() <= (size_t)c.context);
        CHECK(e.text.find('#') == std::string::npos);
        CHECK((std::count(e.text.begin(), e.text.end(), '~') > 0) == (c.distractions[di] > 0));
        CHECK(task.test_example(ti, di, i).text == e.text);
      }
  // Another seed, other examples; the same seed, the same.
  const BabilongTask other(c, hay('#', 20000), hay('~', 5000), 4), same(c, hay('#', 20000), hay('~', 5000), 3);
  int differ = 0;
  for (uint64_t i = 0; i < 20; ++i) {
    differ += other.train_example(i).text != task.train_example(i).text;
    CHECK(same.train_example(i).text == task.train_example(i).text);
  }
  CHECK(differ >= 18);
}

TEST_CASE("babilong: bad options are refused naming them") {
  auto refused = [](BabilongConfig c, const std::string& what) {
    CAPTURE(what);
    CHECK_THROWS_WITH_AS(validate(c), doctest::Contains(what.c_str()), InputError);
  };
  BabilongConfig c = small_config();
  CHECK_NOTHROW(validate(c));
  BabilongConfig t = c;
  t.tasks = {1, 6};
  refused(t, "option --task.qa: 6 is not a bAbI task");
  t.tasks = {2, 2};
  refused(t, "option --task.qa: task 2 is listed twice");
  t.tasks = {};
  refused(t, "option --task.qa is empty");
  BabilongConfig f = c;
  f.facts = 3;
  refused(f, "option --task.facts=3 (expected 4..32)");
  BabilongConfig x = c;
  x.context = 100;
  refused(x, "option --task.context=100 cannot hold a story of --task.facts=8");
  BabilongConfig d = c;
  d.distractions = {0, 201};
  refused(d, "option --task.distractions: 201 bytes of haystack");
  d.distractions = {};
  refused(d, "option --task.distractions is empty");
  CHECK_THROWS_WITH_AS(BabilongTask(c, hay('#', 100), hay('~', 5000), 1), doctest::Contains("expected more than --task.context"),
                       InputError);
}
