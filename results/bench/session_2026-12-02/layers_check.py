import time, torch, sys
torch.set_num_threads(1)
sys.path.insert(0, "/work/main/scripts")
import tlscopes as ts
from benchmark import tokens_of_length
model = ts.load_model(kind=sys.argv[1])
L = int(sys.argv[2])
tokens = tokens_of_length(model, L)
scope = ts.FisherScope()
def t(f):
    s = time.perf_counter(); f(); return round(time.perf_counter() - s, 2)
print("attribute", t(lambda: ts.attribute(model, tokens, scope)), t(lambda: ts.attribute(model, tokens, scope)))
print("layers", t(lambda: ts.attribute_layers(model, tokens, scope)))
print("heads", t(lambda: ts.attribute_layers(model, tokens, scope, heads=True)))
print("attribute", t(lambda: ts.attribute(model, tokens, scope)))
print("hooks left:", sum(len(h.fwd_hooks) + len(h.bwd_hooks) for h in model.hook_dict.values()) if hasattr(model, "hook_dict") else "?")
