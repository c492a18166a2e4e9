#include "model_store/import/pickle_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tucker_seg::pickle {
namespace {

using ::testing::HasSubstr;

std::string Bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

// {'a': 1, 'pi': 3.0, 'obj': numpy.scalar(...)} written the way protocol 2 writes it.
TEST(PickleReader, ReadsDictIntFloatAndKeepsUnknownGlobalsOpaque) {
  std::string p = Bytes({0x80, 2, '}', 'q', 0, '('});
  p += "X" + Bytes({1, 0, 0, 0}) + "a" + "K" + Bytes({1});
  p += "X" + Bytes({2, 0, 0, 0}) + "pi" + "G" + Bytes({0x40, 0x08, 0, 0, 0, 0, 0, 0});
  p += "X" + Bytes({3, 0, 0, 0}) + "obj" + "cnumpy.core.multiarray\nscalar\n" + ")" + "R";
  p += "u.";
  auto v = Unpickle(p);
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(v.value()->kind, Value::Kind::kDict);
  ASSERT_TRUE(v.value()->Get("a"));
  EXPECT_EQ(v.value()->Get("a")->integer, 1);
  EXPECT_DOUBLE_EQ(v.value()->Get("pi")->number, 3.0);
  EXPECT_EQ(v.value()->Get("obj")->kind, Value::Kind::kObject);
  EXPECT_EQ(v.value()->Get("obj")->text, "numpy.core.multiarray.scalar");
}

TEST(PickleReader, MemoGetReturnsTheSameObject) {
  std::string p = Bytes({0x80, 2, ']', 'q', 7, 'h', 7, 'a', '.'});  // l = []; l.append(l)
  auto v = Unpickle(p);
  ASSERT_TRUE(v.ok()) << v.status().message();
  ASSERT_EQ(v.value()->items.size(), 1u);
  EXPECT_EQ(v.value()->items[0].get(), v.value().get());
  v.value()->items.clear();  // break the cycle
}

TEST(PickleReader, DeeplyNestedListsAreReadAndFreedWithoutRecursion) {
  constexpr int kDepth = 1000000;  // far deeper than any call stack allows for recursive frees
  std::string p = Bytes({0x80, 2});
  p.append(kDepth, ']');
  p.append(kDepth - 1, 'a');
  p += ".";
  auto v = Unpickle(p);
  ASSERT_TRUE(v.ok()) << v.status().message();
  int depth = 1;
  for (const Value* cur = v.value().get(); !cur->items.empty(); cur = cur->items[0].get()) ++depth;
  EXPECT_EQ(depth, kDepth);
}

TEST(PickleReader, StringLengthPastTheEndIsAnError) {
  std::string p = Bytes({0x80, 2, 'X', 0xff, 0xff, 0xff, 0x7f}) + "abc";
  auto v = Unpickle(p);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(v.status().message(), HasSubstr("runs past the end"));
}

TEST(PickleReader, StackUnderflowIsAnError) {
  auto v = Unpickle(Bytes({0x80, 2, 's', '.'}));
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("stack underflow"));
}

TEST(PickleReader, UnknownMemoEntryIsAnError) {
  auto v = Unpickle(Bytes({0x80, 2, 'h', 3, '.'}));
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("unknown memo entry 3"));
}

TEST(PickleReader, MissingStopIsAnError) {
  auto v = Unpickle(Bytes({0x80, 2, 'N'}));
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("without STOP"));
}

TEST(PickleReader, UnsupportedOpcodeIsNamed) {
  auto v = Unpickle(Bytes({0x80, 2, 'I'}));  // text-protocol INT
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("unsupported opcode 0x49"));
}

}  // namespace
}  // namespace tucker_seg::pickle
