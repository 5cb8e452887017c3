// `mtalab plot` on a small real sweep: every figure is drawn, is not blank, and the HTML
// page references only files that exist.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "png_util.h"
#include "process_util.h"

using namespace mtalab::testing;
namespace fs = std::filesystem;


TEST_CASE("plot: curves, attention maps and kernels from a small sweep, and an HTML page whose links exist") {
  TempDir d("plot");
  std::ofstream(d.path / "s.ini")
      << "[model]\nd_model = 16\nn_layers = 2\nn_heads = 2\n"
         "[task]\ntotal_len = 24\nblock_len = 3\nquery_len = 2\nn_test = 8\n"
         "[train]\nsteps = 6\nbatch_size = 4\neval_batch_size = 8\nlog_every = 1\neval_every = 2\n"
         "[sweep]\nout = out\nmodel.attention = softmax, mta\nmta.kq_layers = all\nseeds = 2\n";
  REQUIRE(run_mtalab(d.path, "sweep s.ini").code == 0);
  const ProcResult r = run_mtalab(d.path, "plot out");
  CAPTURE(r.out);
  CAPTURE(r.err);
  REQUIRE(r.code == 0);
  const fs::path plots = d.path / "out/plots";
  const std::set<std::string> expected{"curves.png", "attention_attention=softmax.png", "attention_attention=mta.png",
                                       "kernels_attention=mta.png", "index.html"};
  for (const auto& f : expected) {
    CAPTURE(f);
    CHECK(fs::exists(plots / f));
  }
  for (const auto& f : expected) {
    if (f.size() < 4 || f.substr(f.size() - 4) != ".png") continue;
    CAPTURE(f);
    const auto [w, h] = png_size(bytes_of((plots / f).string()));
    CHECK(w >= 300);
    CHECK(h >= 200);
    CHECK(colours(plots / f) > 16);  // drawn, not blank
  }
  const std::string page = bytes_of((plots / "index.html").string());
  CHECK(page.find("<table>") != std::string::npos);
  CHECK(page.find("attention=mta") != std::string::npos);
  const std::regex link("(?:src|href)=\"([^\"]+)\"");
  int links = 0;
  for (auto it = std::sregex_iterator(page.begin(), page.end(), link); it != std::sregex_iterator(); ++it) {
    ++links;
    CAPTURE((*it)[1].str());
    CHECK(fs::exists(plots / (*it)[1].str()));
  }
  CHECK(links >= 8);  // each of the four figures as an image and a link
  // Nothing readable to draw is a clear error.
  const ProcResult none = run_mtalab(d.path, "plot missing/run.h5");
  CHECK(none.code == 2);
  CHECK(none.err.find("no readable run log") != std::string::npos);
}
