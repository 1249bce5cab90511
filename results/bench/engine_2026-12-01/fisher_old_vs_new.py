import importlib.util, sys, time, torch, statistics
torch.set_num_threads(1)
sys.path.insert(0, "/work/main/scripts")
import tlscopes as ts
from tlscopes.fisher import fisher_directions as new
spec = importlib.util.spec_from_file_location("oldfisher", "/tmp/before/tlscopes/fisher.py")
old_mod = importlib.util.module_from_spec(spec); sys.modules["oldfisher"] = old_mod; spec.loader.exec_module(old_mod)
old = old_mod.fisher_directions
model = ts.load_model(kind="bridge")
from benchmark import tokens_of_length  # noqa
tokens = tokens_of_length(model, 128)
with torch.no_grad():
    logits = model(tokens)[0, -1]
p = torch.softmax(logits, -1)
W = model.W_U.detach()
print("p_max", float(p.max()))
for rank in (1, 4):
    t = {"old": [], "new": []}
    for r in range(5):
        for name, fn in (("old", old), ("new", new)):
            s = time.perf_counter(); fn(W, p, rank=rank); t[name].append(time.perf_counter() - s)
    print(rank, {k: round(statistics.median(v)*1000, 1) for k, v in t.items()}, "ms")
