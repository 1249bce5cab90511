import time, torch, collections, sys
torch.set_num_threads(1)
import tlscopes.fisher_solver as S, tlscopes.fisher_streaming as FS, tlscopes.fisher_krylov as K
from tlscopes.fisher import fisher_directions
D = torch.load("/tmp/prof/gemma.pt")
W = D["W_E"].T; P = D["p"]
T = collections.defaultdict(float); N = collections.Counter(); info = {}
def wrap(mod, name):
    f = getattr(mod, name)
    def g(*a, **k):
        t = time.perf_counter(); r = f(*a, **k); T[name] += time.perf_counter() - t; N[name] += 1
        if name == "tail_pass": info.setdefault("tail", []).append((a[1].numel(), a[3].shape[1]))
        return r
    setattr(mod, name, g)
for n in ["tail_pass", "columns_of", "column_norms", "rows_sandwich"]:
    wrap(S, n)
wrap(S, "_block_krylov"); wrap(S, "_gram_eigenpairs"); wrap(S, "_split"); wrap(S, "_solve")
fisher_directions(W, P[0])
tot = []
for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 10):
    T.clear(); N.clear(); info.clear()
    t = time.perf_counter(); v, u = fisher_directions(W, P[i]); dt = time.perf_counter() - t
    tot.append(dt)
    ent = float(-(P[i] * P[i].clamp_min(1e-30).log()).sum())
    print(f"{i} total {dt*1e3:.0f} ms H={ent:.2f} l1={float(v[0]):.3g} tail={info.get('tail')} " + " ".join(f"{k}={T[k]*1e3:.0f}({N[k]})" for k in T))
print("median", sorted(tot)[len(tot)//2]*1e3)
