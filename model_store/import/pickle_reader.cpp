#include "model_store/import/pickle_reader.h"

#include <cstdio>
#include <cstring>
#include <unordered_map>

namespace tucker_seg::pickle {

Value::~Value() {
  std::vector<ValuePtr> pending;
  auto take = [&pending](Value& v) {
    for (auto& item : v.items) pending.push_back(std::move(item));
    for (auto& [k, val] : v.entries) {
      pending.push_back(std::move(k));
      pending.push_back(std::move(val));
    }
    v.items.clear();
    v.entries.clear();
  };
  take(*this);
  while (!pending.empty()) {
    ValuePtr v = std::move(pending.back());
    pending.pop_back();
    if (v && v.use_count() == 1) take(*v);  // v's children move here before v is freed
  }
}

ValuePtr Value::Get(std::string_view key) const {
  if (kind != Kind::kDict) return nullptr;
  for (const auto& [k, v] : entries) {
    if (k && k->kind == Kind::kString && k->text == key) return v;
  }
  return nullptr;
}

namespace {

ValuePtr Make(Value::Kind kind) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  return v;
}

class Machine {
 public:
  explicit Machine(std::string_view data) : data_(data) {}

  Result<ValuePtr> Run() {
    while (true) {
      if (pos_ >= data_.size()) return Error("pickle ends without STOP");
      op_pos_ = pos_;
      const auto op = static_cast<uint8_t>(data_[pos_++]);
      if (op == '.') {  // STOP
        if (stack_.size() != 1) return Error("STOP with " + std::to_string(stack_.size()) + " values on the stack");
        return stack_.back();
      }
      Status st = Step(op);
      if (!st.ok()) return st;
    }
  }

 private:
  Status Error(const std::string& what) const {
    return DataLoss("malformed pickle at byte " + std::to_string(op_pos_) + ": " + what);
  }

  bool Need(size_t n) const { return n <= data_.size() - pos_; }

  template <typename T>
  bool ReadLE(T* out) {
    if (!Need(sizeof(T))) return false;
    std::memcpy(out, data_.data() + pos_, sizeof(T));  // x86/ARM hosts are little-endian
    pos_ += sizeof(T);
    return true;
  }

  Status PushText(Value::Kind kind, uint64_t len) {
    if (!Need(len)) return Error("string of " + std::to_string(len) + " bytes runs past the end");
    auto v = Make(kind);
    v->text.assign(data_.data() + pos_, len);
    pos_ += len;
    stack_.push_back(v);
    return Status::Ok();
  }

  Status Pop(ValuePtr* out) {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) return Error("stack underflow");
    *out = stack_.back();
    stack_.pop_back();
    return Status::Ok();
  }

  Status PopToMark(std::vector<ValuePtr>* out) {
    if (marks_.empty()) return Error("no MARK");
    const size_t mark = marks_.back();
    marks_.pop_back();
    out->assign(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return Status::Ok();
  }

  Status PushTuple(std::vector<ValuePtr> items) {
    auto t = Make(Value::Kind::kTuple);
    t->items = std::move(items);
    stack_.push_back(t);
    return Status::Ok();
  }

  Status TopContainer(Value::Kind kind, ValuePtr* out) {
    if (stack_.empty()) return Error("stack underflow");
    *out = stack_.back();
    if ((*out)->kind != kind) return Error("item added to a value that is not a container");
    return Status::Ok();
  }

  Status Memoize(uint64_t index) {
    if (stack_.empty()) return Error("PUT on an empty stack");
    memo_[index] = stack_.back();
    return Status::Ok();
  }

  Status Fetch(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) return Error("GET of unknown memo entry " + std::to_string(index));
    stack_.push_back(it->second);
    return Status::Ok();
  }

  static bool AsInts(const ValuePtr& v, std::vector<int64_t>* out) {
    if (!v || v->kind != Value::Kind::kTuple) return false;
    for (const auto& item : v->items) {
      if (!item || item->kind != Value::Kind::kInt) return false;
      out->push_back(item->integer);
    }
    return true;
  }

  // REDUCE: the only calls we interpret are those that build containers and tensors.
  Status Reduce(const ValuePtr& callable, const ValuePtr& args) {
    const std::string name = callable->kind == Value::Kind::kGlobal ? callable->text : std::string();
    const auto& a = args->items;
    if (name == "collections.OrderedDict") {
      stack_.push_back(Make(Value::Kind::kDict));
      return Status::Ok();
    }
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      if (a.size() < 4 || a[0]->kind != Value::Kind::kStorage || a[1]->kind != Value::Kind::kInt) {
        return Error("unexpected arguments to " + name);
      }
      auto t = Make(Value::Kind::kTensor);
      t->tensor.storage = a[0]->storage;
      t->tensor.offset = a[1]->integer;
      if (!AsInts(a[2], &t->tensor.size) || !AsInts(a[3], &t->tensor.stride) ||
          t->tensor.size.size() != t->tensor.stride.size()) {
        return Error("tensor size/stride are not matching integer tuples");
      }
      stack_.push_back(t);
      return Status::Ok();
    }
    if ((name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") &&
        !a.empty() && a[0]->kind == Value::Kind::kTensor) {
      stack_.push_back(a[0]);
      return Status::Ok();
    }
    auto obj = Make(Value::Kind::kObject);  // numpy scalars, torch.device, ...: kept opaque
    obj->text = name.empty() ? "<call>" : name;
    obj->items = a;
    stack_.push_back(obj);
    return Status::Ok();
  }

  Status PersistentLoad(const ValuePtr& pid) {
    const auto& a = pid->items;
    if (pid->kind != Value::Kind::kTuple || a.size() < 5 || !a[0]->is_string() || a[0]->text != "storage" ||
        a[1]->kind != Value::Kind::kGlobal || !a[2]->is_string() || a[4]->kind != Value::Kind::kInt) {
      return Error("persistent id is not a torch storage reference");
    }
    auto s = Make(Value::Kind::kStorage);
    s->storage.type_name = a[1]->text;
    s->storage.key = a[2]->text;
    s->storage.numel = a[4]->integer;
    stack_.push_back(s);
    return Status::Ok();
  }

  Status ReadLine(std::string* out) {
    const size_t end = data_.find('\n', pos_);
    if (end == std::string_view::npos) return Error("unterminated line");
    out->assign(data_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return Status::Ok();
  }

  Status PushGlobal(std::string module, std::string name) {
    auto g = Make(Value::Kind::kGlobal);
    g->text = std::move(module) + "." + std::move(name);
    stack_.push_back(g);
    return Status::Ok();
  }

  Status Step(uint8_t op) {
    switch (op) {
      case 0x80: {  // PROTO
        uint8_t proto;
        if (!ReadLE(&proto)) return Error("truncated PROTO");
        if (proto < 2 || proto > 5) return Error("unsupported pickle protocol " + std::to_string(proto));
        return Status::Ok();
      }
      case 0x95: {  // FRAME
        uint64_t n;
        return ReadLE(&n) ? Status::Ok() : Error("truncated FRAME");
      }
      case '(': marks_.push_back(stack_.size()); return Status::Ok();  // MARK
      case '0': { ValuePtr v; return Pop(&v); }                         // POP
      case '1': { std::vector<ValuePtr> v; return PopToMark(&v); }       // POP_MARK
      case '2':                                                          // DUP
        if (stack_.empty()) return Error("DUP on an empty stack");
        stack_.push_back(stack_.back());
        return Status::Ok();
      case 'N': stack_.push_back(Make(Value::Kind::kNone)); return Status::Ok();
      case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
        auto v = Make(Value::Kind::kBool);
        v->boolean = op == 0x88;
        stack_.push_back(v);
        return Status::Ok();
      }
      case 'J': { int32_t x; if (!ReadLE(&x)) return Error("truncated BININT"); return PushInt(x); }
      case 'K': { uint8_t x; if (!ReadLE(&x)) return Error("truncated BININT1"); return PushInt(x); }
      case 'M': { uint16_t x; if (!ReadLE(&x)) return Error("truncated BININT2"); return PushInt(x); }
      case 0x8a: case 0x8b: {  // LONG1, LONG4
        uint32_t n = 0;
        if (op == 0x8a) { uint8_t n8; if (!ReadLE(&n8)) return Error("truncated LONG1"); n = n8; }
        else if (!ReadLE(&n)) return Error("truncated LONG4");
        if (n > 8 || !Need(n)) return Error("integer of " + std::to_string(n) + " bytes is not supported");
        uint64_t x = 0;
        for (uint32_t i = 0; i < n; ++i) x |= static_cast<uint64_t>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
        if (n > 0 && n < 8 && (static_cast<uint8_t>(data_[pos_ + n - 1]) & 0x80)) x |= ~uint64_t{0} << (8 * n);
        pos_ += n;
        return PushInt(static_cast<int64_t>(x));
      }
      case 'G': {  // BINFLOAT, big-endian
        if (!Need(8)) return Error("truncated BINFLOAT");
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<uint8_t>(data_[pos_ + i]);
        pos_ += 8;
        auto v = Make(Value::Kind::kFloat);
        std::memcpy(&v->number, &bits, 8);
        stack_.push_back(v);
        return Status::Ok();
      }
      case 'X': { uint32_t n; if (!ReadLE(&n)) return Error("truncated BINUNICODE"); return PushText(Value::Kind::kString, n); }
      case 0x8c: { uint8_t n; if (!ReadLE(&n)) return Error("truncated SHORT_BINUNICODE"); return PushText(Value::Kind::kString, n); }
      case 0x8d: { uint64_t n; if (!ReadLE(&n)) return Error("truncated BINUNICODE8"); return PushText(Value::Kind::kString, n); }
      case 'T': { uint32_t n; if (!ReadLE(&n)) return Error("truncated BINSTRING"); return PushText(Value::Kind::kBytes, n); }
      case 'U': { uint8_t n; if (!ReadLE(&n)) return Error("truncated SHORT_BINSTRING"); return PushText(Value::Kind::kBytes, n); }
      case 'B': { uint32_t n; if (!ReadLE(&n)) return Error("truncated BINBYTES"); return PushText(Value::Kind::kBytes, n); }
      case 'C': { uint8_t n; if (!ReadLE(&n)) return Error("truncated SHORT_BINBYTES"); return PushText(Value::Kind::kBytes, n); }
      case 0x8e: { uint64_t n; if (!ReadLE(&n)) return Error("truncated BINBYTES8"); return PushText(Value::Kind::kBytes, n); }
      case ')': return PushTuple({});
      case 't': { std::vector<ValuePtr> items; TS_RETURN_IF_ERROR(PopToMark(&items)); return PushTuple(std::move(items)); }
      case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
        const size_t n = static_cast<size_t>(op - 0x84);
        if (stack_.size() < n || (!marks_.empty() && stack_.size() - n < marks_.back())) return Error("stack underflow in TUPLE");
        std::vector<ValuePtr> items(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
        stack_.resize(stack_.size() - n);
        return PushTuple(std::move(items));
      }
      case ']': stack_.push_back(Make(Value::Kind::kList)); return Status::Ok();
      case 'l': {  // LIST
        std::vector<ValuePtr> items;
        TS_RETURN_IF_ERROR(PopToMark(&items));
        auto l = Make(Value::Kind::kList);
        l->items = std::move(items);
        stack_.push_back(l);
        return Status::Ok();
      }
      case 'a': {  // APPEND
        ValuePtr item, list;
        TS_RETURN_IF_ERROR(Pop(&item));
        TS_RETURN_IF_ERROR(TopContainer(Value::Kind::kList, &list));
        list->items.push_back(item);
        return Status::Ok();
      }
      case 'e': {  // APPENDS
        std::vector<ValuePtr> items;
        ValuePtr list;
        TS_RETURN_IF_ERROR(PopToMark(&items));
        TS_RETURN_IF_ERROR(TopContainer(Value::Kind::kList, &list));
        list->items.insert(list->items.end(), items.begin(), items.end());
        return Status::Ok();
      }
      case '}': stack_.push_back(Make(Value::Kind::kDict)); return Status::Ok();
      case 'd': {  // DICT
        std::vector<ValuePtr> items;
        TS_RETURN_IF_ERROR(PopToMark(&items));
        stack_.push_back(Make(Value::Kind::kDict));
        return AddEntries(stack_.back(), items);
      }
      case 's': {  // SETITEM
        ValuePtr key, value, dict;
        TS_RETURN_IF_ERROR(Pop(&value));
        TS_RETURN_IF_ERROR(Pop(&key));
        TS_RETURN_IF_ERROR(TopContainer(Value::Kind::kDict, &dict));
        dict->entries.emplace_back(key, value);
        return Status::Ok();
      }
      case 'u': {  // SETITEMS
        std::vector<ValuePtr> items;
        ValuePtr dict;
        TS_RETURN_IF_ERROR(PopToMark(&items));
        TS_RETURN_IF_ERROR(TopContainer(Value::Kind::kDict, &dict));
        return AddEntries(dict, items);
      }
      case 0x8f: stack_.push_back(Make(Value::Kind::kSet)); return Status::Ok();  // EMPTY_SET
      case 0x90: {  // ADDITEMS
        std::vector<ValuePtr> items;
        ValuePtr set;
        TS_RETURN_IF_ERROR(PopToMark(&items));
        TS_RETURN_IF_ERROR(TopContainer(Value::Kind::kSet, &set));
        set->items.insert(set->items.end(), items.begin(), items.end());
        return Status::Ok();
      }
      case 0x91: {  // FROZENSET
        std::vector<ValuePtr> items;
        TS_RETURN_IF_ERROR(PopToMark(&items));
        auto s = Make(Value::Kind::kSet);
        s->items = std::move(items);
        stack_.push_back(s);
        return Status::Ok();
      }
      case 'c': {  // GLOBAL
        std::string module, name;
        TS_RETURN_IF_ERROR(ReadLine(&module));
        TS_RETURN_IF_ERROR(ReadLine(&name));
        return PushGlobal(std::move(module), std::move(name));
      }
      case 0x93: {  // STACK_GLOBAL
        ValuePtr name, module;
        TS_RETURN_IF_ERROR(Pop(&name));
        TS_RETURN_IF_ERROR(Pop(&module));
        if (!name->is_string() || !module->is_string()) return Error("STACK_GLOBAL needs two strings");
        return PushGlobal(module->text, name->text);
      }
      case 'R': {  // REDUCE
        ValuePtr args, callable;
        TS_RETURN_IF_ERROR(Pop(&args));
        TS_RETURN_IF_ERROR(Pop(&callable));
        if (args->kind != Value::Kind::kTuple) return Error("REDUCE arguments are not a tuple");
        return Reduce(callable, args);
      }
      case 0x81: case 0x92: {  // NEWOBJ, NEWOBJ_EX
        ValuePtr args, kwargs, cls;
        if (op == 0x92) TS_RETURN_IF_ERROR(Pop(&kwargs));
        TS_RETURN_IF_ERROR(Pop(&args));
        TS_RETURN_IF_ERROR(Pop(&cls));
        auto obj = Make(Value::Kind::kObject);
        obj->text = cls->kind == Value::Kind::kGlobal ? cls->text : "<object>";
        stack_.push_back(obj);
        return Status::Ok();
      }
      case 'b': {  // BUILD: object state is not needed, drop it
        ValuePtr state;
        TS_RETURN_IF_ERROR(Pop(&state));
        if (stack_.empty()) return Error("BUILD on an empty stack");
        return Status::Ok();
      }
      case 'Q': {  // BINPERSID
        ValuePtr pid;
        TS_RETURN_IF_ERROR(Pop(&pid));
        return PersistentLoad(pid);
      }
      case 'q': { uint8_t i; if (!ReadLE(&i)) return Error("truncated BINPUT"); return Memoize(i); }
      case 'r': { uint32_t i; if (!ReadLE(&i)) return Error("truncated LONG_BINPUT"); return Memoize(i); }
      case 0x94: return Memoize(memo_.size());  // MEMOIZE
      case 'h': { uint8_t i; if (!ReadLE(&i)) return Error("truncated BINGET"); return Fetch(i); }
      case 'j': { uint32_t i; if (!ReadLE(&i)) return Error("truncated LONG_BINGET"); return Fetch(i); }
      default: {
        char hex[8];
        std::snprintf(hex, sizeof(hex), "0x%02x", op);
        return Error(std::string("unsupported opcode ") + hex);
      }
    }
  }

  Status PushInt(int64_t x) {
    auto v = Make(Value::Kind::kInt);
    v->integer = x;
    stack_.push_back(v);
    return Status::Ok();
  }

  Status AddEntries(const ValuePtr& dict, const std::vector<ValuePtr>& items) {
    if (items.size() % 2 != 0) return Error("odd number of items for a dict");
    for (size_t i = 0; i < items.size(); i += 2) dict->entries.emplace_back(items[i], items[i + 1]);
    return Status::Ok();
  }

  std::string_view data_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
};

}  // namespace

Result<ValuePtr> Unpickle(std::string_view data) { return Machine(data).Run(); }

}  // namespace tucker_seg::pickle
