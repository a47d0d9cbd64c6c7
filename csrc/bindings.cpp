// pybind11 module: check, release the GIL, call the op, turn a status into an exception.
// The Python layer (pyquant/ops.py) validates user input with friendly messages; the checks
// in csrc/bindings/ are the last line of defence so that no call reads or writes out of bounds.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "pyquant/bindings.h"
#include "pyquant/cpu.h"
#include "pyquant/dispatch.h"
#include "pyquant/memory.h"
#include "pyquant/threadpool.h"

namespace py = pybind11;
using namespace pyquant;
using bindings::require;

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyquant native kernels";

  m.def("cpu_info", [] {
    const CpuFeatures& f = cpu_features();
    py::dict features;
    features["avx2"] = f.avx2;
    features["avx512f"] = f.avx512f;
    features["avx512bw"] = f.avx512bw;
    features["avx512vl"] = f.avx512vl;
    features["avx512dq"] = f.avx512dq;
    features["avx512vnni"] = f.avx512vnni;
    features["amx_int8"] = f.amx_int8;
    features["fast_gather"] = f.fast_gather;
    py::dict kernel_names;
    for (const auto& [op, name] : kernels().names) kernel_names[py::str(op)] = name;
    py::dict info;
    info["vendor"] = std::string(f.vendor);
    info["detected_isa"] = isa_name(detected_isa());
    info["isa"] = isa_name(kernels().isa);
    info["hw_gather"] = kernels().hw_gather;
    info["features"] = features;
    info["kernels"] = kernel_names;
    info["num_threads"] = ThreadPool::global().num_threads();
    info["threadpool"] = ThreadPool::global().backend();
    return info;
  });

  m.def(
      "set_isa",
      [](const std::string& name, int hw_gather) {
        require(hw_gather >= -1 && hw_gather <= 1, "hw_gather must be -1, 0 or 1");
        Isa isa;
        if (!parse_isa(name, &isa))
          throw py::value_error("isa must be one of scalar, avx2, avx512, avx512vnni, amx; got '" +
                                name + "'");
        if (!set_isa(isa, hw_gather))
          throw py::value_error("isa '" + name + "' is not supported by this CPU (it supports up to '" +
                                isa_name(detected_isa()) + "')");
      },
      py::arg("isa"), py::arg("hw_gather") = -1);
  m.def("get_isa", [] { return std::string(isa_name(kernels().isa)); });
  m.def("detected_isa", [] { return std::string(isa_name(detected_isa())); });

  m.def(
      "set_num_threads",
      [](int n) {
        require(n >= 1, "num_threads must be >= 1, got " + std::to_string(n));
        py::gil_scoped_release release;
        ThreadPool::global().set_num_threads(n);
      },
      py::arg("n"));
  m.def("get_num_threads", [] { return ThreadPool::global().num_threads(); });
  m.def(
      "set_threadpool",
      [](const std::string& kind) {
        require(kind == "openmp" || kind == "own",
                "threadpool must be 'openmp' or 'own', got '" + kind + "'");
        py::gil_scoped_release release;
        ThreadPool::global().set_use_openmp(kind == "openmp");
      },
      py::arg("kind"));


  m.def(
      "advise_huge_pages",
      [](py::array a) {
        require(a.writeable(), "array must be writeable");
        advise_huge_pages(a.mutable_data(), static_cast<size_t>(a.nbytes()));
      },
      py::arg("array"));

  bindings::bind_quantize(m);
  bindings::bind_abs_select(m);
  bindings::bind_sparse(m);
  bindings::bind_gemm(m);
}
