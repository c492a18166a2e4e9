#include "model_store/cpu_engine/gemm_peak.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <chrono>

namespace tucker_seg::cpu_engine {

GemmPeak MeasureGemmPeak(int64_t n, int repeats, bool bf16) {
  using dnnl::memory;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const auto type = bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  const memory::desc in({n, n}, type, memory::format_tag::ab), out({n, n}, memory::data_type::f32, memory::format_tag::ab);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(in, in, out), engine);
  memory a(in, engine), b(in, engine), c(out, engine);
  std::fill_n(static_cast<char*>(a.get_data_handle()), in.get_size(), 0);
  std::fill_n(static_cast<char*>(b.get_data_handle()), in.get_size(), 0);
  const dnnl::matmul mm(pd);
  double best = 1e30;
  for (int r = 0; r < repeats + 1; ++r) {  // the first run only warms up
    const auto start = std::chrono::steady_clock::now();
    mm.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    stream.wait();
    if (r > 0) best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return {2.0 * static_cast<double>(n) * n * n / best / 1e9, pd.impl_info_str()};
}

}  // namespace tucker_seg::cpu_engine
