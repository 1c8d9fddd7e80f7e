// Data path: shard format round trip and validation, training/validation loaders, the
// SentencePiece reader and its byte tables against SentencePiece's own decode, bpb by hand, and
// every bad input ending in a named fatal error.
#include "data/bpb.h"
#include "data/loader.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "tests/expect_fatal.h"
#include "tests/fixture.h"
#include <doctest/doctest.h>
#include "tests/spm_model.h"
#include <algorithm>
#include <cstring>
#include <dirent.h>
#include <set>
#include <unistd.h>

namespace {

// A fresh empty folder under /tmp, removed with its files at scope exit.
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/golf_test_data_XXXXXX";
        if (!mkdtemp(tmpl)) FAIL("mkdtemp failed");
        path = tmpl;
    }
    ~TempDir() { std::string cmd = "rm -rf '" + path + "'"; (void)!system(cmd.c_str()); }
    std::string file(const std::string& name) const { return path + "/" + name; }
};

void write_bytes(const std::string& path, const void* data, size_t n) {
    FILE* f = fopen_check(path.c_str(), "wb");
    fwrite_check(data, 1, n, f, path.c_str());
    fclose(f);
}

std::vector<uint8_t> read_bytes(const std::string& path) {
    FILE* f = fopen_check(path.c_str(), "rb");
    std::vector<uint8_t> b;
    int c;
    while ((c = fgetc(f)) != EOF) b.push_back((uint8_t)c);
    fclose(f);
    return b;
}

// Token at position p of test shard s: unique across shards, so a window's origin is readable.
uint16_t tok_at(int s, int64_t p) { return (uint16_t)(s * 20000 + p); }

void write_test_shard(const std::string& path, int s, int64_t n) {
    std::vector<uint16_t> t(n);
    for (int64_t p = 0; p < n; p++) t[p] = tok_at(s, p);
    shard_write(path, t.data(), n);
}


// A hand-made model: every piece kind, plus other ModelProto fields the reader must skip.
std::string hand_model() {
    std::string m;
    pb_bytes(&m, 2, "\x0a\x03" "abc");                    // trainer_spec {model_prefix: "abc"}, skipped
    pb_bytes(&m, 1, pb_piece("<unk>", 0, 2));             // 0 unknown
    pb_bytes(&m, 1, pb_piece("<s>", 0, 3));               // 1 control (BOS)
    pb_bytes(&m, 1, pb_piece("</s>", 0, 3));              // 2 control
    pb_bytes(&m, 1, pb_piece("<0xC3>", 0, 6));            // 3 byte
    pb_bytes(&m, 1, pb_piece("<0xA9>", 0, 6));            // 4 byte
    pb_bytes(&m, 1, pb_piece("\xe2\x96\x81the", -1, 1));  // 5 "▁the"
    pb_bytes(&m, 1, pb_piece("cat", -2, 1));              // 6 "cat"
    pb_bytes(&m, 1, pb_piece("\xe2\x96\x81", -3, 1));     // 7 "▁"
    pb_bytes(&m, 1, pb_piece("\xc3\xa9", -4, 1));         // 8 "é"
    pb_bytes(&m, 1, pb_piece("<unused>", 0, 5));          // 9 unused
    pb_bytes(&m, 3, "\x0a\x04nfkc");                      // normalizer_spec, skipped
    return m;
}

Tokenizer hand_tokenizer() {
    std::string m = hand_model();
    Tokenizer tok;
    tokenizer_parse(&tok, "hand.model", (const uint8_t*)m.data(), m.size());
    return tok;
}

}  // namespace

// ---------------------------------------------------------------- shards

TEST_CASE("data: shard round trip, header bytes and file size") {
    TempDir d;
    std::vector<uint16_t> t = {1, 0, 65535, 7, 8191, 42, 1};
    shard_write(d.file("x_train_000000.bin"), t.data(), (int64_t)t.size());
    CHECK(access(d.file("x_train_000000.bin.tmp").c_str(), F_OK) != 0);  // renamed away
    std::vector<uint8_t> raw = read_bytes(d.file("x_train_000000.bin"));
    REQUIRE(raw.size() == 1024 + 2 * t.size());
    int32_t h[256];
    memcpy(h, raw.data(), 1024);
    CHECK(h[0] == 20240520);
    CHECK(h[1] == 1);
    CHECK(h[2] == (int32_t)t.size());
    for (int k = 3; k < 256; k++) CHECK(h[k] == 0);
    CHECK(raw[1024 + 4] == 0xff);  // little-endian uint16 65535 at index 2
    CHECK(raw[1024 + 6] == 7);
    CHECK(raw[1024 + 7] == 0);

    Shard s;
    shard_open(&s, d.file("x_train_000000.bin"), 65536);
    REQUIRE(s.num_tokens == (int64_t)t.size());
    for (size_t i = 0; i < t.size(); i++) CHECK(s.tokens[i] == t[i]);
    shard_close(&s);

    shard_write(d.file("empty.bin"), nullptr, 0);  // zero tokens is a valid shard
    shard_open(&s, d.file("empty.bin"), 8192);
    CHECK(s.num_tokens == 0);
    shard_close(&s);
}

TEST_CASE("data: bad shards are named fatal errors") {
    TempDir d;
    std::vector<uint16_t> t(100, 5);
    t[37] = 8192;
    shard_write(d.file("good.bin"), t.data(), 100);
    std::vector<uint8_t> raw = read_bytes(d.file("good.bin"));

    write_bytes(d.file("trunc.bin"), raw.data(), raw.size() - 2);  // one token short
    EXPECT_FATAL({ Shard s; shard_open(&s, d.file("trunc.bin"), 0); }, "truncated or corrupt");
    EXPECT_FATAL({ Shard s; shard_open(&s, d.file("trunc.bin"), 0); }, "trunc.bin");
    write_bytes(d.file("short.bin"), raw.data(), 100);  // not even a header
    EXPECT_FATAL({ Shard s; shard_open(&s, d.file("short.bin"), 0); }, "shorter than the 1024-byte header");
    std::vector<uint8_t> longer = raw;
    longer.push_back(0);
    write_bytes(d.file("long.bin"), longer.data(), longer.size());
    EXPECT_FATAL({ Shard s; shard_open(&s, d.file("long.bin"), 0); }, "truncated or corrupt");

    std::vector<uint8_t> bad = raw;
    bad[0] ^= 1;
    write_bytes(d.file("magic.bin"), bad.data(), bad.size());
    EXPECT_FATAL({ Shard s; shard_open(&s, d.file("magic.bin"), 0); }, "bad magic");
    bad = raw;
    bad[4] = 2;
    write_bytes(d.file("version.bin"), bad.data(), bad.size());
    EXPECT_FATAL({ Shard s; shard_open(&s, d.file("version.bin"), 0); }, "unsupported version 2");

    EXPECT_FATAL({ Shard s; shard_open(&s, d.file("good.bin"), 8192); }, "token id 8192 at position 37 >= vocab_size 8192");
    Shard s;
    shard_open(&s, d.file("good.bin"), 8193);  // the same shard is fine with a larger vocab
    shard_close(&s);
    EXPECT_FATAL({ Shard s2; shard_open(&s2, d.file("absent.bin"), 0); }, "absent.bin': cannot open");
    EXPECT_FATAL(shard_list(d.path, "val"), "no shards matching '*_val_*.bin'");
    EXPECT_FATAL(shard_list(d.file("nope"), "train"), "cannot open");
}

// ---------------------------------------------------------------- training loader

TEST_CASE("data: training loader gives ranks disjoint windows, deterministic from the seed") {
    TempDir d;
    const int T = 15, B = 2, R = 3;
    write_test_shard(d.file("t_train_000000.bin"), 0, 16 * 20 + 5);  // 20 windows, 5 tokens unused
    write_test_shard(d.file("t_train_000001.bin"), 1, 16 * 13);      // 13 windows
    write_test_shard(d.file("t_val_000000.bin"), 2, 100);            // never read by the train loader

    std::vector<TrainLoader> L(R);
    for (int r = 0; r < R; r++) train_loader_init(&L[r], d.path, B, T, r, R, 1234, 60000);
    REQUIRE(L[0].num_windows() == 33);
    REQUIRE(L[0].shift == 0);
    REQUIRE(L[0].draws_per_epoch() == 5);  // 33 / (2*3), 3 windows skipped per epoch

    std::vector<int32_t> buf((size_t)B * (T + 1));
    std::set<int64_t> shifts;
    for (int epoch = 0; epoch < 4; epoch++) {
        std::set<std::pair<int, int64_t>> seen;  // (shard, start) of every window this epoch
        for (int draw = 0; draw < 5; draw++)
            for (int r = 0; r < R; r++) {
                train_loader_next(&L[r], buf.data());
                REQUIRE(L[r].st.epoch == epoch);
                REQUIRE(L[r].draws_per_epoch() == 5);  // 31 to 33 windows whatever the shift
                for (int b = 0; b < B; b++) {
                    const int32_t* w = &buf[(size_t)b * (T + 1)];
                    int s = w[0] / 20000;
                    int64_t start = w[0] % 20000;
                    CHECK(start >= L[r].shift);
                    CHECK((start - L[r].shift) % (T + 1) == 0);  // on this epoch's window grid
                    for (int t = 0; t <= T; t++) CHECK(w[t] == tok_at(s, start + t));  // contiguous, one shard
                    CHECK(seen.insert({s, start}).second);  // disjoint across ranks and draws
                }
            }
        CHECK(seen.size() == 30);
        shifts.insert(L[0].shift);
        for (int r = 1; r < R; r++) CHECK(L[r].shift == L[0].shift);
    }
    CHECK(shifts.size() > 1);  // later epochs cut the shards at other places

    // Same seed: same stream; another seed: another order; another rank: other windows.
    TrainLoader a, b, c;
    train_loader_init(&a, d.path, B, T, 1, R, 1234, 0);
    train_loader_init(&b, d.path, B, T, 1, R, 1234, 0);
    train_loader_init(&c, d.path, B, T, 1, R, 99, 0);
    std::vector<int32_t> ba(buf.size()), bb(buf.size()), bc(buf.size());
    bool differ = false;
    for (int k = 0; k < 12; k++) {
        train_loader_next(&a, ba.data());
        train_loader_next(&b, bb.data());
        train_loader_next(&c, bc.data());
        CHECK(ba == bb);
        differ |= ba != bc;
    }
    CHECK(differ);
    // Reset returns to the first draw (the challenge resets the loader after warm-up).
    TrainLoader e;
    train_loader_init(&e, d.path, B, T, 1, R, 1234, 0);
    train_loader_next(&e, bb.data());
    train_loader_reset(&a);
    train_loader_next(&a, ba.data());
    CHECK(ba == bb);
    for (auto* x : {&a, &b, &c, &e}) train_loader_free(x);
    for (auto& x : L) train_loader_free(&x);
}

// Issue 6: k GPUs x 1 micro-batch must see what 1 GPU x k micro-batches sees: within an epoch,
// draw d of rank r (world k) is draw d*k + r of the single rank (perm[(d*world + r)*B + b]).
TEST_CASE("data: k ranks x 1 draw == 1 rank x k draws (same windows, same order within an epoch)") {
    TempDir d;
    const int T = 15, B = 2, K = 3;
    write_test_shard(d.file("t_train_000000.bin"), 0, 16 * 20 + 5);
    write_test_shard(d.file("t_train_000001.bin"), 1, 16 * 13);
    TrainLoader one;
    train_loader_init(&one, d.path, B, T, 0, 1, 777, 0);
    std::vector<TrainLoader> ranks(K);
    for (int r = 0; r < K; r++) train_loader_init(&ranks[r], d.path, B, T, r, K, 777, 0);
    REQUIRE(ranks[0].draws_per_epoch() == 5);  // 33 windows / (2 x 3): 15 single-rank draws
    std::vector<int32_t> a((size_t)B * (T + 1)), b(a.size());
    for (int draw = 0; draw < ranks[0].draws_per_epoch(); draw++)
        for (int r = 0; r < K; r++) {
            train_loader_next(&one, a.data());
            train_loader_next(&ranks[r], b.data());
            CHECK(a == b);
        }
    train_loader_free(&one);
    for (auto& x : ranks) train_loader_free(&x);
}

TEST_CASE("data: training loader state resumes bit-exactly across epochs") {
    TempDir d;
    const int T = 7, B = 3;
    write_test_shard(d.file("t_train_000000.bin"), 0, 8 * 10);
    write_test_shard(d.file("t_train_000001.bin"), 1, 8 * 4 + 3);
    TrainLoader a;
    train_loader_init(&a, d.path, B, T, 0, 2, 7, 0);  // 12 to 14 windows, 2 draws per epoch
    std::vector<int32_t> buf((size_t)B * (T + 1));
    for (int k = 0; k < 3; k++) train_loader_next(&a, buf.data());
    LoaderState saved = train_loader_state(a);
    std::string blob((const char*)&saved, sizeof saved);  // what a checkpoint stores
    std::vector<std::vector<int32_t>> want;
    for (int k = 0; k < 7; k++) {  // crosses several epoch boundaries
        train_loader_next(&a, buf.data());
        want.push_back(buf);
    }
    TrainLoader b;
    train_loader_init(&b, d.path, B, T, 0, 2, 7, 0);
    LoaderState loaded;
    memcpy(&loaded, blob.data(), sizeof loaded);
    train_loader_restore(&b, loaded);
    for (int k = 0; k < 7; k++) {
        train_loader_next(&b, buf.data());
        CHECK(buf == want[k]);
    }
    CHECK(b.st.epoch == a.st.epoch);
    CHECK(b.st.draw == a.st.draw);

    TrainLoader c;
    train_loader_init(&c, d.path, B, T, 0, 2, 8, 0);  // another seed
    EXPECT_FATAL(train_loader_restore(&c, loaded), "does not match this run");
    train_loader_free(&a);
    train_loader_free(&b);
    train_loader_free(&c);
}

TEST_CASE("data: training loader bad inputs") {
    TempDir d;
    write_test_shard(d.file("t_train_000000.bin"), 0, 40);
    EXPECT_FATAL({ TrainLoader L; train_loader_init(&L, d.path, 2, 15, 0, 2, 1, 0); }, "fewer than B*world = 4");
    EXPECT_FATAL({ TrainLoader L; train_loader_init(&L, d.file("none"), 1, 15, 0, 1, 1, 0); }, "run `make data`");
    std::vector<uint16_t> t(64, 3);
    t[20] = 1024;
    shard_write(d.file("t_train_000000.bin"), t.data(), 64);
    // 4 windows; whichever draw reaches window 1 (tokens 16..31) hits the bad id
    EXPECT_FATAL(
        {
            TrainLoader L;
            train_loader_init(&L, d.path, 4, 15, 0, 1, 1, 1024);
            std::vector<int32_t> buf(64);
            train_loader_next(&L, buf.data());
        },
        "token id 1024 at position 20 >= vocab_size 1024");
}

// ---------------------------------------------------------------- validation loader

TEST_CASE("data: validation stream is the val shards in name order, cut and split by rank") {
    TempDir d;
    write_test_shard(d.file("t_val_000001.bin"), 1, 30);  // written first, read second
    write_test_shard(d.file("t_val_000000.bin"), 0, 50);
    write_test_shard(d.file("t_train_000000.bin"), 2, 50);
    const int T = 8, R = 3;
    // 80 tokens -> (80-1)/8 = 9 sequences -> 73 tokens kept
    int64_t covered = 0;
    for (int r = 0; r < R; r++) {
        ValData V;
        val_load(&V, d.path, T, r, R, 65536);
        REQUIRE(V.num_seqs == 9);
        REQUIRE(V.tokens.size() == 73);
        for (int64_t i = 0; i < 73; i++) CHECK(V.tokens[i] == (i < 50 ? tok_at(0, i) : tok_at(1, i - 50)));
        CHECK(V.seq_begin == covered);
        covered = V.seq_end;
        std::vector<int32_t> out((size_t)2 * (T + 1));
        val_batch(V, out.data(), 6, 2);  // sequences 6 and 7: tokens 48..56 and 56..64
        for (int q = 0; q < 2; q++)
            for (int t = 0; t <= T; t++) {
                int64_t i = (6 + q) * T + t;
                CHECK(out[(size_t)q * (T + 1) + t] == (i < 50 ? tok_at(0, i) : tok_at(1, i - 50)));
            }
        EXPECT_FATAL(val_batch(V, out.data(), 8, 2), "outside [0, 9)");
    }
    CHECK(covered == 9);
    EXPECT_FATAL({ ValData V; val_load(&V, d.path, 8, 0, 1, 20001); }, "t_val_000001.bin': token id");
    EXPECT_FATAL({ ValData V; val_load(&V, d.path, 40, 0, 3, 0); }, "fewer than 3 ranks");
}

// ---------------------------------------------------------------- tokenizer and bpb

TEST_CASE("data: SentencePiece reader and byte tables on a hand-made model") {
    Tokenizer tok = hand_tokenizer();
    REQUIRE(tok.vocab_size() == 10);
    CHECK(tok.pieces[5] == "\xe2\x96\x81the");
    CHECK(tok.scores[8] == -4.0f);
    CHECK(tok.types[0] == PieceType::unknown);
    CHECK(tok.types[1] == PieceType::control);
    CHECK(tok.types[3] == PieceType::byte);
    CHECK(tok.types[6] == PieceType::normal);  // type field absent: the proto default
    CHECK(tok.types[9] == PieceType::unused);
    const int base[10] = {0, 0, 0, 1, 1, 3, 3, 0, 2, 0};
    const int lead[10] = {0, 0, 0, 0, 0, 1, 0, 1, 0, 0};
    const int bound[10] = {1, 1, 1, 0, 0, 0, 0, 0, 0, 1};
    for (int i = 0; i < 10; i++) {
        CHECK(tok.base_bytes[i] == base[i]);
        CHECK(tok.has_leading_space[i] == lead[i]);
        CHECK(tok.is_boundary[i] == bound[i]);
    }
}

TEST_CASE("data: bpb of a known case, by hand") {
    Tokenizer tok = hand_tokenizer();
    // "<s>▁the cat ▁ <0xC3><0xA9> <s> ▁the é": the decoded text is "the cat é" + "the é"
    const int32_t tokens[9] = {1, 5, 6, 7, 3, 4, 1, 5, 8};
    // targets:    ▁the after <s>: 3 (no space: BOS is a boundary)   cat: 3   ▁ after cat: 0+1
    //             <0xC3>: 1   <0xA9>: 1   <s>: 0   ▁the after <s>: 3   é: 2      total 14 bytes
    CHECK(bpb_count_bytes(tok, tokens, 8) == 14);
    CHECK(tok.token_bytes(6, 5) == 4);    // "▁the" after "cat" is " the"
    CHECK(tok.token_bytes(9, 5) == 3);    // after an unused piece: a boundary
    CHECK(tok.token_bytes(5, 100) == 0);  // ids past the tokenizer (padded vocab) count 0 bytes
    CHECK(tok.token_bytes(100, 5) == 3);  // and are boundaries
    BpbSum acc;
    bpb_add(&acc, tok, 3.0, tokens, 4);      // targets 1..4: 3+3+1+1 = 8 bytes
    bpb_add(&acc, tok, 2.0, tokens + 4, 4);  // targets 5..8: 1+0+3+2 = 6 bytes
    CHECK(acc.tokens == 8);
    CHECK(acc.bytes == 14);
    BpbResult r = bpb_result(acc);
    CHECK(r.val_loss == doctest::Approx(5.0 / 8).epsilon(1e-15));
    // (5/8 nats/token) / ln 2 * (8 tokens / 14 bytes) = 5 / (14 ln 2) = 0.515248...
    CHECK(r.val_bpb == doctest::Approx(5.0 / (14.0 * 0.6931471805599453)).epsilon(1e-14));
    CHECK(r.val_bpb == doctest::Approx(0.5152479).epsilon(1e-6));
    EXPECT_FATAL(bpb_result(BpbSum{}), "nothing scored");
}

TEST_CASE("data: tokenizer bad files are named fatal errors") {
    TempDir d;
    EXPECT_FATAL({ Tokenizer t; tokenizer_load(&t, d.file("missing.model")); }, "missing.model': cannot open");
    write_bytes(d.file("empty.model"), "", 0);
    EXPECT_FATAL({ Tokenizer t; tokenizer_load(&t, d.file("empty.model")); }, "empty file");
    std::string m = hand_model();
    write_bytes(d.file("cut.model"), m.data(), m.size() - 5);
    EXPECT_FATAL({ Tokenizer t; tokenizer_load(&t, d.file("cut.model")); }, "cut.model': corrupt SentencePiece model");
    const char text[] = "this is a text file, not a model\n";
    write_bytes(d.file("text.model"), text, sizeof text - 1);
    EXPECT_FATAL({ Tokenizer t; tokenizer_load(&t, d.file("text.model")); }, "text.model'");
    write_bytes(d.file("ok.model"), m.data(), m.size());
    Tokenizer t;
    tokenizer_load(&t, d.file("ok.model"));
    CHECK(t.vocab_size() == 10);
}

// Byte tables against SentencePiece's own decode (fixtures from tools/ref/ref_tokenizer.py):
// per line of real text, the bytes our tables assign to the line's tokens (after BOS) equal the
// UTF-8 length of SentencePiece's decoding of those tokens.
static void check_tokenizer_fixture(const char* name) {
    std::string case_name = std::string("tokenizer_") + name;
    const char* dir = getenv("FIXTURES");
    std::string path = std::string(dir ? dir : "build/fixtures") + "/" + case_name + ".bin";
    if (access(path.c_str(), F_OK) != 0) {
        MESSAGE("skipped: " << path << " absent (its tokenizer was not found when the fixtures were made)");
        return;
    }
    Fixture fx = load_fixture(case_name);
    const FixTensor& mb = fx.get("model_bytes");
    std::vector<uint8_t> bytes(mb.i.begin(), mb.i.end());
    TempDir d;  // through the file path, as the trainer loads it
    write_bytes(d.file(case_name + ".model"), bytes.data(), bytes.size());
    Tokenizer tok;
    tokenizer_load(&tok, d.file(case_name + ".model"));

    const FixTensor& plen = fx.get("piece_len");
    REQUIRE(tok.vocab_size() == (int)plen.numel());
    const int32_t* kind = fx.i("piece_kind");
    const float* score = fx.f("score");
    int nbyte = 0, nspace = 0, mismatched = 0;
    for (int i = 0; i < tok.vocab_size(); i++) {
        int k = (int)tok.types[i];
        if (tok.types[i] == PieceType::user_defined) k = 1;
        mismatched += (int)tok.pieces[i].size() != plen.i[i] || k != kind[i] || tok.scores[i] != score[i];
        nbyte += tok.types[i] == PieceType::byte;
        nspace += tok.has_leading_space[i];
    }
    CHECK(mismatched == 0);
    CHECK(nbyte == 256);
    CHECK(nspace > 0);

    const FixTensor& ids = fx.get("ids");
    const FixTensor& start = fx.get("line_start");
    const int32_t* line_bytes = fx.i("line_bytes");
    int64_t nlines = start.numel() - 1, total_want = 0, bad_lines = 0;
    for (int64_t l = 0; l < nlines; l++) {
        int64_t a = start.i[l], b = start.i[l + 1];  // ids[a] is BOS
        int64_t got = bpb_count_bytes(tok, ids.i.data() + a, b - a - 1);
        if (got != line_bytes[l]) {
            bad_lines++;
            INFO(std::string(name) << " line " << l << ": tables give " << got << " bytes, decode gives " << line_bytes[l]);
            CHECK(got == line_bytes[l]);
        }
        total_want += line_bytes[l];
    }
    CHECK(bad_lines == 0);
    // The whole stream, lines joined by BOS as in the shards: BOS targets count 0 bytes.
    CHECK(bpb_count_bytes(tok, ids.i.data(), ids.numel() - 1) == total_want);
    MESSAGE(std::string(name) << ": " << tok.vocab_size() << " pieces, " << nlines << " lines, " << ids.numel() << " tokens, "
                 << total_want << " decoded bytes: tables exact");
}

TEST_CASE("data: byte tables match SentencePiece decode, tiny model trained on GPL-3") { check_tokenizer_fixture("tiny"); }
TEST_CASE("data: byte tables match SentencePiece decode, FineWeb 8192") { check_tokenizer_fixture("fineweb_8192"); }
TEST_CASE("data: byte tables match SentencePiece decode, FineWeb 4096") { check_tokenizer_fixture("fineweb_4096"); }
TEST_CASE("data: byte tables match SentencePiece decode, FineWeb 1024") { check_tokenizer_fixture("fineweb_1024"); }
TEST_CASE("data: byte tables match SentencePiece decode, Debian 8192 (make data)") { check_tokenizer_fixture("debian_8192"); }
TEST_CASE("data: byte tables match SentencePiece decode, Debian 1024 (make data)") { check_tokenizer_fixture("debian_1024"); }

// The bpb formula over whole corpora: for every dataset `make data` built here (none in CI), the
// bytes our tables give the shards' token stream equal the UTF-8 length of SentencePiece's decode
// of every document (corpus.py wrote that sum into stats.json while tokenizing).
static std::string json_after(const std::string& js, const std::string& key, size_t from = 0) {
    size_t k = js.find("\"" + key + "\": ", from);
    if (k == std::string::npos) FAIL("stats.json has no " << key);
    return js.substr(k + key.size() + 4);
}

TEST_CASE("data: byte tables exact over every dataset built by make data (skipped when none)") {
    DIR* dir = opendir("data/datasets");
    if (!dir) {
        MESSAGE("skipped: no data/datasets here (run `make data`)");
        return;
    }
    std::vector<std::string> names;
    while (struct dirent* e = readdir(dir))
        if (e->d_name[0] != '.') names.push_back(e->d_name);
    closedir(dir);
    std::sort(names.begin(), names.end());
    int checked = 0;
    for (const std::string& name : names) {
        std::string folder = "data/datasets/" + name, stats = folder + "/stats.json";
        if (access(stats.c_str(), F_OK) != 0) continue;
        std::vector<uint8_t> raw = read_bytes(stats);
        std::string js(raw.begin(), raw.end());
        std::string tok_path = json_after(js, "tokenizer_path");
        tok_path = tok_path.substr(1, tok_path.find('"', 1) - 1);
        if (access(tok_path.c_str(), F_OK) != 0) {
            MESSAGE("skipped " << name << ": tokenizer " << tok_path << " absent");
            continue;
        }
        Tokenizer tok;
        tokenizer_load(&tok, tok_path);
        for (const char* split : {"train", "val"}) {
            size_t at = js.find(std::string("\"") + split + "\": {");
            REQUIRE(at != std::string::npos);
            int64_t want_tokens = atoll(json_after(js, "tokens", at).c_str());
            int64_t want_bytes = atoll(json_after(js, "decoded_utf8_bytes", at).c_str());
            std::vector<int32_t> stream;
            for (const std::string& p : shard_list(folder, split)) {
                Shard s;
                shard_open(&s, p, tok.vocab_size());
                stream.insert(stream.end(), s.tokens, s.tokens + s.num_tokens);
                shard_close(&s);
            }
            REQUIRE((int64_t)stream.size() == want_tokens);
            int64_t got = bpb_count_bytes(tok, stream.data(), (int64_t)stream.size() - 1);
            CHECK(got == want_bytes);
            MESSAGE(name << " " << std::string(split) << ": " << stream.size() << " tokens, tables " << got << " bytes, decode "
                         << want_bytes << " bytes");
            checked++;
        }
    }
    if (!checked) MESSAGE("skipped: no dataset with stats.json under data/datasets");
}
