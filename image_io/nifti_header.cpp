#include "image_io/nifti_header.h"

#include <libdeflate.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "vocabulary/atomic_file.h"

namespace tucker_seg {
namespace {

// NIfTI-1 header offsets (nifti1.h).
constexpr size_t kHeaderBytes = 348;
constexpr size_t kVoxOffset = 108;
constexpr size_t kDescrip = 148;
constexpr size_t kDescripBytes = 80;
constexpr size_t kQformCode = 252;
constexpr size_t kSformCode = 254;
constexpr size_t kMagic = 344;
constexpr int64_t kMaxFileBytes = int64_t{8} << 30;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The whole file, decompressed when gzipped (gzread passes plain files through).
Result<std::string> ReadAll(const std::string& path) {
  gzFile in = gzopen(path.c_str(), "rb");
  if (!in) return NotFound("cannot open '" + path + "'");
  std::string data;
  std::vector<char> buffer(1 << 20);
  int n = 0;
  while ((n = gzread(in, buffer.data(), static_cast<unsigned>(buffer.size()))) > 0) {
    data.append(buffer.data(), static_cast<size_t>(n));
    if (static_cast<int64_t>(data.size()) > kMaxFileBytes) {
      gzclose(in);
      return InvalidArgument("'" + path + "' decompresses to more than 8 GiB");
    }
  }
  const bool failed = n < 0;
  gzclose(in);
  if (failed) return DataLoss("cannot decompress '" + path + "'");
  return data;
}

bool IsNifti1(const std::string& header) {
  if (header.size() < kHeaderBytes) return false;
  int32_t size = 0;
  std::memcpy(&size, header.data(), 4);
  return size == 348 &&
         (std::memcmp(header.data() + kMagic, "n+1", 4) == 0 || std::memcmp(header.data() + kMagic, "ni1", 4) == 0);
}

// gzip bytes of `data` at zlib's default level 6, with libdeflate (2-3x zlib's speed for the
// same format: docs/performance.md). Pieces of kGzipPiece bytes are compressed on all cores, each
// a gzip member of its own; gzip readers (zlib's gzread, ITK, Python's gzip, nibabel) read
// concatenated members as one stream (RFC 1952, 2.2).
constexpr size_t kGzipPiece = size_t{16} << 20;

Result<std::string> Gzip(const std::string& data) {
  const size_t pieces = std::max<size_t>(1, (data.size() + kGzipPiece - 1) / kGzipPiece);
  std::vector<std::string> members(pieces);
  std::vector<Status> statuses(pieces);
  std::atomic<size_t> next{0};
  const auto work = [&] {
    std::unique_ptr<libdeflate_compressor, decltype(&libdeflate_free_compressor)> compressor(libdeflate_alloc_compressor(6),
                                                                                              &libdeflate_free_compressor);
    for (size_t i = next++; i < pieces; i = next++) {
      if (!compressor) {
        statuses[i] = Internal("libdeflate: no compressor");
        continue;
      }
      const size_t begin = i * kGzipPiece, size = std::min(kGzipPiece, data.size() - begin);  // begin < size, or both 0
      std::string& out = members[i];
      out.resize(libdeflate_gzip_compress_bound(compressor.get(), size));
      const size_t written = libdeflate_gzip_compress(compressor.get(), data.data() + begin, size, out.data(), out.size());
      if (written == 0) statuses[i] = Internal("libdeflate: the compressed data did not fit its bound");
      out.resize(written);
    }
  };
  const size_t threads = std::min<size_t>(pieces, std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> helpers;
  for (size_t t = 1; t < threads; ++t) helpers.emplace_back(work);
  work();
  for (auto& h : helpers) h.join();
  std::string out;
  for (size_t i = 0; i < pieces; ++i) {
    TS_RETURN_IF_ERROR(statuses[i]);
    out += members[i];
  }
  return out;
}

}  // namespace

bool IsNiftiPath(const std::string& path) { return EndsWith(path, ".nii") || EndsWith(path, ".nii.gz"); }

std::optional<NiftiXformCodes> ReadNiftiXformCodes(const std::string& path) {
  if (!IsNiftiPath(path)) return std::nullopt;
  gzFile in = gzopen(path.c_str(), "rb");
  if (!in) return std::nullopt;
  std::string header(kHeaderBytes, '\0');
  const int n = gzread(in, header.data(), static_cast<unsigned>(kHeaderBytes));
  gzclose(in);
  if (n != static_cast<int>(kHeaderBytes) || !IsNifti1(header)) return std::nullopt;
  NiftiXformCodes codes;
  std::memcpy(&codes.qform_code, header.data() + kQformCode, 2);
  std::memcpy(&codes.sform_code, header.data() + kSformCode, 2);
  return codes;
}

Status RewriteNifti(const std::string& from, const std::string& path, const NiftiHeaderEdits& edits) {
  TS_ASSIGN_OR_RETURN(std::string data, ReadAll(from));
  if (!IsNifti1(data)) return InvalidArgument("'" + from + "' is not a NIfTI-1 file");
  float vox_offset = 0;
  std::memcpy(&vox_offset, data.data() + kVoxOffset, 4);
  const auto voxels_at = static_cast<size_t>(vox_offset);
  if (vox_offset < 352 || voxels_at > data.size()) return DataLoss("'" + from + "': vox_offset outside the file");

  if (edits.codes) {
    std::memcpy(data.data() + kQformCode, &edits.codes->qform_code, 2);
    std::memcpy(data.data() + kSformCode, &edits.codes->sform_code, 2);
  }
  std::memset(data.data() + kDescrip, 0, kDescripBytes);
  std::memcpy(data.data() + kDescrip, edits.description.data(), std::min(edits.description.size(), kDescripBytes - 1));

  // Header, the 4-byte extender, our extension (replacing any the writer left), the voxels.
  std::string out = data.substr(0, kHeaderBytes);
  char extender[4] = {0, 0, 0, 0};
  std::string extension;
  if (!edits.extension.empty()) {
    extender[0] = 1;
    const size_t padded = (8 + edits.extension.size() + 15) / 16 * 16;
    const int32_t esize = static_cast<int32_t>(padded), ecode = 0;
    extension.append(reinterpret_cast<const char*>(&esize), 4);
    extension.append(reinterpret_cast<const char*>(&ecode), 4);
    extension += edits.extension;
    extension.resize(padded, '\0');
  }
  out.append(extender, 4);
  out += extension;
  const float new_offset = static_cast<float>(kHeaderBytes + 4 + extension.size());
  std::memcpy(out.data() + kVoxOffset, &new_offset, 4);
  out.append(data, voxels_at, std::string::npos);
  if (!EndsWith(path, ".gz")) return WriteFileAtomically(path, out);
  TS_ASSIGN_OR_RETURN(const std::string compressed, Gzip(out));
  return WriteFileAtomically(path, compressed);
}

}  // namespace tucker_seg
