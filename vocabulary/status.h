// Status and Result: how every library reports failure across its boundary. Codes carry gRPC's
// numeric values so the server converts them one to one (server/grpc_status.h); the rules for
// which code to use are abseil's: INVALID_ARGUMENT for a bad input whatever the state,
// FAILED_PRECONDITION when the state must be fixed first, UNAVAILABLE when retrying the same call
// may succeed, INTERNAL for broken invariants. Messages name the field and the limit, never a
// command-line flag (the tools add those).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace tucker_seg {

enum class StatusCode : int {
  kOk = 0,
  kCancelled = 1,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return {}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
inline Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status Unauthenticated(std::string m) { return {StatusCode::kUnauthenticated, std::move(m)}; }

// Prefixes a status's message with where it happened ("<context>: <message>"), keeping its code.
inline Status Annotate(const Status& status, const std::string& context) {
  return status.ok() ? status : Status(status.code(), context + ": " + status.message());
}

// A value or the reason there is none. Checked: reading the value of an error aborts with the
// error's message instead of reading an empty optional.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    if (status_.ok()) status_ = Status(StatusCode::kInternal, "Result built from an OK status without a value");
  }
  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return Checked(), *value_; }
  const T& value() const& { return Checked(), *value_; }
  T&& value() && { return Checked(), std::move(*value_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void Checked() const {
    if (value_) return;
    std::fprintf(stderr, "fatal: value() of a failed Result: %s\n", status_.message().c_str());
    std::abort();
  }
  std::optional<T> value_;
  Status status_;
};

}  // namespace tucker_seg

namespace tucker_seg {

// Runs `f` (returning Status or Result<T>) and turns an escaping exception (LibTorch's c10::Error,
// std::bad_alloc, ...) into INTERNAL "<context>: <first line of what()>". Each library calls it
// once at its API, so that no exception crosses a library boundary.
template <typename F>
auto StatusFromExceptions(const std::string& context, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    const std::string what = e.what();
    return Status(StatusCode::kInternal, context + ": " + what.substr(0, what.find('\n')));
  }
}

}  // namespace tucker_seg

#define TS_RETURN_IF_ERROR(expr)          \
  do {                                    \
    ::tucker_seg::Status _st = (expr);    \
    if (!_st.ok()) return _st;            \
  } while (0)

#define TS_STATUS_CONCAT_INNER(a, b) a##b
#define TS_STATUS_CONCAT(a, b) TS_STATUS_CONCAT_INNER(a, b)
// TS_ASSIGN_OR_RETURN(auto x, ComputeResult()); declares x from the value or returns the status.
#define TS_ASSIGN_OR_RETURN(lhs, expr) TS_ASSIGN_OR_RETURN_IMPL(TS_STATUS_CONCAT(_result_, __LINE__), lhs, expr)
#define TS_ASSIGN_OR_RETURN_IMPL(result, lhs, expr) \
  auto result = (expr);                            \
  if (!result.ok()) return result.status();        \
  lhs = std::move(result).value()
