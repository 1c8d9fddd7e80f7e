// Config: defaults are the seed's model; env and flags override; derived shapes.
#include "model/config.h"
#include "model/params.h"
#include <doctest/doctest.h>

TEST_CASE("config: seed defaults and derived shapes") {
    Config c;
    c.validate();
    CHECK(c.head_dim() == 64);
    CHECK(c.qkv_rows() == 512 + 2 * 256);
    CHECK(c.ssm_heads() == 16);
    CHECK(c.num_angles() == 16);
    CHECK(c.in_proj_rows() == 2240);  // spec/mamba3.md: the formula gives 2240, not 2232
    CHECK(c.ip_angles() + c.num_angles() == c.in_proj_rows());
    int attn = 0;
    for (int l = 0; l < c.num_layers; l++) attn += c.is_attn(l);
    CHECK(attn == 2);
    CHECK(c.is_attn(2));
    CHECK(c.is_attn(5));
    CHECK(c.num_skips() == 3);
}

TEST_CASE("config: parameter count matches the seed model") {
    Config c;
    // spec/mamba3.md: the seed model has exactly 25,159,984 parameters
    CHECK(param_count(c) == 25159984);
    auto specs = param_specs(c);
    for (auto& s : specs) CHECK(s.offset % 64 == 0);
    ModelParams p;
    std::vector<float> arena(param_arena_size(c));
    param_bind(c, arena.data(), &p);
    CHECK(p.wte == arena.data());
    CHECK(p.blocks[2].attn_qkv != nullptr);
    CHECK(p.blocks[2].in_proj == nullptr);
    CHECK(p.blocks[0].in_proj != nullptr);
}

TEST_CASE("config: env then flags") {
    setenv("MODEL_DIM", "256", 1);
    setenv("A_ACT", "heavytail", 1);
    Config c;
    const char* argv[] = {"train", "--num-layers", "4", "--logit-softcap=15", "--resume", "x"};
    std::vector<std::string> rest;
    config_from_env_and_args(&c, 6, (char**)argv, &rest);
    unsetenv("MODEL_DIM");
    unsetenv("A_ACT");
    CHECK(c.model_dim == 256);
    CHECK(c.num_layers == 4);
    CHECK(c.logit_softcap == 15.0);
    CHECK(c.a_activation() == AAct::heavytail);
    REQUIRE(rest.size() == 2);
    CHECK(rest[0] == "--resume");
}
