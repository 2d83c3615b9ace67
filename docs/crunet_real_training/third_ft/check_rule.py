"""The revised step-8 rule (docs/crunet_real_training/third_ft/rule.txt) on the bench outputs."""
import json
R = ""  # run from the repository root, after bench.sh
def ra(path):
    rows = json.load(open(R + path))
    return {(r["mask"], r["maps"], r["method"]): r for r in rows}
def rob(path):
    out = {}
    for ln in open(R + path):
        if ln.startswith("| ") and not ln.startswith("| condition"):
            c = [x.strip() for x in ln.strip().strip("|").split("|")]
            if len(c) >= 5 and "/" in c[3]:
                out[c[0]] = (float(c[2].split("/")[0]), float(c[3].split("/")[0]))
    return out
ok = {}
F = ra("runs/third_ft_ra_F3/results.json")
rad = [F[("R8 k-t radial", m, "crunet")]["psnr"] for m in ("true", "estimated")]
rad_ls = [F[("R8 k-t radial", m, "lplus_s")]["psnr"] for m in ("true", "estimated")]
mr, ml = sum(rad) / 2, sum(rad_ls) / 2
print(f"(1) F3 radial {rad} mean {mr:.3f} (>= 34.725); L+S {rad_ls} mean {ml:.3f}; diff {mr - ml:+.3f} (>= +0.15)")
ok[1] = mr >= 34.725 and mr - ml >= 0.15
four = [F[(k, m, "crunet")] for k in ("R8", "R10") for m in ("true", "estimated")]
p4 = sum(r["psnr"] for r in four) / 4; s4 = sum(r["ssim"] for r in four) / 4
kt = sum(F[("R8 k-t random", m, "crunet")]["psnr"] for m in ("true", "estimated")) / 2
print(f"(2) F3 R8/R10 mean {p4:.3f} (>= 30.60), SSIM {s4:.4f} (>= 0.8670), k-t random mean {kt:.3f} (>= 35.205)")
for k in ("R8", "R10", "R8 k-t random", "R8 k-t radial"):
    for m in ("true", "estimated"):
        print(f"    {k:14s} {m:9s} L+S {F[(k, m, 'lplus_s')]['psnr']:.2f} F3 {F[(k, m, 'crunet')]['psnr']:.2f} ({F[(k, m, 'crunet')]['psnr'] - F[(k, m, 'lplus_s')]['psnr']:+.2f})")
ok[2] = p4 >= 30.60 and s4 >= 0.8670 and kt >= 35.205
b = {**rob("docs/crunet_real_training/long_ft/robustness_F2.md"), **rob("docs/benchmark_logs/2026-12-01/radial/radial_robust_F2.md")}
n = rob("runs/third_ft_robust_F3/results.md")
worst = min((n[c][1] - b[c][1], c) for c in b)
print(f"(3) F3 robustness rows: worst vs F2 {worst[0]:+.2f} ({worst[1]}) (>= -0.15); rows {len(n)}")
for c in n:
    print(f"    {c:42s} L+S {n[c][0]:.2f} F2 {b[c][1]:.2f} F3 {n[c][1]:.2f} ({n[c][1] - b[c][1]:+.2f}; over L+S {n[c][1] - n[c][0]:+.2f})")
ok[3] = worst[0] >= -0.15
S = ra("runs/third_ft_ra_S3/results.json")
s4 = sum(S[(k, m, "crunet")]["psnr"] for k in ("R8", "R10") for m in ("true", "estimated")) / 4
ktS = [S[("R8 k-t random", m, "crunet")]["psnr"] for m in ("true", "estimated")]
tv = [S[("R8 time-varying", m, "crunet")]["psnr"] for m in ("true", "estimated")]
radS = [S[("R8 k-t radial", m, "crunet")]["psnr"] for m in ("true", "estimated")]
bs = {**rob("docs/crunet_real_training/long_ft/robustness_S2.md"), **rob("docs/benchmark_logs/2026-12-01/radial/radial_robust_shipped.md")}
ns = rob("runs/third_ft_robust_S3/results.md")
worstS = min((ns[c][1] - bs[c][1], c) for c in bs)
print(f"(4) S3 R8/R10 mean {s4:.3f} (>= 38.79); k-t random {ktS} (>= 41.80 / 42.00); time-varying {tv} (30.26 / 30.11 +-0.01); "
      f"radial {radS} (>= 40.79 / 40.71); robustness worst {worstS[0]:+.2f} ({worstS[1]}) (>= -0.10)")
for k in ("R4", "R8", "R10", "R24", "R8 time-varying", "R8 k-t random", "R8 k-t radial"):
    for m in ("true", "estimated"):
        print(f"    {k:16s} {m:9s} L+S {S[(k, m, 'lplus_s')]['psnr']:.2f} S3 {S[(k, m, 'crunet')]['psnr']:.2f}")
for c in ns:
    print(f"    {c:42s} L+S {ns[c][0]:.2f} S2 {bs[c][1]:.2f} S3 {ns[c][1]:.2f} ({ns[c][1] - bs[c][1]:+.2f})")
ok[4] = (s4 >= 38.79 and ktS[0] >= 41.80 and ktS[1] >= 42.00 and abs(tv[0] - 30.26) <= 0.01 + 0.005
         and abs(tv[1] - 30.11) <= 0.015 and radS[0] >= 40.79 and radS[1] >= 40.71 and worstS[0] >= -0.10)
print("conditions:", ok, "-> SHIP" if all(ok.values()) else "-> do not ship")
