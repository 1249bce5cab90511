import sys, torch
sys.path.insert(0, "/work/main/scripts")
import benchmark_fisher as b
tok, model = b.load_gemma_model()
W_E = model.get_output_embeddings().weight.detach().clone()
d = b.next_token_distributions(tok, model, 30)
torch.save({"W_E": W_E, "p": d}, "/tmp/prof/gemma.pt")
print(W_E.shape, d.shape)
