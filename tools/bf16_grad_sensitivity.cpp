// Conditioning check behind the q_gain bound of tests/gpu/test_model.cu: runs the CPU model twice on
// test config (a), T 64, once with exact weights and once with the matrices and wte rounded to bf16,
// and prints how far each gradient tensor moves (max abs diff / max |grad|). Build from the repo root
// after `make`:
//   g++ -O2 -std=c++17 -fopenmp -I. tools/bf16_grad_sensitivity.cpp $(ls build/model/*.o | grep -v "\.cu\.o") -o build/bf16_grad_sensitivity
#include "model/model.h"
#include "model/common.h"
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>
#include <string>
static float bf(float x){ uint32_t u; memcpy(&u,&x,4); u = (u + 0x7FFF + ((u>>16)&1)) & 0xFFFF0000u; float y; memcpy(&y,&u,4); return y; }
int main(){
 Config c; c.vocab_size=512; c.num_heads=2;c.num_kv_heads=1;c.model_dim=128;c.d_state=64;c.ssm_headdim=64;c.chunk_size=64;
 c.num_layers=4;c.num_attn_layers=1;c.mlp_mult=2;c.expand=2;c.ssm_ngroups=1;c.rope_fraction=0.5;
 int B=2,T=64; uint64_t seed=11; int64_t arena=param_arena_size(c), N=B*T;
 std::vector<float> w(arena,0.f); param_init(c,w.data(),seed); Rng r(seed*7+1);
 for(auto& s: param_specs(c)){ float* t=w.data()+s.offset; for(int64_t i=0;i<s.numel();i++){ if(s.group==Group::matrix) t[i]=(float)((2*r.uniform()-1)/sqrt((double)s.cols)); else if(s.group==Group::embed) t[i]=(float)(0.05*r.normal()); else t[i]+=(float)(0.2*r.normal()); } }
 std::vector<int32_t> win(B*(T+1)), tok(N), tgt(N); Rng r2(seed+99); for(auto& t: win) t=(int32_t)(r2.next()%512);
 for(int b=0;b<B;b++) for(int t=0;t<T;t++){ tok[b*T+t]=win[b*(T+1)+t]; tgt[b*T+t]=win[b*(T+1)+t+1]; }
 auto run=[&](std::vector<float>& p){ std::vector<float> g(arena,0.f), acts(model_acts_size(c,B,T)); ModelTensors<float> P,G; model_tensors_bind(c,p.data(),&P); model_tensors_bind(c,g.data(),&G); ModelActs<float> A; model_acts_bind(c,B,T,acts.data(),&A); model_forward_cpu(A,tok.data(),tgt.data(),P,c,B,T); model_backward_cpu(G,A,tok.data(),tgt.data(),P,c,B,T); return g; };
 std::vector<float> g0=run(w); std::vector<float> w16=w; for(auto& s: param_specs(c)) if(s.group!=Group::scalar) for(int64_t i=0;i<s.numel();i++) w16[s.offset+i]=bf(w16[s.offset+i]);
 std::vector<float> g1=run(w16);
 for(auto& s: param_specs(c)){ double md=0,mx=0; for(int64_t i=0;i<s.numel();i++){ md=fmax(md,fabs(g1[s.offset+i]-g0[s.offset+i])); mx=fmax(mx,fabs(g0[s.offset+i])); } if(md/mx>3e-3 || s.name.find("q_gain")!=std::string::npos) printf("%-22s %.3e  (max %.3e)\n", s.name.c_str(), md/mx, mx); }
}
