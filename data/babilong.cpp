#include "data/babilong.h"

#include <algorithm>
#include <array>
#include <map>
#include <stdexcept>

#include "autograd/errors.h"
#include "data/rng.h"

namespace mtalab {
namespace {

// The released bAbI data's vocabulary (tasks 1-3 and 5 use these actors and objects).
const std::vector<std::string> kActors{"Mary", "John", "Daniel", "Sandra"};
const std::vector<std::string> kGivers{"Mary", "Jeff", "Fred", "Bill"};
const std::vector<std::string> kRooms{"bathroom", "hallway", "garden", "office", "bedroom", "kitchen"};
const std::vector<std::string> kObjects{"football", "apple", "milk"};
// QA4's relations: a direction and its opposite, with its step on a grid.
struct Dir {
  const char* name;
  int dx, dy;
};
const Dir kDirs[] = {{"north", 0, 1}, {"south", 0, -1}, {"east", 1, 0}, {"west", -1, 0}};

// Bounds of the sentences below over the vocabulary above (a test checks every generated
// sentence against them).
constexpr int kMaxFactBytes = 40;      // "Sandra picked up the football there." is 36
constexpr int kMaxQuestionBytes = 44;  // "Where was the football before the bathroom?" is 43
constexpr int kMaxAnswerBytes = 9;     // "football" or "bathroom", and "."

template <class T>
const T& pick(const std::vector<T>& v, Rng& r) {
  return v[r.below(v.size())];
}

std::string move_fact(const std::string& a, const std::string& room, bool been_there, Rng& r) {
  static const std::vector<std::string> verbs{"went", "journeyed", "travelled", "moved"};
  if (been_there && r.below(3) == 0) return a + " went back to the " + room + ".";
  return a + " " + pick(verbs, r) + " to the " + room + ".";
}
std::string grab_fact(const std::string& a, const std::string& o, Rng& r) {
  static const std::vector<std::string> verbs{"got", "took", "picked up", "grabbed"};
  return a + " " + pick(verbs, r) + " the " + o + " there.";
}
std::string drop_fact(const std::string& a, const std::string& o, Rng& r) {
  static const std::vector<std::string> verbs{"dropped", "discarded", "put down", "left"};
  return a + " " + pick(verbs, r) + " the " + o + (r.below(2) ? " there." : ".");
}
std::string give_fact(const std::string& a, const std::string& o, const std::string& b, Rng& r) {
  static const std::vector<std::string> verbs{"gave", "handed", "passed"};
  return a + " " + pick(verbs, r) + " the " + o + " to " + b + ".";
}

// The world of tasks 1-3 and 5: where each actor is (-1: not yet said), who holds each
// object (-1: nobody), where each object is (-1: never seen), and the history the questions
// ask about.
struct World {
  std::vector<int> actor_room, held_by, object_room;
  std::vector<std::vector<int>> visited;  // rooms each actor has been said to be in
  std::vector<int> last_move;             // fact index of each actor's last move (-1)
  std::vector<int> last_grab, last_drop;  // per object, fact index (-1)
  std::vector<std::vector<int>> grabs;    // per object, the fact indices of its pick-ups
  // Per object: the rooms it was in, in order, with the fact that put it there.
  std::vector<std::vector<std::pair<int, int>>> trail;
  struct Give {
    int giver, object, receiver, fact;
  };
  std::vector<Give> gives;
  std::vector<std::string> facts;

  World(size_t actors)
      : actor_room(actors, -1), held_by(kObjects.size(), -1), object_room(kObjects.size(), -1), visited(actors),
        last_move(actors, -1), last_grab(kObjects.size(), -1), last_drop(kObjects.size(), -1), grabs(kObjects.size()),
        trail(kObjects.size()) {}

  void move(int a, int room, const std::vector<std::string>& names, Rng& r) {
    const bool been = std::count(visited[a].begin(), visited[a].end(), room) > 0;
    facts.push_back(move_fact(names[a], kRooms[room], been, r));
    actor_room[a] = room;
    visited[a].push_back(room);
    last_move[a] = (int)facts.size() - 1;
    for (size_t o = 0; o < held_by.size(); ++o)
      if (held_by[o] == a) {
        object_room[o] = room;
        trail[o].push_back({room, last_move[a]});
      }
  }
  void grab(int a, int o, const std::vector<std::string>& names, Rng& r) {
    facts.push_back(grab_fact(names[a], kObjects[o], r));
    held_by[o] = a;
    last_grab[o] = (int)facts.size() - 1;
    grabs[o].push_back(last_grab[o]);
    if (object_room[o] != actor_room[a] || trail[o].empty()) trail[o].push_back({actor_room[a], last_move[a]});
    object_room[o] = actor_room[a];
  }
  void drop(int a, int o, const std::vector<std::string>& names, Rng& r) {
    facts.push_back(drop_fact(names[a], kObjects[o], r));
    held_by[o] = -1;
    last_drop[o] = (int)facts.size() - 1;
  }
  void give(int a, int o, int b, const std::vector<std::string>& names, Rng& r) {
    facts.push_back(give_fact(names[a], kObjects[o], names[b], r));
    held_by[o] = b;
    gives.push_back({a, o, b, (int)facts.size() - 1});
  }
};

// One event of the world, drawn among those possible: a move always is; a grab needs an
// actor whose room is known and an object nobody holds that is in that room or was never
// seen; a drop, an actor holding something; a give (QA5), a holder and another actor in the
// same known room. `give_weight` 0 outside QA5.
void step(World& w, const std::vector<std::string>& names, int give_weight, Rng& r) {
  const int A = (int)names.size(), O = (int)kObjects.size();
  std::vector<std::pair<int, int>> grabs, drops;
  std::vector<std::array<int, 3>> gives;
  for (int a = 0; a < A; ++a) {
    if (w.actor_room[a] < 0) continue;
    for (int o = 0; o < O; ++o) {
      if (w.held_by[o] < 0 && (w.object_room[o] < 0 || w.object_room[o] == w.actor_room[a])) grabs.push_back({a, o});
      if (w.held_by[o] == a) {
        drops.push_back({a, o});
        for (int b = 0; b < A; ++b)
          if (b != a && w.actor_room[b] == w.actor_room[a]) gives.push_back({a, o, b});
      }
    }
  }
  const int wm = 5, wg = grabs.empty() ? 0 : 3, wd = drops.empty() ? 0 : 2, wv = gives.empty() ? 0 : give_weight;
  int k = (int)r.below((uint64_t)(wm + wg + wd + wv));
  if ((k -= wm) < 0) {
    const int a = (int)r.below(A);
    int room;
    // QA5's actors meet: half the moves go to a room where another actor is.
    std::vector<int> occupied;
    for (int b = 0; b < A; ++b)
      if (b != a && w.actor_room[b] >= 0 && w.actor_room[b] != w.actor_room[a]) occupied.push_back(w.actor_room[b]);
    if (give_weight > 0 && !occupied.empty() && r.below(2))
      room = pick(occupied, r);
    else
      do room = (int)r.below(kRooms.size());
      while (room == w.actor_room[a]);
    w.move(a, room, names, r);
  } else if ((k -= wg) < 0) {
    auto [a, o] = pick(grabs, r);
    w.grab(a, o, names, r);
  } else if ((k -= wd) < 0) {
    auto [a, o] = pick(drops, r);
    w.drop(a, o, names, r);
  } else {
    auto g = pick(gives, r);
    w.give(g[0], g[1], g[2], names, r);
  }
}

// The question of a finished world, or false when the story does not support one.
bool ask(int qa, const World& w, const std::vector<std::string>& names, Rng& r, BabilongExample& ex) {
  const int A = (int)names.size(), O = (int)kObjects.size();
  if (qa == 1) {
    std::vector<int> seen;
    for (int a = 0; a < A; ++a)
      if (w.actor_room[a] >= 0) seen.push_back(a);
    if (seen.empty()) return false;
    const int a = pick(seen, r);
    ex.question = "Where is " + names[a] + "?";
    ex.answer = kRooms[w.actor_room[a]];
    ex.support = {w.last_move[a]};
    return true;
  }
  if (qa == 2) {  // where an object is: its holder's room, or where it was dropped
    std::vector<int> known;
    for (int o = 0; o < O; ++o)
      if (w.object_room[o] >= 0) known.push_back(o);
    if (known.empty()) return false;
    const int o = pick(known, r);
    ex.question = "Where is the " + kObjects[o] + "?";
    ex.answer = kRooms[w.object_room[o]];
    const int trail_fact = w.trail[o].back().second;  // the move that took it (or its holder) there
    ex.support = {trail_fact, w.held_by[o] >= 0 ? w.last_grab[o] : w.last_drop[o]};
    return true;
  }
  if (qa == 3) {  // the room an object was in before it came to L, for an L it came to once
    std::vector<std::pair<int, size_t>> cand;
    for (int o = 0; o < O; ++o) {
      const auto& t = w.trail[o];
      for (size_t i = 1; i < t.size(); ++i) {
        int arrivals = 0;
        for (size_t j = 1; j < t.size(); ++j) arrivals += t[j].first == t[i].first;
        if (arrivals == 1 && t[0].first != t[i].first) cand.push_back({o, i});
      }
    }
    if (cand.empty()) return false;
    const auto [o, i] = pick(cand, r);
    const auto& t = w.trail[o];
    ex.question = "Where was the " + kObjects[o] + " before the " + kRooms[t[i].first] + "?";
    ex.answer = kRooms[t[i - 1].first];
    int grab = -1;  // the pick-up that carried it from the one room to the other
    for (int f : w.grabs[o])
      if (f < t[i].second) grab = f;
    ex.support = {t[i - 1].second, t[i].second};
    if (grab >= 0) ex.support.push_back(grab);
    return true;
  }
  // qa == 5: the last giving, asked five ways; each answer is the latest matching event.
  if (w.gives.empty()) return false;
  const World::Give g = w.gives.back();
  const std::string &X = names[g.giver], &Y = names[g.receiver], &obj = kObjects[g.object];
  switch (r.below(5)) {
    case 0: ex.question = "Who gave the " + obj + " to " + Y + "?", ex.answer = X; break;
    case 1: ex.question = "Who did " + X + " give the " + obj + " to?", ex.answer = Y; break;
    case 2: ex.question = "What did " + X + " give to " + Y + "?", ex.answer = obj; break;
    case 3: ex.question = "Who received the " + obj + "?", ex.answer = Y; break;
    default: ex.question = "Who gave the " + obj + "?", ex.answer = X; break;
  }
  ex.support = {g.fact};
  return true;
}

// QA4: three rooms on a grid, two stated relations; the question asks one of them either
// way round ("What is north of the B?" A; "What is the A north of?" B).
BabilongExample relations(Rng& r) {
  BabilongExample ex;
  std::vector<int> rooms{0, 1, 2, 3, 4, 5};
  shuffle(rooms, r);
  std::map<std::pair<int, int>, int> at{{{0, 0}, rooms[0]}};
  std::map<int, std::pair<int, int>> pos{{rooms[0], {0, 0}}};
  struct Rel {
    int a, dir, b;  // a is dir of b
  };
  std::vector<Rel> rels;
  for (int k = 1; k <= 2; ++k) {
    for (;;) {
      const int b = rooms[r.below(k)], d = (int)r.below(4);
      const std::pair<int, int> p{pos[b].first + kDirs[d].dx, pos[b].second + kDirs[d].dy};
      if (at.count(p)) continue;
      at[p] = rooms[k];
      pos[rooms[k]] = p;
      rels.push_back({rooms[k], d, b});
      break;
    }
  }
  for (auto& rel : rels)  // stated either way round: "A is d of B" or "B is opposite(d) of A"
    if (r.below(2)) rel = {rel.b, rel.dir ^ 1, rel.a};
  for (auto& rel : rels)
    ex.facts.push_back("The " + kRooms[rel.a] + " is " + kDirs[rel.dir].name + " of the " + kRooms[rel.b] + ".");
  const int k = (int)r.below(2);
  const Rel q = rels[k];
  if (r.below(2)) {
    ex.question = std::string("What is ") + kDirs[q.dir].name + " of the " + kRooms[q.b] + "?";
    ex.answer = kRooms[q.a];
  } else {
    ex.question = "What is the " + kRooms[q.a] + " " + kDirs[q.dir].name + " of?";
    ex.answer = kRooms[q.b];
  }
  ex.support = {k};
  return ex;
}

void bad(const std::string& what) { throw InputError(what); }

}  // namespace

int babilong_story_bound(int facts) {
  return facts * (kMaxFactBytes + 1) + 1 + kMaxQuestionBytes + 1 + kMaxAnswerBytes;
}

void validate(const BabilongConfig& c) {
  if (c.tasks.empty()) bad("option --task.qa is empty (expected bAbI tasks in 1..5 like 1,2,3,4,5)");
  for (int t : c.tasks)
    if (t < 1 || t > 5) bad("option --task.qa: " + std::to_string(t) + " is not a bAbI task this generator has (expected 1..5)");
  for (size_t i = 0; i < c.tasks.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (c.tasks[i] == c.tasks[j]) bad("option --task.qa: task " + std::to_string(c.tasks[i]) + " is listed twice");
  if (c.facts < 4 || c.facts > 32) bad("option --task.facts=" + std::to_string(c.facts) + " (expected 4..32)");
  if (c.distractions.empty()) bad("option --task.distractions is empty (expected haystack bytes like 0,256,512)");
  if (c.per_cell < 1) bad("option --task.per_cell=" + std::to_string(c.per_cell) + " (expected at least 1)");
  const int bound = babilong_story_bound(c.facts);
  if (c.context < bound)
    bad("option --task.context=" + std::to_string(c.context) + " cannot hold a story of --task.facts=" +
        std::to_string(c.facts) + " sentences, its question and answer (expected at least " + std::to_string(bound) + ")");
  for (int d : c.distractions) {
    if (d < 0) bad("option --task.distractions: " + std::to_string(d) + " is negative (expected bytes >= 0)");
    if (d + bound > c.context)
      bad("option --task.distractions: " + std::to_string(d) + " bytes of haystack and a story of up to " +
          std::to_string(bound) + " bytes exceed --task.context=" + std::to_string(c.context) +
          " (the model's context; expected each distraction <= " + std::to_string(c.context - bound) + ")");
  }
}

BabilongExample babi_story(int qa, int facts, uint64_t seed) {
  if (qa < 1 || qa > 5) throw std::invalid_argument("babi_story: qa " + std::to_string(qa) + " is not 1..5");
  Rng r(seed);
  if (qa == 4) {
    BabilongExample ex = relations(r);
    ex.qa = 4;
    return ex;
  }
  const std::vector<std::string>& names = qa == 5 ? kGivers : kActors;
  // A story that supports no question of its task (QA3: no object was carried between two
  // rooms; QA5: nobody gave anything) is drawn again, from the same stream.
  for (int attempt = 0; attempt < 10000; ++attempt) {
    World w(names.size());
    for (int f = 0; f < facts; ++f) {
      if (qa == 1) {  // QA1's world: moves only
        const int a = (int)r.below(names.size());
        int room;
        do room = (int)r.below(kRooms.size());
        while (room == w.actor_room[a]);
        w.move(a, room, names, r);
      } else {
        step(w, names, qa == 5 ? 6 : 0, r);
      }
    }
    BabilongExample ex;
    ex.qa = qa;
    ex.facts = w.facts;
    if (!ask(qa, w, names, r, ex)) continue;
    std::sort(ex.support.begin(), ex.support.end());
    ex.support.erase(std::unique(ex.support.begin(), ex.support.end()), ex.support.end());
    return ex;
  }
  throw std::logic_error("babi_story: no story of task " + std::to_string(qa) + " supports a question");
}

BabilongTask::BabilongTask(const BabilongConfig& c, std::vector<uint8_t> train, std::vector<uint8_t> test,
                           uint64_t seed)
    : cfg_(c), train_(std::move(train)), test_(std::move(test)), seed_(seed),
      train_seed_(derive_seed(seed, 0x626162696c31ull)), test_seed_(derive_seed(seed, 0x626162696c32ull)) {
  validate(c);
  const size_t need = (size_t)c.context + 1;
  if (train_.size() < need || test_.size() < need)
    throw InputError("babilong: the haystack text's splits hold " + std::to_string(train_.size()) + " and " +
                     std::to_string(test_.size()) + " bytes; expected more than --task.context=" +
                     std::to_string(c.context) + " in each");
}

int BabilongTask::max_answer_bytes() const { return kMaxAnswerBytes; }

// The story's facts at random sentence boundaries of a window of `haystack` bytes, in
// order; then the question and the answer.
BabilongExample BabilongTask::place(BabilongExample ex, int haystack, const std::vector<uint8_t>& src,
                                    uint64_t seed) const {
  Rng r(seed);
  const size_t start = r.below(src.size() - (size_t)haystack);
  const std::string hay(src.begin() + (std::ptrdiff_t)start, src.begin() + (std::ptrdiff_t)start + haystack);
  // Boundaries: after each sentence's closing mark followed by a space or a line break, and
  // the window's end (not its start: the window may begin inside a sentence, which a fact
  // would run into).
  std::vector<size_t> bounds;
  for (size_t p = 1; p < hay.size(); ++p)
    if ((hay[p - 1] == '.' || hay[p - 1] == '?' || hay[p - 1] == '!') && (hay[p] == ' ' || hay[p] == '\n'))
      bounds.push_back(p);
  bounds.push_back(hay.size());
  std::vector<size_t> at;
  for (size_t f = 0; f < ex.facts.size(); ++f) at.push_back(bounds[r.below(bounds.size())]);
  std::sort(at.begin(), at.end());
  ex.text.clear();
  ex.fact_at.clear();
  size_t from = 0;
  for (size_t f = 0; f < ex.facts.size(); ++f) {
    ex.text += hay.substr(from, at[f] - from) + " ";
    ex.fact_at.push_back(ex.text.size());
    ex.text += ex.facts[f];
    from = at[f];
  }
  ex.text += hay.substr(from) + "\n" + ex.question + " ";
  ex.answer_start = (int)ex.text.size();
  ex.text += ex.answer + ".";
  ex.haystack_bytes = haystack;
  return ex;
}

BabilongExample BabilongTask::train_example(uint64_t i) const {
  const uint64_t s = derive_seed(train_seed_, i);
  Rng r(s);
  const int qa = cfg_.tasks[r.below(cfg_.tasks.size())];
  BabilongExample ex = babi_story(qa, cfg_.facts, derive_seed(s, 1));
  int story = (int)(1 + ex.question.size() + 1 + ex.answer.size() + 1);
  for (auto& f : ex.facts) story += 1 + (int)f.size();
  return place(std::move(ex), cfg_.context - story, train_, derive_seed(s, 2));
}

BabilongExample BabilongTask::test_example(size_t ti, size_t di, int64_t i) const {
  const uint64_t s = derive_seed(derive_seed(test_seed_, (uint64_t)(ti * 1000 + di)), (uint64_t)i);
  BabilongExample ex = babi_story(cfg_.tasks.at(ti), cfg_.facts, derive_seed(s, 1));
  return place(std::move(ex), cfg_.distractions.at(di), test_, derive_seed(s, 2));
}

}  // namespace mtalab
