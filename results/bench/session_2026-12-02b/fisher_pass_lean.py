import time, torch
torch.set_num_threads(1)
import tlscopes.fisher_streaming as FS
from tlscopes.fisher_streaming import chunks, columns_of
def tail_pass2(W, columns, p, U, centre=None):
    sums = centre is not None
    block = (torch.cat([U, centre[:, None]], dim=1) if sums else U).T.to(W.dtype).contiguous()
    rows = block.shape[0]
    result = torch.zeros(rows, W.shape[0], dtype=torch.float64, device=W.device)
    if 2 * columns.numel() > W.shape[1]:
        p = torch.zeros(W.shape[1], dtype=p.dtype, device=p.device).index_copy_(0, columns, p)
        columns = None
    length = W.shape[1] if columns is None else columns.numel()
    pieces = chunks(length, W)
    size = pieces[0].stop - pieces[0].start
    weighted = W.new_empty(rows, size)
    product = W.new_empty(rows, W.shape[0])
    along_centre = W.new_empty(length) if sums else None
    for chunk in pieces:
        part = W[:, chunk] if columns is None else columns_of(W, columns[chunk])
        out = weighted[:, : part.shape[1]]
        torch.mm(block, part, out=out)
        if sums:
            along_centre[chunk] = out[-1]
            out[-1] = 1
        out.mul_(p[chunk])
        torch.mm(out, part.T, out=product)
        result += product
    if not sums:
        return result.T, None, 0.0
    cross = float(along_centre.double() @ p.double())
    return result[:-1].T, result[-1], cross
D = torch.load("/tmp/prof/gemma.pt"); WE = D["W_E"]; W = WE.T; P = D["p"]
p = P[2]; cols = torch.nonzero(p > 1e-11).squeeze(1)
U = torch.linalg.qr(torch.randn(640, 3, dtype=torch.float64))[0]; c = torch.randn(640, dtype=torch.float64)*0.5
a = FS.tail_pass(W, cols, p[cols], U, c); b = tail_pass2(W, cols, p[cols], U, c)
print("diff", float((a[0]-b[0]).abs().max()/a[0].abs().max()), float((a[1]-b[1]).abs().max()), a[2], b[2])
sub = cols[::3]
a = FS.tail_pass(W, sub, p[sub], U, c); b = tail_pass2(W, sub, p[sub], U, c)
print("diff gather", float((a[0]-b[0]).abs().max()/a[0].abs().max()), a[2], b[2])
def t(f, n=7):
    ts = []
    for _ in range(n):
        s = time.perf_counter(); f(); ts.append(time.perf_counter() - s)
    return round(sorted(ts)[n//2]*1e3, 1)
for r in range(3):
    print("old", t(lambda: FS.tail_pass(W, cols, p[cols], U, c)), "new", t(lambda: tail_pass2(W, cols, p[cols], U, c)))
