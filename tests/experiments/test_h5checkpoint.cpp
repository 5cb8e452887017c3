#include <doctest/doctest.h>
#include <hdf5.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "autograd/errors.h"
#include "experiments/run/atomic_file.h"
#include "experiments/run/checkpoint_file.h"
#include "experiments/run/run_log.h"
#include "test_util.h"

using namespace mtalab;
using testing::bytes_of;
using testing::input_error;
namespace fs = std::filesystem;

namespace {

struct TempDir : testing::TempDir {
  TempDir() : testing::TempDir("h5ckpt") {}
};

// The message of the IoError f throws, or "<no IoError>".
template <class F>
std::string io_error(F&& f) {
  try {
    f();
  } catch (const IoError& e) {
    return e.what();
  }
  return "<no IoError>";
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Random bit patterns, NaNs skipped: covers denormals, infinities, -0 and every exponent,
// which a value-level comparison or a lossy conversion would get wrong.
template <class Bits, class T>
std::vector<T> random_floats(std::mt19937_64& rng, size_t n) {
  std::vector<T> out;
  while (out.size() < n) {
    Bits b = static_cast<Bits>(rng());
    T v;
    std::memcpy(&v, &b, sizeof v);
    if (!std::isnan(v)) out.push_back(v);
  }
  return out;
}

CheckpointTensor f32(std::mt19937_64& rng, std::vector<int64_t> shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return {shape, random_floats<uint32_t, float>(rng, n)};
}

CheckpointTensor f64(std::mt19937_64& rng, std::vector<int64_t> shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return {shape, random_floats<uint64_t, double>(rng, n)};
}

bool same_bits(const CheckpointTensor& a, const CheckpointTensor& b) {
  if (a.shape != b.shape || a.values.index() != b.values.index() || a.numel() != b.numel()) return false;
  return std::visit(
      [&](const auto& va) {
        const auto& vb = std::get<std::decay_t<decltype(va)>>(b.values);
        return va.empty() || std::memcmp(va.data(), vb.data(), va.size() * sizeof(va[0])) == 0;
      },
      a.values);
}

bool same_tensors(const std::map<std::string, CheckpointTensor>& a,
                  const std::map<std::string, CheckpointTensor>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, t] : a)
    if (!b.count(name) || !same_bits(t, b.at(name))) return false;
  return true;
}

CheckpointData sample(uint64_t seed) {
  std::mt19937_64 rng(seed);
  CheckpointData d;
  d.params["embed.weight"] = f32(rng, {17, 8});
  d.params["layers.0.attention.wq.weight"] = f32(rng, {8, 8});
  d.params["layers.0.attention.kernel"] = f64(rng, {2, 3, 5});
  d.params["scale"] = f32(rng, {});  // a scalar
  d.params["empty"] = f64(rng, {0, 4});
  d.optim["adam.m.layers.0.attention.wq.weight"] = f32(rng, {8, 8});
  d.optim["adam.v.layers.0.attention.wq.weight"] = f32(rng, {8, 8});
  d.ints = {{"step", 12345},
            {"rng_counter", std::numeric_limits<int64_t>::max()},
            {"min", std::numeric_limits<int64_t>::min()}};
  d.reals = {{"lr", 3e-4}, {"neg_zero", -0.0}, {"tiny", std::numeric_limits<double>::denorm_min()},
             {"inf", std::numeric_limits<double>::infinity()}};
  d.strings = {{"data_file", "data/enwik8.bin"}, {"empty", ""}, {"utf8", "ñandú"}};
  return d;
}

void check_same(const CheckpointData& a, const CheckpointData& b) {
  CHECK(same_tensors(a.params, b.params));
  CHECK(same_tensors(a.optim, b.optim));
  CHECK(a.ints == b.ints);
  CHECK(a.strings == b.strings);
  REQUIRE(a.reals.size() == b.reals.size());
  for (const auto& [k, v] : a.reals) {
    REQUIRE(b.reals.count(k));
    CHECK(std::memcmp(&v, &b.reals.at(k), sizeof v) == 0);
  }
}

// Sets an attribute on an HDF5 file directly, to forge files save_checkpoint never writes.
void set_root_int_attr(const std::string& path, const char* name, int64_t value) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(f >= 0);
  H5Adelete(f, name);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &value);
  H5Aclose(a);
  H5Sclose(space);
  H5Fclose(f);
}

}  // namespace

TEST_CASE("checkpoint: round trip is bit for bit for float32 and float64") {
  TempDir dir;
  const std::string path = dir / "ckpt.h5";
  const CheckpointData data = sample(7);
  save_checkpoint(path, data);
  CHECK(!fs::exists(path + ".tmp"));
  const CheckpointData back = load_checkpoint(path);
  check_same(data, back);
  CHECK(back.params.at("embed.weight").is_f32());
  CHECK(!back.params.at("layers.0.attention.kernel").is_f32());
  CHECK(back.params.at("scale").shape.empty());
  CHECK(back.params.at("scale").numel() == 1);
  CHECK(back.params.at("empty").shape == std::vector<int64_t>{0, 4});

  // Saving again replaces the checkpoint in one piece.
  const CheckpointData next = sample(8);
  save_checkpoint(path, next);
  CHECK(!fs::exists(path + ".tmp"));
  check_same(next, load_checkpoint(path));

  save_checkpoint(dir / "empty.h5", CheckpointData{});
  const CheckpointData empty = load_checkpoint(dir / "empty.h5");
  CHECK(empty.params.empty());
  CHECK(empty.ints.empty());
}

TEST_CASE("checkpoint: a failed save leaves the previous checkpoint intact") {
  TempDir dir;
  const std::string path = dir / "ckpt.h5";
  save_checkpoint(path, sample(1));
  const std::string before = bytes_of(path);

  // The temporary file cannot be created (a directory sits at its path; root ignores modes).
  fs::create_directories(path + ".tmp/keep");
  const std::string msg = io_error([&] { save_checkpoint(path, sample(2)); });
  CHECK(msg.find("cannot save checkpoint " + path) != std::string::npos);
  CHECK(msg.find("Is a directory") != std::string::npos);
  CHECK(msg.find("the previous checkpoint is intact") != std::string::npos);
  CHECK(bytes_of(path) == before);
  CHECK(fs::exists(path + ".tmp/keep"));  // not ours: left alone
  fs::remove_all(path + ".tmp");

  // Bad data is rejected before anything is written.
  CheckpointData bad = sample(3);
  bad.params["w"].shape = {3, 3};
  bad.params["w"].values = std::vector<float>(8);
  CHECK_THROWS_AS(save_checkpoint(path, bad), std::invalid_argument);
  CheckpointData nested = sample(3);
  nested.params["a/b"] = nested.params.at("scale");
  CHECK_THROWS_AS(save_checkpoint(path, nested), std::invalid_argument);
  CheckpointData twice = sample(3);
  twice.reals["step"] = 1.0;
  CHECK_THROWS_AS(save_checkpoint(path, twice), std::invalid_argument);
  CHECK(bytes_of(path) == before);
  CHECK(!fs::exists(path + ".tmp"));

  const std::string nowhere = dir / "no/such/dir/ckpt.h5";
  CHECK(io_error([&] { save_checkpoint(nowhere, sample(4)); }).find("No such file or directory") != std::string::npos);
  CHECK(io_error([&] { save_checkpoint(nowhere, sample(4)); }).find(nowhere) != std::string::npos);
  check_same(sample(1), load_checkpoint(path));
}

TEST_CASE("checkpoint: missing or corrupt or truncated or foreign files are InputErrors naming the file") {
  TempDir dir;
  const std::string good = dir / "good.h5";
  save_checkpoint(good, sample(5));
  const std::string bytes = bytes_of(good);

  const std::string missing = dir / "missing.h5";
  std::string msg = input_error([&] { load_checkpoint(missing); });
  CHECK(msg.find(missing) != std::string::npos);
  CHECK(msg.find("does not exist") != std::string::npos);
  CHECK(msg.find("expected an mtalab checkpoint") != std::string::npos);

  std::mt19937_64 rng(11);
  std::string noise(4096, '\0');
  for (auto& c : noise) c = static_cast<char>(rng());
  const std::string random = dir / "random.h5";
  write_bytes(random, noise);
  msg = input_error([&] { load_checkpoint(random); });
  CHECK(msg.find(random) != std::string::npos);
  CHECK(msg.find("not an HDF5 file") != std::string::npos);

  const std::string empty = dir / "empty.h5";
  write_bytes(empty, "");
  CHECK(input_error([&] { load_checkpoint(empty); }).find(empty) != std::string::npos);

  for (size_t keep : {bytes.size() / 2, bytes.size() - 1, size_t{100}}) {
    const std::string cut = dir / "cut.h5";
    write_bytes(cut, bytes.substr(0, keep));
    msg = input_error([&] { load_checkpoint(cut); });
    CHECK_MESSAGE(msg.find(cut) != std::string::npos, "kept ", keep, " bytes: ", msg);
  }

  // Garbage over the metadata after the superblock (the 1.8 format checksums it).
  std::string mangled = bytes;
  for (size_t i = 96; i < 2048 && i < mangled.size(); ++i) mangled[i] = static_cast<char>(rng());
  const std::string bad = dir / "mangled.h5";
  write_bytes(bad, mangled);
  CHECK(input_error([&] { load_checkpoint(bad); }).find(bad) != std::string::npos);

  const std::string log_path = dir / "run.h5";
  RunLog::create(log_path).close();
  msg = input_error([&] { load_checkpoint(log_path); });
  CHECK(msg.find("is an mtalab run_log; expected an mtalab checkpoint") != std::string::npos);

  const std::string plain = dir / "plain.h5";
  H5Fclose(H5Fcreate(plain.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  msg = input_error([&] { load_checkpoint(plain); });
  CHECK(msg.find(plain) != std::string::npos);
  CHECK(msg.find("mtalab_format") != std::string::npos);

  const std::string future = dir / "future.h5";
  save_checkpoint(future, sample(6));
  set_root_int_attr(future, "mtalab_format_version", 2);
  msg = input_error([&] { load_checkpoint(future); });
  CHECK(msg.find(future) != std::string::npos);
  CHECK(msg.find("format version 2; expected an mtalab checkpoint (format version 1)") != std::string::npos);

  // A state value edited after the save (a step count, by hand or by a bug) no longer
  // matches the digest, though HDF5 itself finds nothing wrong with the file.
  const std::string edited = dir / "edited.h5";
  save_checkpoint(edited, sample(6));
  {
    hid_t f = H5Fopen(edited.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "state", H5P_DEFAULT);
    hid_t a = H5Aopen(g, "step", H5P_DEFAULT);
    int64_t one = 1;
    REQUIRE(H5Awrite(a, H5T_NATIVE_INT64, &one) >= 0);
    H5Aclose(a);
    H5Gclose(g);
    H5Fclose(f);
  }
  msg = input_error([&] { load_checkpoint(edited); });
  CAPTURE(msg);
  CHECK(msg.find(edited + ": the checkpoint's contents do not match its digest") != std::string::npos);

  // A tensor of integers is not something save_checkpoint writes.
  const std::string ints = dir / "ints.h5";
  save_checkpoint(ints, sample(6));
  {
    hid_t f = H5Fopen(ints.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hsize_t n = 3;
    hid_t space = H5Screate_simple(1, &n, nullptr);
    hid_t d = H5Dcreate2(f, "/params/count", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
  }
  msg = input_error([&] { load_checkpoint(ints); });
  CHECK(msg.find("/params/count has an unsupported element type; expected float32 or float64") !=
        std::string::npos);
}
