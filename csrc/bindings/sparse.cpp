// Bindings of the sparse linear ops. The packed weight is validated once (sparse_check, O(nnz))
// when pyquant.ops.SparsePacked is built; per call only O(1) size checks run here.
#include <string>

#include "pyquant/bindings.h"
#include "pyquant/ops.h"

namespace pyquant {
namespace bindings {
namespace {

SparseMatrix make_matrix(const carray<int64_t>& row_ptr, const py::array& idx,
                         const py::array& values, int64_t n, int64_t k) {
  require(n >= 0 && k >= 0, "n and k must be >= 0");
  require(row_ptr.size() == n + 1, "row_ptr must have n + 1 elements");
  require_contiguous(idx, "col_idx");
  require_contiguous(values, "values");
  const int64_t nnz = row_ptr.data()[n];
  require(row_ptr.data()[0] == 0 && idx.size() == nnz && values.size() == nnz,
          "row_ptr[n] must equal the number of indices and values");
  SparseMatrix w;
  w.n = n;
  w.k = k;
  w.row_ptr = row_ptr.data();
  if (idx.dtype().is(py::dtype::of<int16_t>())) {
    require(k <= 65536, "int16 (uint16) col_idx needs k <= 65536");
    w.idx16 = static_cast<const uint16_t*>(idx.data());
  } else if (idx.dtype().is(py::dtype::of<int32_t>())) {
    w.idx32 = static_cast<const int32_t*>(idx.data());
  } else {
    throw py::type_error("col_idx must be int16 (read as uint16) or int32");
  }
  w.values = values.data();
  return w;
}

const float* optional_bias(const py::object& bias, int64_t n) {
  if (bias.is_none()) return nullptr;
  const auto b = bias.cast<carray<float>>();
  require(b.size() == n, "bias must have n elements");
  return b.data();
}

// out must not share memory with anything the kernel reads.
void require_out_disjoint(const py::array& out, const py::array& x, const py::array& row_ptr,
                          const py::array& idx, const py::array& values, const py::object& extra1,
                          const char* extra1_name, const py::object& block_ptr,
                          const char* x_name = "x") {
  require_disjoint(out, "out", x, x_name);
  require_disjoint(out, "out", row_ptr, "row_ptr");
  require_disjoint(out, "out", idx, "col_idx");
  require_disjoint(out, "out", values, "values");
  if (!extra1.is_none()) require_disjoint(out, "out", extra1.cast<py::array>(), extra1_name);
  if (!block_ptr.is_none()) require_disjoint(out, "out", block_ptr.cast<py::array>(), "block_ptr");
}

SparseBlocks make_blocks(const py::object& block_ptr, int64_t num_blocks, int64_t n) {
  SparseBlocks b;
  if (block_ptr.is_none()) return b;
  const auto bp = block_ptr.cast<carray<int64_t>>();
  require(num_blocks >= 1 && bp.size() == num_blocks * (n + 1),
          "block_ptr must have num_blocks * (n + 1) elements");
  b.block_ptr = bp.data();
  b.num_blocks = num_blocks;
  return b;
}

// A 16-row group view (int8 16 x 4 or fp32 16 x 1 tiles) from t[i0 .. i0 + 2] = (group_ptr
// [ceil(n / 16) + 1] from 0 to the count of group units (quads or columns), group_col, group_w
// with 16 weights per unit): shapes checked, the arrays held in ptr / col / wts and matrix's
// group fields pointed at them.
template <typename W, typename Matrix>
void take_groups(const py::tuple& t, size_t i0, int64_t n, carray<int64_t>& ptr,
                 carray<int32_t>& col, carray<W>& wts, Matrix& matrix) {
  ptr = t[i0].cast<carray<int64_t>>();
  col = t[i0 + 1].cast<carray<int32_t>>();
  wts = t[i0 + 2].cast<carray<W>>();
  const int64_t groups = (n + 15) / 16;
  require(ptr.size() == groups + 1 && ptr.data()[0] == 0 && ptr.data()[groups] == col.size(),
          "group_ptr must have ceil(n / 16) + 1 elements from 0 to the group unit count");
  require(wts.size() == 16 * col.size(), "group_w must have 16 per group unit");
  matrix.groups = groups;
  matrix.group_ptr = ptr.data();
  matrix.group_col = col.data();
  matrix.group_w = wts.data();
}

// The quad view of a 1 x 4 blocked int8 pack: (quad_w int32 [nnz / 4], quad_col int32
// [nnz / 4], row_sum int32 [n]) or None, optionally followed by its 16 x 4 tiles (group_ptr
// int64 [ceil(n / 16) + 1], group_col int32 [q], group_w int32 [q * 16]). Contents are derived
// from the validated pack by pyquant.ops_sparse; here only the shapes are checked. Holds the
// arrays while the op runs.
struct QuadArgs {
  carray<int32_t> quad_w, quad_col, row_sum;
  carray<int64_t> group_ptr;
  carray<int32_t> group_col, group_w;
  QuadMatrix matrix;
  const QuadMatrix* get() const { return matrix.quad_w ? &matrix : nullptr; }
};

QuadArgs make_quads(const py::object& quads, int64_t n, int64_t k, const SparseMatrix& w) {
  QuadArgs a;
  if (quads.is_none()) return a;
  const auto t = quads.cast<py::tuple>();
  require(t.size() == 3 || t.size() == 6,
          "quads must be (quad_w, quad_col, row_sum[, group_ptr, group_col, group_w])");
  a.quad_w = t[0].cast<carray<int32_t>>();
  a.quad_col = t[1].cast<carray<int32_t>>();
  a.row_sum = t[2].cast<carray<int32_t>>();
  require(k % 4 == 0, "quads need k % 4 == 0");
  require(a.quad_w.size() * 4 == w.row_ptr[n] && a.quad_col.size() == a.quad_w.size(),
          "quad_w and quad_col must have nnz / 4 elements");
  require(a.row_sum.size() == n, "row_sum must have n elements");
  a.matrix.quad_w = a.quad_w.data();
  a.matrix.quad_col = a.quad_col.data();
  a.matrix.row_sum = a.row_sum.data();
  if (t.size() == 6) take_groups(t, 3, n, a.group_ptr, a.group_col, a.group_w, a.matrix);
  return a;
}

// The 16 x 1 tile view of an fp32 pack: (group_ptr int64 [ceil(n / 16) + 1], group_col int32
// [c], group_w float32 [c * 16]) or None, derived by pyquant.ops_sparse like the quad view
// (shapes checked here). Holds the arrays while the op runs.
struct F32TileArgs {
  carray<int64_t> group_ptr;
  carray<int32_t> group_col;
  carray<float> group_w;
  F32Tiles matrix;
  const F32Tiles* get() const { return matrix.groups > 0 ? &matrix : nullptr; }
};

F32TileArgs make_f32_tiles(const py::object& tiles, int64_t n) {
  F32TileArgs a;
  if (tiles.is_none()) return a;
  const auto t = tiles.cast<py::tuple>();
  require(t.size() == 3, "tiles must be (group_ptr, group_col, group_w)");
  take_groups(t, 0, n, a.group_ptr, a.group_col, a.group_w, a.matrix);
  return a;
}

}  // namespace

void bind_sparse(py::module_& m) {
  m.def(
      "sparse_check",
      [](const carray<int64_t>& row_ptr, const py::array& idx, int64_t n, int64_t k,
         bool even_rows, const py::object& block_ptr, int64_t num_blocks) {
        require(n >= 0 && k >= 0, "n and k must be >= 0");
        require(row_ptr.size() == n + 1, "row_ptr must have n + 1 elements");
        const int64_t* rp = row_ptr.data();
        require(rp[0] == 0, "row_ptr[0] must be 0");
        for (int64_t i = 0; i < n; ++i) {
          require(rp[i + 1] >= rp[i], "row_ptr must be non-decreasing");
          require(!even_rows || (rp[i + 1] - rp[i]) % 2 == 0,
                  "int8 packs need an even count of entries per row");
        }
        require(idx.size() == rp[n], "col_idx must have row_ptr[n] elements");
        if (idx.dtype().is(py::dtype::of<int16_t>())) {
          const auto* p = static_cast<const uint16_t*>(idx.data());
          for (int64_t i = 0; i < rp[n]; ++i)
            if (p[i] >= k)
              throw py::value_error("col_idx has an index >= k (" + std::to_string(k) + ")");
        } else if (idx.dtype().is(py::dtype::of<int32_t>())) {
          const auto* p = static_cast<const int32_t*>(idx.data());
          for (int64_t i = 0; i < rp[n]; ++i)
            require(p[i] >= 0 && p[i] < k, "col_idx has an index outside [0, k)");
        } else {
          throw py::type_error("col_idx must be int16 or int32");
        }
        const SparseBlocks b = make_blocks(block_ptr, num_blocks, n);
        if (b.block_ptr) {
          // Block-major runs [num_blocks][n + 1]: one non-decreasing walk from 0 to nnz
          // (row n of block j is where block j + 1 starts), so the kernels never read outside
          // the entries; each row's runs must add up to its row_ptr count (thread split and
          // to_dense rely on it). The runs' column ranges only affect speed.
          const int64_t* q = b.block_ptr;
          require(q[0] == 0 && q[num_blocks * (n + 1) - 1] == rp[n],
                  "block_ptr must start at 0 and end at the number of entries");
          for (int64_t j = 0; j < num_blocks; ++j) {
            const int64_t* r = q + j * (n + 1);
            require(j == 0 || r[0] == r[-1], "block_ptr[b, 0] must equal block_ptr[b - 1, n]");
            for (int64_t i = 0; i < n; ++i) {
              require(r[i + 1] >= r[i], "block_ptr must be non-decreasing within a block");
              require(!even_rows || (r[i + 1] - r[i]) % 2 == 0,
                      "int8 block_ptr runs must have even lengths");
            }
          }
          for (int64_t i = 0; i < n; ++i) {
            int64_t count = 0;
            for (int64_t j = 0; j < num_blocks; ++j)
              count += q[j * (n + 1) + i + 1] - q[j * (n + 1) + i];
            require(count == rp[i + 1] - rp[i],
                    "block_ptr runs of a row must add up to its row_ptr count");
          }
        }
      },
      py::arg("row_ptr").noconvert(), py::arg("col_idx"), py::arg("n"), py::arg("k"),
      py::arg("even_rows"), py::arg("block_ptr").none(true), py::arg("num_blocks"));

  m.def(
      "sparse_linear_f32",
      [](const carray<float>& x, int64_t rows, const carray<int64_t>& row_ptr,
         const py::array& idx, const carray<float>& values, int64_t n, int64_t k,
         const py::object& bias, carray<float> out, const py::object& block_ptr,
         int64_t num_blocks, const py::object& tiles) {
        const SparseMatrix w = make_matrix(row_ptr, idx, values, n, k);
        const SparseBlocks blocks = make_blocks(block_ptr, num_blocks, n);
        const F32TileArgs ta = make_f32_tiles(tiles, n);
        require(rows >= 0 && x.size() == rows * k, "x must have rows * k elements");
        require(out.size() == rows * n, "out must have rows * n elements");
        require_out_disjoint(out, x, row_ptr, idx, values, bias, "bias", block_ptr);
        const float* b = optional_bias(bias, n);
        float* y = out.mutable_data();
        py::gil_scoped_release release;
        sparse_linear_f32(w, blocks, x.data(), rows, b, y, ta.get());
      },
      py::arg("x").noconvert(), py::arg("rows"), py::arg("row_ptr").noconvert(),
      py::arg("col_idx"), py::arg("values").noconvert(), py::arg("n"), py::arg("k"),
      py::arg("bias").none(true), py::arg("out").noconvert(), py::arg("block_ptr").none(true),
      py::arg("num_blocks"), py::arg("tiles").none(true) = py::none());

  m.def(
      "sparse_mm_f32",
      [](const carray<float>& b, int64_t cols, const carray<int64_t>& row_ptr,
         const py::array& idx, const carray<float>& values, int64_t n, int64_t k,
         carray<float> out, const py::object& block_ptr, int64_t num_blocks) {
        const SparseMatrix w = make_matrix(row_ptr, idx, values, n, k);
        const SparseBlocks blocks = make_blocks(block_ptr, num_blocks, n);
        require(cols >= 0 && b.size() == k * cols, "b must have k * cols elements");
        require(out.size() == n * cols, "out must have n * cols elements");
        require_out_disjoint(out, b, row_ptr, idx, values, py::none(), "", block_ptr, "b");
        float* y = out.mutable_data();
        py::gil_scoped_release release;
        sparse_mm_f32(w, blocks, b.data(), cols, y);
      },
      py::arg("b").noconvert(), py::arg("cols"), py::arg("row_ptr").noconvert(),
      py::arg("col_idx"), py::arg("values").noconvert(), py::arg("n"), py::arg("k"),
      py::arg("out").noconvert(), py::arg("block_ptr").none(true), py::arg("num_blocks"));

  m.def(
      "sparse_linear_q8",
      [](const carray<float>& x, int64_t rows, const carray<int64_t>& row_ptr,
         const py::array& idx, const carray<int16_t>& values, const carray<float>& w_scale,
         int64_t n, int64_t k, const py::object& bias, carray<float> out,
         const py::object& block_ptr, int64_t num_blocks, const py::object& quads) {
        const SparseMatrix w = make_matrix(row_ptr, idx, values, n, k);
        const SparseBlocks blocks = make_blocks(block_ptr, num_blocks, n);
        const QuadArgs qa = make_quads(quads, n, k, w);
        require(rows >= 0 && x.size() == rows * k, "x must have rows * k elements");
        require(out.size() == rows * n, "out must have rows * n elements");
        require(w_scale.size() == n, "w_scale must have n elements");
        require_out_disjoint(out, x, row_ptr, idx, values, bias, "bias", block_ptr);
        require_disjoint(out, "out", w_scale, "w_scale");
        const float* b = optional_bias(bias, n);
        float* y = out.mutable_data();
        Status st;
        {
          py::gil_scoped_release release;
          st = sparse_linear_q8(w, blocks, w_scale.data(), x.data(), rows, b, y,
                                qa.get());
        }
        raise_status(st, "x");
      },
      py::arg("x").noconvert(), py::arg("rows"), py::arg("row_ptr").noconvert(),
      py::arg("col_idx"), py::arg("values").noconvert(), py::arg("w_scale").noconvert(),
      py::arg("n"), py::arg("k"), py::arg("bias").none(true), py::arg("out").noconvert(),
      py::arg("block_ptr").none(true), py::arg("num_blocks"), py::arg("quads").none(true) = py::none());

  m.def(
      "sparse_q8_accumulate",
      [](const carray<uint8_t>& xq, const carray<int32_t>& zero_point, int64_t rows,
         const carray<int64_t>& row_ptr, const py::array& idx, const carray<int16_t>& values,
         int64_t n, int64_t k, carray<int32_t> out, const py::object& block_ptr,
         int64_t num_blocks, const py::object& quads) {
        const SparseMatrix w = make_matrix(row_ptr, idx, values, n, k);
        const SparseBlocks blocks = make_blocks(block_ptr, num_blocks, n);
        const QuadArgs qa = make_quads(quads, n, k, w);
        require(rows >= 0 && xq.size() == rows * k, "xq must have rows * k elements");
        require(zero_point.size() == rows, "zero_point must have rows elements");
        require(out.size() == rows * n, "out must have rows * n elements");
        require_out_disjoint(out, xq, row_ptr, idx, values, py::none(), "", block_ptr);
        require_disjoint(out, "out", zero_point, "zero_point");
        int32_t* acc = out.mutable_data();
        py::gil_scoped_release release;
        sparse_q8_accumulate(w, blocks, xq.data(), zero_point.data(), rows, acc,
                             qa.get());
      },
      py::arg("xq").noconvert(), py::arg("zero_point").noconvert(), py::arg("rows"),
      py::arg("row_ptr").noconvert(), py::arg("col_idx"), py::arg("values").noconvert(),
      py::arg("n"), py::arg("k"), py::arg("out").noconvert(), py::arg("block_ptr").none(true),
      py::arg("num_blocks"), py::arg("quads").none(true) = py::none());
}

}  // namespace bindings
}  // namespace pyquant
