import time, torch
torch.set_num_threads(1)
import tlscopes.fisher_streaming as FS
D = torch.load("/tmp/prof/gemma.pt"); WE = D["W_E"]; W = WE.T; P = D["p"]
p = P[2]; cols = torch.nonzero(p > 1e-11).squeeze(1); print("tail cols", cols.numel())
U = torch.linalg.qr(torch.randn(640, 3, dtype=torch.float64))[0]; c = torch.randn(640, dtype=torch.float64)
def t(f, n=5):
    ts = []
    for _ in range(n):
        s = time.perf_counter(); f(); ts.append(time.perf_counter() - s)
    return round(sorted(ts)[n//2]*1e3, 1)
print("read sum", t(lambda: WE.sum()))
print("read sum chunked 256", t(lambda: [WE[i:i+256].sum() for i in range(0, 262144, 256)]))
for cc in (128, 256, 512, 1024):
    FS._CACHE_COLUMNS = cc
    print("tail_pass", cc, t(lambda: FS.tail_pass(W, cols, p[cols], U, c)))
FS._CACHE_COLUMNS = 256
def lean(cs=256):
    block = torch.cat([U, c[:, None]], 1).T.to(torch.float32).contiguous()  # 4 x 640
    pw = torch.zeros(262144); pw[cols] = p[cols]
    acc = torch.zeros(4, 640, dtype=torch.float64); part32 = torch.zeros(4, 640)
    z = torch.empty(4, cs); cross = torch.zeros((), dtype=torch.float64)
    n = 0
    for s in range(0, 262144, cs):
        Wc = WE[s:s+cs]               # cs x 640 rows
        torch.mm(block, Wc.T, out=z)  # 4 x cs
        z.mul_(pw[s:s+cs])
        part32.addmm_(z, Wc)
        n += 1
        if n % 16 == 0:
            acc += part32.double(); part32.zero_()
    acc += part32.double()
    return acc
for cs in (256, 512):
    print("lean", cs, t(lambda: lean(cs)))
def samechunk(cs=256):
    block = torch.cat([U, c[:, None]], 1).T.to(torch.float32).contiguous()
    pw = torch.rand(cs); part32 = torch.zeros(4, 640); z = torch.empty(4, cs)
    Wc = WE[:cs]
    for s in range(0, 262144, cs):
        torch.mm(block, Wc.T, out=z); z.mul_(pw); part32.addmm_(z, Wc)
print("same chunk (compute only)", t(samechunk))
def only_mm1(cs=256):
    block = torch.cat([U, c[:, None]], 1).T.to(torch.float32).contiguous(); z = torch.empty(4, cs)
    for s in range(0, 262144, cs):
        torch.mm(block, WE[s:s+cs].T, out=z)
print("only first product streaming", t(only_mm1))
def only_mm2(cs=256):
    z = torch.rand(4, cs); part32 = torch.zeros(4, 640)
    for s in range(0, 262144, cs):
        part32.addmm_(z, WE[s:s+cs])
print("only second product streaming", t(only_mm2))
def bigmm():
    block = torch.cat([U, c[:, None]], 1).T.to(torch.float32).contiguous()
    return block @ WE.T
print("one big first product", t(bigmm))
