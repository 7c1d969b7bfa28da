import time, torch
from benchmarks import common
from tests.test_aaa import _step_by_step
from workbench.defenses import aaa
from workbench import metrics
test = common.test_set(); model = common.model("cpu")
lg = metrics.predict(model, test.x[:500])
net = aaa.AAA(torch.nn.Identity(), "linear", solver="compiled")
def per(f, n):
    best = 1e9
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(n): f()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e3
for b, n in ((1, 3000), (16, 500), (64, 200), (500, 20)):
    z = lg[:b]
    print(b, f"one call {per(lambda: net.post_process(z), n):.3f} ms, steps {per(lambda: _step_by_step(z, 'linear', 1.0), n):.3f} ms")
