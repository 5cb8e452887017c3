// Tests of the data pipeline: byte corpus, window batching, and the find-the-block task.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "autograd/errors.h"
#include "data/batcher.h"
#include "data/byte_corpus.h"
#include "data/find_block.h"
#include "data/rng.h"

using namespace mtalab;
namespace fs = std::filesystem;

namespace {

// A fresh directory per test, removed at the end.
struct TempDir {
  fs::path dir;
  TempDir() {
    static int n = 0;
    dir = fs::temp_directory_path() /
          ("mtalab_test_data_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempDir() { fs::remove_all(dir); }
  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) const {
    const fs::path p = dir / name;
    std::ofstream(p, std::ios::binary)
        .write((const char*)bytes.data(), (std::streamsize)bytes.size());
    return p.string();
  }
};

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = (uint8_t)rng.below(256);
  return v;
}

// The InputError message fn throws; fails the check (and returns "") if it throws nothing
// or something else.
template <class F>
std::string input_error(F&& fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  } catch (...) {
    FAIL_CHECK("threw something other than InputError");
    return "";
  }
  FAIL_CHECK("did not throw");
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The window number a batch row came from (windows of random data are all distinct).
int64_t window_of(const std::vector<uint8_t>& data, int64_t T, const int32_t* row) {
  const int64_t n = (int64_t)data.size() / (T + 1);
  for (int64_t w = 0; w < n; ++w)
    if (std::equal(row, row + T, data.begin() + w * (T + 1))) return w;
  return -1;
}

}  // namespace

// ---------------------------------------------------------------------------- rng

TEST_CASE("rng: deterministic per state, below() stays in range and covers it") {
  Rng a(7), b(7), c(8);
  for (int i = 0; i < 10; ++i) CHECK(a.next_u64() == b.next_u64());
  CHECK(Rng(7).next_u64() != c.next_u64());
  Rng r(1);
  std::vector<int> hits(6);
  for (int i = 0; i < 600; ++i) {
    const uint64_t x = r.below(6);
    REQUIRE(x < 6);
    ++hits[x];
  }
  for (int h : hits) CHECK(h > 50);
  RngState s = r.state();
  const uint64_t next = r.next_u64();
  r.set_state(s);
  CHECK(r.next_u64() == next);
  CHECK(s.counter == 600);  // below(6) rejects only 4 of the 2^64 values, so one draw each
}

// ---------------------------------------------------------------------------- corpus

TEST_CASE("corpus: bytes round-trip exactly, all 256 values") {
  TempDir t;
  std::vector<uint8_t> bytes(512);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = (uint8_t)(255 - i % 256);
  CHECK(read_bytes(t.write("all.bin", bytes)) == bytes);
}

TEST_CASE("corpus: fraction split takes the last val_fraction of the file") {
  TempDir t;
  const auto bytes = random_bytes(1000, 3);
  ByteCorpusConfig cfg;
  cfg.path = t.write("x.txt", bytes);
  cfg.seq_len = 16;
  const ByteCorpus c = load_byte_corpus(cfg);
  CHECK(ByteCorpus::vocab_size == 256);
  REQUIRE(c.train.size() == 900);
  REQUIRE(c.val.size() == 100);
  CHECK(std::equal(c.train.begin(), c.train.end(), bytes.begin()));
  CHECK(std::equal(c.val.begin(), c.val.end(), bytes.begin() + 900));

  cfg.val_fraction = 0.25;
  const ByteCorpus q = load_byte_corpus(cfg);
  CHECK(q.train.size() == 750);
  CHECK(q.val.size() == 250);
}

TEST_CASE("corpus: a second file is the validation split") {
  TempDir t;
  const auto tr = random_bytes(300, 1), va = random_bytes(40, 2);
  ByteCorpusConfig cfg;
  cfg.path = t.write("train.txt", tr);
  cfg.val_path = t.write("val.txt", va);
  cfg.seq_len = 20;
  const ByteCorpus c = load_byte_corpus(cfg);
  CHECK(c.train == tr);
  CHECK(c.val == va);
}

namespace {
std::string read_bytes_error(const std::string& path) {
  try {
    read_bytes(path);
  } catch (const InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("not an InputError: ") + e.what();
  }
  return "<no error>";
}
}  // namespace

TEST_CASE("corpus: bad input throws InputError naming the value") {
  TempDir t;
  ByteCorpusConfig cfg;
  cfg.seq_len = 256;

  cfg.path = (t.dir / "nope.txt").string();
  CHECK(contains(input_error([&] { load_byte_corpus(cfg); }), "nope.txt"));
  CHECK(contains(input_error([&] { load_byte_corpus(cfg); }), "does not exist"));

  cfg.path = t.dir.string();
  CHECK(contains(input_error([&] { load_byte_corpus(cfg); }), "not a regular file"));

  // Files the system refuses to read are InputErrors with its reason, never an exception
  // from deep inside a stream (which used to abort the program); a FIFO must not block.
  CHECK(read_bytes_error("/proc/self/mem") == "data file '/proc/self/mem' cannot be read: Input/output error");
  CHECK(contains(read_bytes_error("/dev/zero"), "'/dev/zero' is not a regular file"));
  const std::string fifo = (t.dir / "fifo").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK(contains(read_bytes_error(fifo), "is not a regular file"));

  cfg.path = t.write("empty.txt", {});
  CHECK(contains(input_error([&] { load_byte_corpus(cfg); }), "empty.txt' is empty"));

  cfg.path = t.write("short.txt", random_bytes(1000, 1));  // splits 900 / 100 < 257
  std::string m = input_error([&] { load_byte_corpus(cfg); });
  CHECK(contains(m, "holds 1000 bytes"));
  CHECK(contains(m, "100 validation"));
  CHECK(contains(m, "seq_len+1 = 257"));

  cfg.path = t.write("train.txt", random_bytes(256, 1));  // one short of a window
  m = input_error([&] { load_byte_corpus(cfg); });
  CHECK(contains(m, "holds 256 bytes"));
  CHECK(contains(m, "257"));

  cfg.path = t.write("train.txt", random_bytes(5000, 1));
  cfg.val_path = t.write("val.txt", random_bytes(100, 2));
  m = input_error([&] { load_byte_corpus(cfg); });
  CHECK(contains(m, "val.txt' holds 100 bytes"));
  cfg.val_path = (t.dir / "missing_val.txt").string();
  CHECK(contains(input_error([&] { load_byte_corpus(cfg); }), "missing_val.txt"));
  cfg.val_path.clear();

  cfg.val_fraction = 1.5;
  CHECK(contains(input_error([&] { load_byte_corpus(cfg); }), "val_fraction is 1.5"));
  cfg.val_fraction = 0;
  CHECK(contains(input_error([&] { load_byte_corpus(cfg); }), "val_fraction is 0"));
  cfg.val_fraction = 0.1;

  cfg.seq_len = 0;
  CHECK(contains(input_error([&] { load_byte_corpus(cfg); }), "seq_len is 0"));
  cfg.seq_len = 256;
  CHECK_NOTHROW(load_byte_corpus(cfg));
}

// ---------------------------------------------------------------------------- batcher

TEST_CASE("batcher: windows are non-overlapping and targets are inputs shifted by one") {
  const int64_t T = 8;
  const auto data = random_bytes(10 * (T + 1) + 5, 11);  // 10 windows plus a partial one
  WindowBatcher b(data, T, 0, /*shuffle=*/false);
  REQUIRE(b.num_windows() == 10);
  const TokenBatch batch = b.next_batch(10);
  REQUIRE(batch.batch_size == 10);
  REQUIRE(batch.seq_len == T);
  REQUIRE(batch.inputs.size() == (size_t)(10 * T));
  for (int64_t r = 0; r < 10; ++r)
    for (int64_t t = 0; t < T; ++t) {
      CHECK(batch.inputs[r * T + t] == data[r * (T + 1) + t]);
      CHECK(batch.targets[r * T + t] == data[r * (T + 1) + t + 1]);
      if (t + 1 < T) CHECK(batch.targets[r * T + t] == batch.inputs[r * T + t + 1]);
    }
  // file order wraps into the next epoch: window 0 comes again
  const TokenBatch again = b.next_batch(1);
  CHECK(std::equal(again.inputs.begin(), again.inputs.end(), batch.inputs.begin()));
  CHECK(b.state().epoch == 1);
  CHECK(b.state().index == 1);
}

TEST_CASE("batcher: shuffled order is a seeded permutation, new every epoch") {
  const int64_t T = 4;
  const auto data = random_bytes(40 * (T + 1), 5);
  WindowBatcher a(data, T, 123), a2(data, T, 123), other(data, T, 124);
  std::vector<int64_t> identity(40);
  std::iota(identity.begin(), identity.end(), int64_t{0});

  const auto o0 = a.epoch_order(0), o1 = a.epoch_order(1);
  auto sorted = o0;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == identity);
  sorted = o1;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == identity);
  CHECK(o0 != identity);
  CHECK(o0 != o1);
  CHECK(o0 == a2.epoch_order(0));
  CHECK(o0 != other.epoch_order(0));
  CHECK(WindowBatcher(data, T, 123, false).epoch_order(3) == identity);

  // the batches really follow epoch_order, across the epoch boundary
  std::vector<int64_t> seen;
  for (int i = 0; i < 8; ++i) {  // 8 batches of 7 = 56 windows: all of epoch 0, 16 of epoch 1
    const TokenBatch b = a.next_batch(7);
    for (int64_t r = 0; r < 7; ++r) seen.push_back(window_of(data, T, &b.inputs[r * T]));
  }
  std::vector<int64_t> expect = o0;
  expect.insert(expect.end(), o1.begin(), o1.begin() + 16);
  CHECK(seen == expect);
  CHECK(a.state() == BatcherState{123, 1, 16});
}

TEST_CASE("batcher: resuming from a saved state reproduces the following batches") {
  const int64_t T = 6;
  const auto data = random_bytes(13 * (T + 1) + 3, 9);
  WindowBatcher a(data, T, 42);
  for (int i = 0; i < 7; ++i) a.next_batch(3);  // 21 windows: into epoch 1
  const BatcherState saved = a.state();
  CHECK(saved.epoch == 1);

  std::vector<TokenBatch> want;
  for (int i = 0; i < 10; ++i) want.push_back(a.next_batch(5));

  WindowBatcher b(data, T, 0);  // built with another seed: the state carries the seed
  b.next_batch(2);
  b.set_state(saved);
  for (int i = 0; i < 10; ++i) {
    const TokenBatch got = b.next_batch(5);
    CHECK(got.inputs == want[i].inputs);
    CHECK(got.targets == want[i].targets);
  }
  CHECK(b.state() == a.state());

  CHECK(contains(input_error([&] { b.set_state({42, 0, 13}); }), "index is 13"));
  CHECK(contains(input_error([&] { b.set_state({42, -1, 0}); }), "epoch is -1"));
  CHECK(contains(input_error([&] { b.next_batch(0); }), "batch_size is 0"));
  CHECK(contains(input_error([&] { WindowBatcher(random_bytes(6, 1), T, 0); }), "holds 6 bytes"));
  CHECK(contains(input_error([&] { WindowBatcher(data, 0, 0); }), "seq_len is 0"));
}

TEST_CASE("eval batches: whole split in file order, partial window dropped") {
  const int64_t T = 5;
  const auto data = random_bytes(10 * (T + 1) + T, 17);  // 10 windows + 5 leftover bytes
  EvalBatches ev(data, T, 4);
  CHECK(ev.num_windows() == 10);
  CHECK(ev.num_batches() == 3);
  std::vector<int64_t> sizes;
  std::vector<int32_t> inputs, targets;
  TokenBatch b;
  while (ev.next(b)) {
    sizes.push_back(b.batch_size);
    CHECK(b.inputs.size() == (size_t)(b.batch_size * T));
    inputs.insert(inputs.end(), b.inputs.begin(), b.inputs.end());
    targets.insert(targets.end(), b.targets.begin(), b.targets.end());
  }
  CHECK(sizes == std::vector<int64_t>{4, 4, 2});
  REQUIRE(inputs.size() == (size_t)(10 * T));
  for (int64_t w = 0; w < 10; ++w)
    for (int64_t t = 0; t < T; ++t) {
      CHECK(inputs[w * T + t] == data[w * (T + 1) + t]);
      CHECK(targets[w * T + t] == data[w * (T + 1) + t + 1]);
    }
  CHECK_FALSE(ev.next(b));
  ev.reset();
  REQUIRE(ev.next(b));
  CHECK(std::equal(b.inputs.begin(), b.inputs.end(), inputs.begin()));
  CHECK(contains(input_error([&] { EvalBatches(data, T, 0); }), "batch_size is 0"));
}

TEST_CASE("bits per byte is nats over ln 2") {
  CHECK(bits_per_byte(std::log(2.0)) == doctest::Approx(1.0));
  CHECK(bits_per_byte(std::log(256.0)) == doctest::Approx(8.0));
}

// ---------------------------------------------------------------------------- find the block

namespace {

struct Parsed {
  std::string pad, query, answer;
  std::vector<std::string> blocks;
};

// Splits an example by its visible structure only, independently of the generator.
Parsed parse(const std::string& s, const FindBlockConfig& c) {
  Parsed p;
  const size_t first = s.find_first_not_of(kFindBlockPad);
  p.pad = s.substr(0, first);
  const size_t hash = s.find('#');
  REQUIRE(hash != std::string::npos);
  std::string body = s.substr(first, hash - first);
  for (size_t at = 0;;) {
    const size_t dot = body.find('.', at);
    p.blocks.push_back(body.substr(at, dot - at));
    if (dot == std::string::npos) break;
    at = dot + 1;
  }
  p.query = s.substr(hash + 1, (size_t)c.query_len);
  p.answer = s.substr(hash + 1 + (size_t)c.query_len);
  return p;
}

bool holds_all(const std::string& block, const std::string& q) {
  return std::all_of(q.begin(), q.end(),
                     [&](char ch) { return block.find(ch) != std::string::npos; });
}

FindBlockConfig make_cfg(int n, int l, int total, FindBlockAnswer a) {
  FindBlockConfig c;
  c.block_len = n;
  c.query_len = l;
  c.total_len = total;
  c.answer = a;
  c.n_test = 50;
  return c;
}

}  // namespace

TEST_CASE("find-block: layout of the documented example") {
  FindBlockTask task(make_cfg(5, 2, 64, FindBlockAnswer::all), 1);
  CHECK(task.num_blocks() == 9);
  CHECK(task.pad_len() == 3);
  CHECK(task.seq_len() == 63);
  CHECK(task.answer_span().start == 59);
  CHECK(task.answer_span().length == 5);
  const std::string e = task.train_example(0);
  CHECK(e.substr(0, 3) == "___");
  CHECK(e[3] != '_');
  CHECK(e[56] == '#');
}

TEST_CASE("find-block: every example has the promised structure") {
  const std::vector<FindBlockConfig> cfgs = {
      make_cfg(5, 2, 64, FindBlockAnswer::all),   make_cfg(5, 2, 64, FindBlockAnswer::first),
      make_cfg(5, 2, 64, FindBlockAnswer::last),  make_cfg(3, 3, 41, FindBlockAnswer::first),
      make_cfg(1, 1, 12, FindBlockAnswer::last),  make_cfg(25, 1, 80, FindBlockAnswer::all),
      make_cfg(25, 25, 102, FindBlockAnswer::all), make_cfg(8, 4, 127, FindBlockAnswer::last)};
  for (const FindBlockConfig& c : cfgs) {
    CAPTURE(c.block_len);
    CAPTURE(c.query_len);
    CAPTURE(c.total_len);
    const std::string mode = to_string(c.answer);
    CAPTURE(mode);
    FindBlockTask task(c, 77);
    const int A = c.answer == FindBlockAnswer::all ? c.block_len : 1;
    const int K = task.num_blocks();
    CHECK(K >= 2);
    CHECK(task.pad_len() == c.total_len - c.query_len - A - K * (c.block_len + 1));
    CHECK(task.pad_len() < c.block_len + 1);  // as many blocks as fit
    std::vector<int> target_hits((size_t)K);
    const int n = 1500;  // training examples, then the 50 test examples (not counted below)
    for (int i = 0; i < n + c.n_test; ++i) {
      const std::string e = i < n ? task.train_example((uint64_t)i) : task.test_example(i - n);
      REQUIRE(e.size() == (size_t)c.total_len);
      const Parsed p = parse(e, c);
      CHECK(p.pad == std::string((size_t)task.pad_len(), kFindBlockPad));
      REQUIRE(p.blocks.size() == (size_t)K);
      for (const std::string& b : p.blocks) {
        REQUIRE(b.size() == (size_t)c.block_len);
        CHECK(std::all_of(b.begin(), b.end(), [](char ch) { return ch >= 'a' && ch <= 'z'; }));
        CHECK(std::set<char>(b.begin(), b.end()).size() == b.size());
      }
      REQUIRE(p.query.size() == (size_t)c.query_len);
      CHECK(std::set<char>(p.query.begin(), p.query.end()).size() == p.query.size());
      int holders = 0, target = -1;
      for (int k = 0; k < K; ++k)
        if (holds_all(p.blocks[(size_t)k], p.query)) ++holders, target = k;
      REQUIRE(holders == 1);  // the query letters come from the target, and from no other block
      if (i < n) ++target_hits[(size_t)target];
      const std::string& tb = p.blocks[(size_t)target];
      const std::string want = c.answer == FindBlockAnswer::all     ? tb
                               : c.answer == FindBlockAnswer::first ? tb.substr(0, 1)
                                                                    : tb.substr(tb.size() - 1);
      CHECK(p.answer == want);
      CHECK(task.answer(e) == want);
      CHECK(e.substr((size_t)task.answer_span().start) == want);
    }
    // the target position is uniform over the K blocks (loose bounds, about 6 sigma)
    const double expect = (double)n / K;
    for (int h : target_hits) CHECK(std::abs(h - expect) < 6 * std::sqrt(expect) + 1);
  }
}

TEST_CASE("find-block: loss mask marks exactly the answer tokens") {
  for (auto a : {FindBlockAnswer::all, FindBlockAnswer::first, FindBlockAnswer::last}) {
    FindBlockTask task(make_cfg(4, 2, 33, a), 5);
    const int64_t T = task.seq_len();
    const AnswerSpan span = task.answer_span();
    const FindBlockBatch b = task.next_train_batch(6);
    REQUIRE(b.batch_size == 6);
    REQUIRE(b.seq_len == T);
    REQUIRE(b.loss_mask.size() == (size_t)(6 * T));
    for (int64_t r = 0; r < 6; ++r) {
      const std::string e = task.train_example((uint64_t)r);
      std::string masked;
      float ones = 0;
      for (int64_t t = 0; t < T; ++t) {
        const size_t k = (size_t)(r * T + t);
        CHECK(b.inputs[k] == (uint8_t)e[(size_t)t]);
        CHECK(b.targets[k] == (uint8_t)e[(size_t)t + 1]);
        CHECK((b.loss_mask[k] == 0.f || b.loss_mask[k] == 1.f));
        if (b.loss_mask[k] == 1.f) {
          masked += (char)b.targets[k];
          ones += 1;
        }
      }
      CHECK(ones == span.length);
      CHECK(masked == task.answer(e));
      CHECK(b.loss_mask[(size_t)(r * T + T - 1)] == 1.f);           // the last byte is answer
      CHECK(b.loss_mask[(size_t)(r * T + span.start - 2)] == 0.f);  // the last query byte isn't
    }
  }
}

TEST_CASE("find-block: deterministic per seed, train and test sets differ") {
  const FindBlockConfig c = make_cfg(5, 2, 64, FindBlockAnswer::all);
  FindBlockTask a(c, 9), b(c, 9), other(c, 10);
  CHECK(a.train_seed() != a.test_seed());
  CHECK(a.train_seed() != other.train_seed());
  CHECK(a.test_set() == b.test_set());
  CHECK(a.test_set().size() == 50);
  CHECK(a.test_set() != other.test_set());
  const auto ba = a.next_train_batch(8), bb = b.next_train_batch(8), bo = other.next_train_batch(8);
  CHECK(ba.inputs == bb.inputs);
  CHECK(ba.inputs != bo.inputs);

  std::set<std::string> train;
  for (uint64_t i = 0; i < 2000; ++i) train.insert(a.train_example(i));
  CHECK(train.size() == 2000);
  for (const std::string& e : a.test_set()) CHECK(train.count(e) == 0);

  // the stream continues where it stopped, and resumes from a saved state
  CHECK(a.state().next_example == 8);
  const FindBlockState saved = a.state();
  const auto next = a.next_train_batch(4);
  CHECK(next.inputs == a.make_batch({a.train_example(8), a.train_example(9), a.train_example(10),
                                     a.train_example(11)}).inputs);
  b.set_state(saved);
  CHECK(b.next_train_batch(4).inputs == next.inputs);
  CHECK(contains(input_error([&] { other.set_state(saved); }), "seed 9"));
  CHECK_THROWS_AS(a.test_example(50), std::out_of_range);
}

TEST_CASE("find-block: error rate counts inexact answers") {
  FindBlockTask task(make_cfg(5, 2, 64, FindBlockAnswer::all), 3);
  const auto test = task.test_set();
  std::vector<std::string> decoded;
  for (size_t i = 0; i < 10; ++i) decoded.push_back(task.answer(test[i]));
  const std::vector<std::string> ten(test.begin(), test.begin() + 10);
  CHECK(task.error_rate(ten, decoded) == 0.0);
  decoded[3][4] = decoded[3][4] == 'a' ? 'b' : 'a';  // one wrong letter
  decoded[7] = decoded[7].substr(0, 4);             // too short
  CHECK(task.error_rate(ten, decoded) == doctest::Approx(0.2));
}

TEST_CASE("find-block: bad config throws InputError naming the option") {
  auto err = [](FindBlockConfig c) { return input_error([&] { FindBlockTask(c, 0); }); };
  FindBlockConfig c = make_cfg(5, 2, 64, FindBlockAnswer::all);
  std::string m = err(make_cfg(0, 1, 64, FindBlockAnswer::all));
  CHECK(contains(m, "block_len is 0"));
  m = err(make_cfg(26, 1, 200, FindBlockAnswer::first));
  CHECK(contains(m, "block_len is 26"));
  m = err(make_cfg(5, 6, 64, FindBlockAnswer::all));
  CHECK(contains(m, "query_len is 6"));
  m = err(make_cfg(5, 0, 64, FindBlockAnswer::all));
  CHECK(contains(m, "query_len is 0"));
  m = err(make_cfg(5, 2, 18, FindBlockAnswer::all));  // needs 2*6 + 2 + 5 = 19
  CHECK(contains(m, "total_len is 18"));
  CHECK(contains(m, "19"));
  CHECK_NOTHROW(FindBlockTask(make_cfg(5, 2, 19, FindBlockAnswer::all), 0));
  CHECK_NOTHROW(FindBlockTask(make_cfg(5, 2, 15, FindBlockAnswer::last), 0));
  c.n_test = -1;
  CHECK(contains(err(c), "n_test is -1"));
  CHECK(contains(input_error([] { parse_find_block_answer("middle"); }), "'middle'"));
  CHECK(parse_find_block_answer("first") == FindBlockAnswer::first);
  FindBlockTask task(make_cfg(5, 2, 64, FindBlockAnswer::all), 0);
  CHECK(contains(input_error([&] { task.next_train_batch(0); }), "batch_size is 0"));
}
