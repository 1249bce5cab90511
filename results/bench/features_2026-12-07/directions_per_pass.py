import time, sys, warnings, torch, tlscopes as ts
warnings.filterwarnings("ignore")
sys.path.insert(0, "scripts")
from benchmark_features import random_sae, prompt_tokens, jacrev_recipe, status_mib, reset_peak
model = ts.load_model()
tokens = prompt_tokens(model, 256)
sae = random_sae(576, 16384, 64)
feats = ts.attribute_features(model, tokens, sae).features
for round_ in range(2):
    for name, work in [
        ("attribute_features default (3 per pass)", lambda: ts.attribute_features(model, tokens, sae)),
        ("attribute_features 16 per pass", lambda: ts.attribute_features(model, tokens, sae, directions_per_pass=16)),
        ("jacrev stopped", lambda: jacrev_recipe(model, tokens, sae, feats, 255, stop=True)),
    ]:
        reset_peak(); t = time.perf_counter(); work()
        print(round_, name, f"{time.perf_counter() - t:.1f} s, peak {status_mib('VmHWM'):.0f} MiB", flush=True)
