// GGUF: writer -> reader round trips, a file from the reference converter (to_gguf.py), and hostile
// inputs, each of which must be an error that starts with the file name, never a crash.
#include <cmath>

#include "absl/strings/match.h"
#include "engine/formats/gguf.h"
#include "engine/formats/safetensors.h"
#include "test_util.h"

namespace dg {
namespace {

using test::fixture;
using test::read_bytes;
using test::temp_dir;

// Builds GGUF bytes field by field, so tests can write exactly the malformation they want.
struct Bytes {
    std::vector<uint8_t> b;
    template <typename T>
    Bytes& put(T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        b.insert(b.end(), p, p + sizeof(T));
        return *this;
    }
    Bytes& u32(uint32_t v) { return put(v); }
    Bytes& u64(uint64_t v) { return put(v); }
    Bytes& str(const std::string& s) {
        u64(s.size());
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
    Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
        b.insert(b.end(), {'G', 'G', 'U', 'F'});
        return u32(version).u64(n_tensors).u64(n_kv);
    }
    Bytes& kv_u32(const std::string& k, uint32_t v) { return str(k).u32(4).u32(v); }
    Bytes& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
        str(name).u32(static_cast<uint32_t>(ne.size()));
        for (uint64_t d : ne) u64(d);
        return u32(type).u64(offset);
    }
    Bytes& pad(size_t align = 32) {
        while (b.size() % align) b.push_back(0);
        return *this;
    }
    Bytes& zeros(size_t n) {
        b.insert(b.end(), n, 0);
        return *this;
    }
};

absl::StatusOr<std::unique_ptr<GgufFile>> parse_bytes(const std::vector<uint8_t>& b, uint64_t size,
                                                      const std::string& name = "bad.gguf") {
    return GgufFile::parse(MappedFile::borrow(b.data(), size, name));
}

// Expects a parse error whose message starts with the file name and contains `needle`.
void expect_error(const std::vector<uint8_t>& b, const std::string& needle) {
    auto r = parse_bytes(b, b.size());
    ASSERT_FALSE(r.ok()) << "expected an error containing '" << needle << "'";
    const std::string msg(r.status().message());
    EXPECT_TRUE(absl::StartsWith(msg, "bad.gguf: ")) << msg;
    EXPECT_TRUE(absl::StrContains(msg, needle)) << msg;
}

// A valid file with one f32 tensor of 8 elements: the base most malformations start from.
Bytes one_tensor(uint32_t type = 0, std::vector<uint64_t> ne = {8}, uint64_t offset = 0) {
    Bytes b;
    b.header(1, 1).kv_u32("general.foo", 7).tensor("w", std::move(ne), type, offset).pad().zeros(64);
    return b;
}

std::vector<uint8_t> pattern(uint64_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (uint64_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 31);
    return v;
}

GgufWriter::Producer fill(uint8_t seed) {
    return [seed](uint8_t* dst, uint64_t n) {
        const auto p = pattern(n, seed);
        if (n > 0) std::memcpy(dst, p.data(), n);
    };
}

TEST(GgufWriter, RoundTripsMetadataAndTensors) {
    const std::string path = temp_dir() + "/rt.gguf";
    GgufWriter w;
    w.set_string("general.architecture", "qwen35");
    w.set_u32("qwen35.block_count", 4);
    w.set_i32("some.negative", -5);
    w.set_u64("some.big", 1ull << 40);
    w.set_f32("qwen35.rope.freq_base", 1e7f);
    w.set_bool("tokenizer.ggml.add_bos_token", true);
    w.set_string_array("tokenizer.ggml.tokens", {"a", "", "héllo"});
    w.set_i32_array("qwen35.rope.dimension_sections", {11, 11, 10, 0});
    w.set_f32_array("floats", {0.5f, -2.0f});
    w.set_u32("qwen35.block_count", 8);  // replaces the earlier value
    ASSERT_TRUE(w.add_tensor("f32.weight", {5, 3}, DType::F32, fill(1)).ok());
    ASSERT_TRUE(w.add_tensor("q8.weight", {64, 2}, DType::Q8_0, fill(2)).ok());
    ASSERT_TRUE(w.add_tensor("q4k.weight", {256, 2, 3}, DType::Q4_K, fill(3)).ok());
    ASSERT_TRUE(w.add_tensor("f16.empty", {0, 4}, DType::F16, fill(4)).ok());
    ASSERT_TRUE(w.add_tensor("bf16.vec", {7}, DType::BF16, fill(5)).ok());
    EXPECT_FALSE(w.add_tensor("q8.weight", {32}, DType::Q8_0, fill(0)).ok());       // duplicate
    EXPECT_FALSE(w.add_tensor("odd", {33}, DType::Q8_0, fill(0)).ok());             // not whole blocks
    EXPECT_FALSE(w.add_tensor("dims", {1, 1, 1, 1, 1}, DType::F32, fill(0)).ok());  // 5 dims
    EXPECT_FALSE(w.add_tensor("neg", {-1}, DType::F32, fill(0)).ok());
    ASSERT_TRUE(w.write(path).ok());

    auto r = GgufFile::open(path);
    ASSERT_TRUE(r.ok()) << r.status();
    const GgufFile& f = **r;
    EXPECT_EQ(f.path(), path);
    EXPECT_EQ(*f.get_string("general.architecture"), "qwen35");
    EXPECT_EQ(*f.get_uint("qwen35.block_count"), 8u);
    EXPECT_EQ(*f.get_int("qwen35.block_count"), 8);
    EXPECT_EQ(*f.get_int("some.negative"), -5);
    EXPECT_EQ(*f.get_uint("some.big"), 1ull << 40);
    EXPECT_EQ(*f.get_float("qwen35.rope.freq_base"), 1e7);
    EXPECT_EQ(*f.get_float("qwen35.block_count"), 8.0);
    EXPECT_TRUE(*f.get_bool("tokenizer.ggml.add_bos_token"));
    EXPECT_EQ(*f.get_string_array("tokenizer.ggml.tokens"), (std::vector<std::string>{"a", "", "héllo"}));
    EXPECT_EQ(*f.get_int_array("qwen35.rope.dimension_sections"), (std::vector<int64_t>{11, 11, 10, 0}));
    EXPECT_EQ(*f.get_float_array("floats"), (std::vector<double>{0.5, -2.0}));
    EXPECT_EQ(*f.get_float_array("qwen35.rope.dimension_sections"), (std::vector<double>{11, 11, 10, 0}));
    EXPECT_EQ(f.metadata().size(), 9u);
    EXPECT_EQ(f.find("qwen35.block_count")->type, GgufType::U32);

    ASSERT_EQ(f.tensors().size(), 5u);
    struct Want { const char* name; std::vector<int64_t> ne; DType type; uint64_t nbytes; uint8_t seed; };
    const Want want[] = {{"f32.weight", {5, 3}, DType::F32, 60, 1},
                         {"q8.weight", {64, 2}, DType::Q8_0, 136, 2},
                         {"q4k.weight", {256, 2, 3}, DType::Q4_K, 864, 3},
                         {"f16.empty", {0, 4}, DType::F16, 0, 4},
                         {"bf16.vec", {7}, DType::BF16, 14, 5}};
    for (size_t i = 0; i < 5; ++i) {
        const GgufTensor& t = f.tensors()[i];
        EXPECT_EQ(t.name, want[i].name);
        EXPECT_EQ(f.find_tensor(want[i].name), &t);
        EXPECT_EQ(t.ne, want[i].ne);
        EXPECT_EQ(t.type, want[i].type);
        EXPECT_EQ(t.nbytes, want[i].nbytes);
        EXPECT_EQ(t.offset % 32, 0u);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 32, 0u);  // mmap is page aligned
        EXPECT_EQ(std::vector<uint8_t>(t.data, t.data + t.nbytes), pattern(t.nbytes, want[i].seed)) << t.name;
    }
    EXPECT_EQ(f.tensors()[2].n_elements(), 1536);
    EXPECT_EQ(f.find_tensor("nope"), nullptr);
    EXPECT_EQ(f.find("nope"), nullptr);
}

TEST(GgufWriter, CustomAlignmentAndNoTensors) {
    const std::string dir = temp_dir();
    GgufWriter w;
    w.set_u32("general.alignment", 64);
    ASSERT_TRUE(w.add_tensor("a", {3}, DType::F32, fill(1)).ok());
    ASSERT_TRUE(w.add_tensor("b", {5}, DType::F32, fill(2)).ok());
    ASSERT_TRUE(w.write(dir + "/a64.gguf").ok());
    auto r = GgufFile::open(dir + "/a64.gguf");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)->tensors()[1].offset, 64u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>((*r)->tensors()[1].data) % 64, 0u);
    EXPECT_EQ(std::filesystem::file_size(dir + "/a64.gguf") % 64, 0u);

    GgufWriter bad;
    bad.set_u32("general.alignment", 12);
    EXPECT_FALSE(bad.write(dir + "/bad.gguf").ok());
    EXPECT_FALSE(std::filesystem::exists(dir + "/bad.gguf"));

    GgufWriter empty;
    ASSERT_TRUE(empty.write(dir + "/empty.gguf").ok());
    auto e = GgufFile::open(dir + "/empty.gguf");
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_TRUE((*e)->tensors().empty());
    EXPECT_TRUE((*e)->metadata().empty());

    auto unwritable = GgufWriter().write(dir + "/no/such/dir/x.gguf");
    ASSERT_FALSE(unwritable.ok());
    EXPECT_TRUE(absl::StrContains(unwritable.message(), "no/such/dir/x.gguf")) << unwritable;
}

TEST(GgufReader, TypedGetterErrorsNameFileAndKey) {
    Bytes b;
    b.header(0, 4).str("s").u32(8).str("text").str("neg").u32(5).u32(static_cast<uint32_t>(-3));
    b.str("big").u32(10).u64(~0ull).str("arr").u32(9).u32(8).u64(1).str("x");
    auto r = parse_bytes(b.b, b.b.size(), "meta.gguf");
    ASSERT_TRUE(r.ok()) << r.status();
    const GgufFile& f = **r;
    auto missing = f.get_uint("absent.key");
    EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
    EXPECT_TRUE(absl::StrContains(missing.status().message(), "meta.gguf: key 'absent.key'"));
    auto wrong = f.get_uint("s");
    EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StartsWith(wrong.status().message(), "meta.gguf: key 's'")) << wrong.status();
    EXPECT_FALSE(f.get_uint("neg").ok());
    EXPECT_EQ(*f.get_int("neg"), -3);
    EXPECT_FALSE(f.get_int("big").ok());  // does not fit int64
    EXPECT_EQ(*f.get_uint("big"), ~0ull);
    EXPECT_FALSE(f.get_bool("s").ok());
    EXPECT_FALSE(f.get_string("neg").ok());
    EXPECT_FALSE(f.get_float("s").ok());
    EXPECT_FALSE(f.get_string_array("s").ok());
    EXPECT_FALSE(f.get_int_array("arr").ok());
    EXPECT_FALSE(f.get_float_array("arr").ok());
    EXPECT_EQ(*f.get_string_array("arr"), std::vector<std::string>{"x"});
}

TEST(GgufReader, NestedArraysAndEveryScalarType) {
    Bytes b;
    b.header(0, 3);
    // [[1, 2], [3]] of i32
    b.str("nested").u32(9).u32(9).u64(2);
    b.u32(5).u64(2).u32(1).u32(2);
    b.u32(5).u64(1).u32(3);
    // one of each scalar type in an array would be ill-typed; use separate arrays instead
    b.str("u16s").u32(9).u32(2).u64(2).put<uint16_t>(1).put<uint16_t>(65535);
    b.str("f64s").u32(9).u32(12).u64(1).put<double>(0.25);
    auto r = parse_bytes(b.b, b.b.size());
    ASSERT_TRUE(r.ok()) << r.status();
    const GgufValue* v = (*r)->find("nested");
    ASSERT_NE(v, nullptr);
    const auto& outer = std::get<std::shared_ptr<GgufArray>>(v->v);
    ASSERT_EQ(outer->elem_type, GgufType::ARRAY);
    ASSERT_EQ(outer->items.size(), 2u);
    const auto& first = std::get<std::shared_ptr<GgufArray>>(outer->items[0].v);
    EXPECT_EQ(first->elem_type, GgufType::I32);
    EXPECT_EQ(std::get<int64_t>(first->items[1].v), 2);
    EXPECT_EQ(*(*r)->get_int_array("u16s"), (std::vector<int64_t>{1, 65535}));
    EXPECT_EQ(*(*r)->get_float_array("f64s"), std::vector<double>{0.25});
    EXPECT_FALSE((*r)->get_int_array("nested").ok());
}

TEST(GgufReader, AcceptsVersion2) {
    Bytes b = one_tensor();
    b.b[4] = 2;
    EXPECT_TRUE(parse_bytes(b.b, b.b.size()).ok());
}

// tiny.gguf was written by the reference converter (to_gguf.py --f16) from tiny_st/.
TEST(GgufReader, ReadsReferenceConverterOutput) {
    auto r = GgufFile::open(fixture("tiny.gguf"));
    ASSERT_TRUE(r.ok()) << r.status();
    const GgufFile& f = **r;
    EXPECT_EQ(*f.get_string("general.architecture"), "qwen35");
    EXPECT_EQ(*f.get_string("general.name"), "tiny");
    EXPECT_EQ(*f.get_uint("general.alignment"), 32u);
    EXPECT_EQ(*f.get_uint("qwen35.block_count"), 4u);
    EXPECT_EQ(*f.get_uint("qwen35.embedding_length"), 32u);
    EXPECT_EQ(*f.get_uint("qwen35.ssm.group_count"), 1u);
    EXPECT_EQ(*f.get_uint("qwen35.ssm.time_step_rank"), 2u);
    EXPECT_NEAR(*f.get_float("qwen35.attention.layer_norm_rms_epsilon"), 1e-6, 1e-12);
    EXPECT_EQ(f.get_int_array("qwen35.rope.dimension_sections")->size(), 4u);
    EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens")->size(), 64u);
    EXPECT_TRUE(f.get_string_array("tokenizer.ggml.merges")->empty());
    EXPECT_FALSE(*f.get_bool("tokenizer.ggml.add_bos_token"));
    EXPECT_EQ(f.tensors().size(), 56u);

    const GgufTensor* emb = f.find_tensor("token_embd.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->ne, (std::vector<int64_t>{32, 64}));
    EXPECT_EQ(emb->type, DType::F16);
    const GgufTensor* norm = f.find_tensor("output_norm.weight");
    ASSERT_NE(norm, nullptr);
    EXPECT_EQ(norm->type, DType::F32);
    const GgufTensor* conv = f.find_tensor("blk.0.ssm_conv1d.weight");
    ASSERT_NE(conv, nullptr);
    EXPECT_EQ(conv->ne, (std::vector<int64_t>{4, 64}));  // {K, conv_dim}, kept f32
    EXPECT_EQ(conv->type, DType::F32);

    // Cross-format: the converter stored the bf16 source weights as f16 (exact for these magnitudes),
    // and the norm as f32 with +1 added.
    auto st = SafetensorsDir::open(fixture("tiny_st"));
    ASSERT_TRUE(st.ok()) << st.status();
    const StTensor* src = (*st)->find("model.embed_tokens.weight");
    ASSERT_NE(src, nullptr);
    ASSERT_EQ(src->shape, (std::vector<int64_t>{64, 32}));
    std::vector<float> a(64 * 32), b(64 * 32);
    dequantize_row(DType::F16, emb->data, a.data(), 64 * 32);
    dequantize_row(DType::BF16, src->data, b.data(), 64 * 32);
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-3f * std::fabs(b[i]) + 1e-6f) << i;
    const StTensor* src_norm = (*st)->find("model.norm.weight");
    std::vector<float> n1(32), n2(32);
    dequantize_row(DType::F32, norm->data, n1.data(), 32);
    dequantize_row(DType::BF16, src_norm->data, n2.data(), 32);
    for (int i = 0; i < 32; ++i) EXPECT_NEAR(n1[i], n2[i] + 1.0f, 1e-6f);
}

// quant_mix.gguf was written byte by byte by make_fixtures.py: alignment 64, nested array, and one
// tensor per quant type whose decoded values NumPy computed independently.
TEST(GgufReader, ReadsPythonWrittenQuantFile) {
    auto r = GgufFile::open(fixture("quant_mix.gguf"));
    ASSERT_TRUE(r.ok()) << r.status();
    const GgufFile& f = **r;
    EXPECT_EQ(*f.get_uint("general.alignment"), 64u);
    EXPECT_TRUE(*f.get_bool("test.flag"));
    EXPECT_EQ(*f.get_float("test.f64"), 0.125);
    const auto& nested = std::get<std::shared_ptr<GgufArray>>(f.find("test.nested")->v);
    ASSERT_EQ(nested->items.size(), 2u);
    EXPECT_EQ(std::get<int64_t>(std::get<std::shared_ptr<GgufArray>>(nested->items[0].v)->items[0].v), -1);
    ASSERT_EQ(f.tensors().size(), 6u);
    for (const GgufTensor& t : f.tensors()) {
        const DTypeInfo& info = dtype_info(t.type);
        EXPECT_EQ(t.name, std::string(info.name) + ".weight");
        EXPECT_EQ(t.offset % 64, 0u);
        ASSERT_EQ(t.ne.size(), 2u);
        EXPECT_EQ(t.ne[1], 2);
        const auto want = test::read_array<float>(fixture(std::string("quant_") + info.name + ".f32"));
        ASSERT_EQ(static_cast<size_t>(t.n_elements()), want.size());
        const uint64_t rb = *row_bytes(t.type, t.ne[0]);
        EXPECT_EQ(t.nbytes, 2 * rb);
        std::vector<float> got(want.size());
        for (int row = 0; row < 2; ++row) {
            dequantize_row(t.type, t.data + row * rb, got.data() + row * t.ne[0], t.ne[0]);
        }
        for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_NEAR(got[i], want[i], 1e-6f * std::fabs(want[i]) + 1e-30f) << t.name << " " << i;
        }
    }
}

// Every proper prefix that cuts into the header or any tensor's bytes must fail with the file name;
// prefixes that only drop the trailing padding still hold every tensor and parse.
TEST(GgufReader, EveryTruncationIsAnError) {
    const std::string path = temp_dir() + "/small.gguf";
    GgufWriter w;
    w.set_string("general.architecture", "qwen35");
    w.set_string_array("tok", {"x", "yy"});
    w.set_i32_array("ints", {1, 2, 3});
    ASSERT_TRUE(w.add_tensor("a", {8}, DType::F32, fill(1)).ok());
    ASSERT_TRUE(w.add_tensor("b", {32, 2}, DType::Q8_0, fill(2)).ok());
    ASSERT_TRUE(w.write(path).ok());
    const auto bytes = read_bytes(path);
    auto full = parse_bytes(bytes, bytes.size());
    ASSERT_TRUE(full.ok()) << full.status();
    const GgufTensor& last = (*full)->tensors().back();
    const uint64_t data_end = static_cast<uint64_t>(last.data - bytes.data()) + last.nbytes;
    ASSERT_LT(data_end, bytes.size());  // there is trailing padding
    for (uint64_t n = 0; n < bytes.size(); ++n) {
        auto r = parse_bytes(bytes, n);
        if (n < data_end) {
            ASSERT_FALSE(r.ok()) << "prefix " << n;
            ASSERT_TRUE(absl::StartsWith(r.status().message(), "bad.gguf: ")) << r.status();
        } else {
            ASSERT_TRUE(r.ok()) << "prefix " << n << ": " << r.status();
        }
    }
}

TEST(GgufReader, TruncatedReferenceFile) {
    const auto bytes = read_bytes(fixture("tiny.gguf"));
    auto full = parse_bytes(bytes, bytes.size());
    ASSERT_TRUE(full.ok()) << full.status();
    uint64_t data_end = 0;
    for (const GgufTensor& t : (*full)->tensors()) {
        data_end = std::max<uint64_t>(data_end, static_cast<uint64_t>(t.data - bytes.data()) + t.nbytes);
    }
    // Every prefix through the header, then every 7th byte through the data.
    const uint64_t header_end = static_cast<uint64_t>((*full)->tensors().front().data - bytes.data());
    for (uint64_t n = 0; n < data_end; n += n < header_end ? 1 : 7) {
        auto r = parse_bytes(bytes, n);
        ASSERT_FALSE(r.ok()) << "prefix " << n;
        ASSERT_TRUE(absl::StartsWith(r.status().message(), "bad.gguf: ")) << r.status();
    }
}

TEST(GgufReader, MalformedHeaders) {
    expect_error({}, "bad magic");
    expect_error({'G', 'G', 'U'}, "bad magic");
    {
        Bytes b = one_tensor();
        b.b[0] = 'X';
        expect_error(b.b, "bad magic");
    }
    for (uint32_t v : {0u, 1u, 4u, 0xFFFFFFFFu}) {
        Bytes b = one_tensor();
        std::memcpy(&b.b[4], &v, 4);
        expect_error(b.b, "unsupported GGUF version");
    }
    {
        Bytes b;
        b.header(~0ull, 0).zeros(64);
        expect_error(b.b, "tensor_count");
    }
    {
        Bytes b;
        b.header(0, 1ull << 60).zeros(64);
        expect_error(b.b, "metadata_kv_count");
    }
    {
        Bytes b;
        b.header(0, 1).u64(~0ull).zeros(16);  // key length 2^64-1
        expect_error(b.b, "string length");
    }
    {
        Bytes b;
        b.header(0, 1).str("k").u32(8).u64(1ull << 62);  // string value length overflow
        expect_error(b.b, "key 'k': string length");
    }
    {
        Bytes b;
        b.header(0, 1).str("k").u32(13).u32(0);
        expect_error(b.b, "key 'k': unknown value type 13");
    }
    {
        Bytes b;
        b.header(0, 1).str("arr").u32(9).u32(4).u64(1ull << 40).zeros(16);
        expect_error(b.b, "key 'arr': array of 1099511627776");
    }
    {
        Bytes b;
        b.header(0, 1).str("arr").u32(9).u32(99).u64(1);
        expect_error(b.b, "key 'arr': unknown array element type 99");
    }
    {
        // Arrays nested 100 deep: refused before the recursion gets anywhere near the stack limit.
        Bytes b;
        b.header(0, 1).str("deep").u32(9);
        for (int i = 0; i < 100; ++i) b.u32(9).u64(1);
        b.u32(4).u64(0);
        expect_error(b.b, "key 'deep': arrays nested deeper");
    }
    {
        Bytes b;
        b.header(0, 1).str("flag").u32(7).put<uint8_t>(2);
        expect_error(b.b, "key 'flag': bool value 2");
    }
    {
        Bytes b;
        b.header(0, 2).kv_u32("dup", 1).kv_u32("dup", 2);
        expect_error(b.b, "duplicate key 'dup'");
    }
    {
        Bytes b;
        b.header(0, 1).str("general.alignment").u32(10).u64(32);
        expect_error(b.b, "key 'general.alignment': must be a uint32");
    }
    for (uint32_t a : {0u, 4u, 24u}) {
        Bytes b;
        b.header(0, 1).kv_u32("general.alignment", a);
        expect_error(b.b, "key 'general.alignment'");
    }
}

TEST(GgufReader, MalformedTensorInfos) {
    expect_error(one_tensor(6).b, "tensor 'w': unsupported ggml type 6 (q5_0)");
    expect_error(one_tensor(123).b, "tensor 'w': unsupported ggml type 123");
    expect_error(one_tensor(0, {1, 1, 1, 1, 1}).b, "tensor 'w': n_dims 5");
    expect_error(one_tensor(0, {}).b, "tensor 'w': n_dims 0");
    expect_error(one_tensor(0, {1ull << 32, 1ull << 32}).b, "tensor 'w': element count overflows");
    expect_error(one_tensor(0, {1ull << 63}).b, "tensor 'w': ne[0]");
    expect_error(one_tensor(8, {33}).b, "tensor 'w': q8_0: row of 33 elements");
    expect_error(one_tensor(0, {1ull << 35, 1ull << 27}).b, "tensor 'w': byte size overflows");
    expect_error(one_tensor(0, {1ull << 62}).b, "tensor 'w': f32: row of");
    expect_error(one_tensor(0, {8}, 16).b, "tensor 'w': offset 16 is not a multiple of the alignment 32");
    expect_error(one_tensor(0, {8}, 1ull << 40).b, "tensor 'w': data out of range");
    expect_error(one_tensor(0, {8}, ~0ull - 31).b, "tensor 'w': data out of range");  // offset + start overflows
    expect_error(one_tensor(0, {1000}).b, "tensor 'w': data out of range");
    {
        Bytes b;
        b.header(2, 0).tensor("t", {8}, 0, 0).tensor("t", {8}, 0, 32).pad().zeros(64);
        expect_error(b.b, "duplicate tensor 't'");
    }
    {
        Bytes b;
        b.header(1, 0).u64(1ull << 50).zeros(40);  // tensor name length
        expect_error(b.b, "tensor #0 name: string length");
    }
    {
        // The data section begins at the next alignment boundary: a file that stops before it is short.
        Bytes b;
        b.header(1, 0).tensor("w", {0}, 0, 0);
        expect_error(b.b, "tensor 'w': data out of range");
    }
}

TEST(GgufReader, OpenErrorsNameThePath) {
    const std::string dir = temp_dir();
    const std::string missing = dir + "/missing.gguf";
    auto r = GgufFile::open(missing);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
    EXPECT_TRUE(absl::StrContains(r.status().message(), missing)) << r.status();
    EXPECT_TRUE(absl::StrContains(r.status().message(), "No such file")) << r.status();

    const std::string empty = dir + "/empty.gguf";
    test::write_bytes(empty, {});
    auto e = GgufFile::open(empty);
    ASSERT_FALSE(e.ok());
    EXPECT_TRUE(absl::StartsWith(e.status().message(), empty + ": ")) << e.status();
    auto m = MappedFile::open(empty);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ((*m)->size(), 0u);

    auto d = MappedFile::open(dir);
    ASSERT_FALSE(d.ok());
    EXPECT_TRUE(absl::StrContains(d.status().message(), "not a regular file"));
}

}  // namespace
}  // namespace dg
